"""The local SyN round the hippocampi (workflows/anat/local_refinement.py): its field fades
to zero at the box's faces, and it brings the atlas's hippocampus onto a hippocampus that
shrank (planted by a known deformation of the template) where no whole-brain warp did."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from trialprep.workflows.anat.local_refinement import edge_taper, label_box, refine_locally
from trialprep.workflows.anat.templates import template_cache_dir, write_atlas, write_template

LEFT, RIGHT = 103, 111  # Harvard-Oxford hippocampi (volume index + 1)


def test_taper_is_zero_on_the_faces_and_one_inside():
    w = edge_taper((20, 16, 12), (2.0, 2.0, 2.0), taper_mm=6.0)
    for axis in range(3):
        assert np.take(w, 0, axis=axis).max() == 0 and np.take(w, -1, axis=axis).max() == 0
    assert w[3:-3, 3:-3, 3:-3].min() == 1.0 and ((w >= 0) & (w <= 1)).all()


def test_box_holds_the_labels_and_the_margin():
    labels = np.zeros((30, 30, 30), int)
    labels[10:14, 12:15, 5:9] = 7
    lower, upper = label_box(labels, [7], margin_vox=3)
    assert lower == [7, 9, 2] and upper == [17, 18, 12]
    with pytest.raises(ValueError, match="no voxel holds"):
        label_box(labels, [8], margin_vox=3)


def _shrink_about(image: np.ndarray, centre, volume_factor: float, inner: float,
                  outer: float) -> np.ndarray:
    """``image`` with everything within ``inner`` voxels of ``centre`` scaled by
    ``volume_factor`` about it, the deformation fading out by ``outer`` voxels."""
    grid = np.indices(image.shape, dtype=np.float32)
    offset = grid - np.asarray(centre, np.float32).reshape(3, 1, 1, 1)
    dist = np.sqrt((offset**2).sum(axis=0))
    weight = np.clip((outer - dist) / (outer - inner), 0.0, 1.0)
    source = grid + weight * offset * (volume_factor ** (-1.0 / 3.0) - 1.0)
    return ndimage.map_coordinates(image, source, order=1, mode="nearest")


def test_refinement_recovers_a_planted_hippocampal_shrinkage(tmp_path):
    import ants

    tpl = write_template(template_cache_dir(), 2)
    atlas_path, _ = write_atlas(template_cache_dir(), tpl["T1w"])
    template = ants.image_read(str(tpl["T1w"]))
    atlas = ants.image_read(str(atlas_path))
    labels = atlas.numpy().astype(int)
    centre = ndimage.center_of_mass(labels == LEFT)
    shrunk = _shrink_about(template.numpy(), centre, 0.85, inner=12.0, outer=18.0)
    moving = template.new_image_like(shrunk.astype(np.float32))
    field = refine_locally(template, moving, atlas, [LEFT, RIGHT],
                           outprefix=str(tmp_path / "local_"))
    path = tmp_path / "field.nii.gz"
    ants.image_write(field, str(path))
    refined = ants.apply_transforms(moving, atlas, [str(path)],
                                    interpolator="genericLabel").numpy().astype(int)
    # the truth: the atlas's label moved by the planted deformation itself
    planted = _shrink_about((labels == LEFT).astype(np.float32), centre, 0.85, 12.0, 18.0)
    ratio_truth = float(planted.sum() / (labels == LEFT).sum())
    ratio = float((refined == LEFT).sum() / (labels == LEFT).sum())
    assert ratio_truth == pytest.approx(0.85, abs=0.03)
    assert abs(ratio - ratio_truth) < 0.04, (ratio, ratio_truth)
    # the right hippocampus did not change, nor does its refined label
    right = float((refined == RIGHT).sum() / (labels == RIGHT).sum())
    assert right == pytest.approx(1.0, abs=0.03)
