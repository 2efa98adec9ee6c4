"""Two shortcuts of the anatomical workflow give what the long way gives: the atlas brought
to native space on the template brain's box only (ApplyTransforms ``within``), and the N4
head mask with its holes filled by SciPy (``head_mask``)."""

from __future__ import annotations

import numpy as np

from trialprep.workflows.anat.interfaces import ApplyTransforms, head_mask
from trialprep.workflows.anat.templates import write_atlas, write_template


def test_atlas_on_the_template_brains_box_equals_the_whole_grid(tmp_path):
    import ants

    tpl = write_template(tmp_path / "tpl", 2)
    atlas, _ = write_atlas(tmp_path / "tpl", tpl["T1w"])
    # a subject grid larger than the head (as a T1w with the neck is), the template turned
    # 10 degrees and shifted onto it
    grid = ants.make_image((128, 140, 120), spacing=(2.0, 2.0, 2.0),
                           origin=(-120.0, -150.0, -110.0))
    ants.image_write(grid + 1, str(tmp_path / "ref.nii.gz"))
    from scipy.spatial.transform import Rotation

    xfm = ants.create_ants_transform(
        transform_type="AffineTransform", dimension=3,
        matrix=Rotation.from_euler("x", 10, degrees=True).as_matrix(),
        translation=(6.0, -9.0, 4.0))
    ants.write_transform(xfm, str(tmp_path / "xfm.mat"))

    def run(name, **kwargs):
        (tmp_path / name).mkdir()
        inputs = {"in_files": [str(atlas)], "reference": str(tmp_path / "ref.nii.gz"),
                  "transforms": [str(tmp_path / "xfm.mat")], "interpolator": "genericLabel",
                  **kwargs}
        res = ApplyTransforms(**inputs).run(cwd=tmp_path / name)
        out = res.outputs.out_files  # one file: Nipype gives it, not a list
        return out if isinstance(out, str) else out[0]

    mask = run("mask", in_files=[str(tpl["mask"])], interpolator="linear", compress=False)
    assert mask.endswith(".nii")
    whole, boxed = run("whole"), run("boxed", within=mask)
    a, b = ants.image_read(whole).numpy(), ants.image_read(boxed).numpy()
    assert a.shape == b.shape and (a > 0).sum() > 10000
    assert np.array_equal(a, b)


def test_head_mask_fills_holes_like_antspyx_get_mask():
    import ants

    rng = np.random.default_rng(0)
    z, y, x = np.mgrid[:60, :64, :56]
    r = np.sqrt((x - 28) ** 2 + (y - 32) ** 2 + (z - 30) ** 2)
    head = np.where(r < 24, 100.0, 5.0)
    head[(r < 8)] = 5.0  # a dark cavity inside the head (a ventricle, a sinus): a hole
    head += rng.normal(0, 3, head.shape)
    img = ants.from_numpy(head.astype(np.float32), spacing=(2.0, 2.0, 2.0))
    ours, theirs = head_mask(img).numpy() > 0, ants.get_mask(img, cleanup=2).numpy() > 0
    assert ours[30, 32, 28]  # the cavity is inside the mask
    assert not ours[2, 2, 2]
    assert (ours != theirs).sum() <= 0.001 * theirs.sum()
