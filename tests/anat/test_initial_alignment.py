"""The multi-start initial pose (workflows/anat/initial_alignment.py) on a brain placed in a
known pose: the template itself, turned and shifted onto another voxel grid."""

from __future__ import annotations

import numpy as np
import pytest

from trialprep.workflows.anat.initial_alignment import find_initial_pose, index_to_physical
from trialprep.workflows.anat.templates import write_template


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    import ants

    tpl = write_template(tmp_path_factory.mktemp("tpl"), 2)
    return ants.image_read(str(tpl["T1w"])), ants.image_read(str(tpl["mask"]))


def _placed(template, mask, degrees, shift_mm):
    """The template seen through a rigid pose on an axial grid of another origin and voxel
    order; returns (image, mask, transform from the new grid's points to the template's)."""
    import ants
    from scipy.spatial.transform import Rotation

    rot = Rotation.from_euler("xyz", degrees, degrees=True).as_matrix()
    centre = np.asarray(template.origin) + np.asarray(template.direction) @ (
        np.asarray(template.spacing) * (np.asarray(template.shape) - 1) / 2)
    pull = ants.create_ants_transform(transform_type="AffineTransform", dimension=3,
                                      matrix=rot, center=centre.tolist(),
                                      translation=list(shift_mm))
    grid = ants.make_image((120, 128, 100), spacing=(1.8, 1.8, 2.2),
                           origin=(-110.0, 140.0, -90.0),
                           direction=np.diag([1.0, -1.0, 1.0]))
    image = ants.apply_ants_transform_to_image(pull, template, grid)
    brain = ants.apply_ants_transform_to_image(pull, mask, grid, interpolation="nearestneighbor")
    return image, brain, pull


@pytest.mark.parametrize("degrees,shift", [((28.0, -6.0, 4.0), (12.0, -25.0, 18.0)),
                                           ((-8.0, 14.0, -22.0), (-20.0, 10.0, -5.0))])
def test_the_pose_is_found_from_any_grid(template, degrees, shift):
    """The found pose maps the template's brain onto the placed brain within 2 mm (the
    registration's rigid and affine stages refine it), however the head was turned."""
    fixed, fixed_mask = template
    moving, moving_mask, pull = _placed(fixed, fixed_mask, degrees, shift)
    pose = find_initial_pose(fixed, fixed_mask, moving, moving_mask)
    found = pose.to_ants()
    aff = index_to_physical(fixed)
    idx = np.argwhere(fixed_mask.numpy() > 0)[::50]
    points = idx @ aff[:3, :3].T + aff[:3, 3]
    errors = [np.linalg.norm(np.asarray(pull.apply_to_point(found.apply_to_point(p))) - p)
              for p in points]
    assert np.mean(errors) < 2.0, (pose.degrees, np.mean(errors))
    assert pose.correlation > 0.8


def test_an_empty_mask_is_refused(template):
    fixed, fixed_mask = template
    with pytest.raises(ValueError, match="empty"):
        find_initial_pose(fixed, fixed_mask, fixed, fixed_mask * 0)
