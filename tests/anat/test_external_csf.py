"""The CSF around the brain joins the mask where CSF fills most of a voxel, and only there."""

from __future__ import annotations

import numpy as np

from trialprep.workflows.anat.external_csf import external_csf

DARK, CSF, GM = 50.0, 300.0, 700.0


def _phantom(shell_mm: float, voxel: float = 1.0):
    """A GM ball (radius 20 mm) with a CSF ventricle, inside a CSF shell of ``shell_mm``,
    in a dark (skull/air) background; intensities are the voxels' partial volumes."""
    n = 64
    r = np.linalg.norm((np.indices((n, n, n)) - n / 2 + 0.5) * voxel, axis=0)
    # fraction of each voxel inside a radius (linear over one voxel: partial volume)
    inside = lambda radius: np.clip(radius - r + 0.5 * voxel, 0, voxel) / voxel  # noqa: E731
    gm = inside(20.0)
    csf = inside(20.0 + shell_mm) - gm
    ventricle = r < 5.0
    img = DARK * (1 - gm - csf) + CSF * csf + GM * gm
    img[ventricle] = CSF
    mask = gm > 0.5
    dseg = np.where(mask, np.where(ventricle, 1, 2), 0)
    csf_p = np.where(ventricle, 1.0, 0.0)
    gm_p = np.where(mask & ~ventricle, 1.0, 0.0)
    return img, mask, dseg, csf_p, gm_p, csf, r


def test_csf_shell_is_added_up_to_where_csf_stops_filling_voxels():
    img, mask, dseg, csf_p, gm_p, csf, r = _phantom(shell_mm=3.0)
    added, fraction = external_csf(img, mask, dseg, csf_p, gm_p, (1.0, 1.0, 1.0), band_mm=6)
    truth = ~mask & (csf > 0.5)
    assert (added == truth).mean() > 0.999
    assert 0.9 * truth.sum() <= added.sum() <= 1.1 * truth.sum()
    assert not added[r > 24].any()  # nothing beyond the shell
    assert np.all(fraction[added] > 0.4) and np.all(fraction[~added] == 0)


def test_without_a_shell_only_the_edge_is_touched_and_stray_voxels_are_ignored():
    img, mask, dseg, csf_p, gm_p, _, r = _phantom(shell_mm=0.0)
    blob = (np.abs(r - 23.5) < 0.5) & (np.indices(img.shape)[0] < 10)  # cut off from brain
    img[blob] = CSF
    added, _ = external_csf(img, mask, dseg, csf_p, gm_p, (1.0, 1.0, 1.0), band_mm=6)
    assert not added[blob].any()
    # GM/dark partial volume at the very edge reads as CSF; nothing further out does.
    assert not added[r > 21.5].any()


def test_band_zero_or_no_contrast_leaves_the_mask_alone():
    img, mask, dseg, csf_p, gm_p, _, _ = _phantom(shell_mm=3.0)
    added, _ = external_csf(img, mask, dseg, csf_p, gm_p, (1.0, 1.0, 1.0), band_mm=0)
    assert not added.any()
    flat = np.full(img.shape, 100.0)
    added, _ = external_csf(flat, mask, dseg, csf_p, gm_p, (1.0, 1.0, 1.0), band_mm=6)
    assert not added.any()
