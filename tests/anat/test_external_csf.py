"""The CSF around the brain joins the mask up to the skull's inner table, and no further."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from trialprep.workflows.anat.external_csf import external_csf

AIR, BONE, CSF, GM, MARROW, FAT = 20.0, 60.0, 300.0, 700.0, 900.0, 1100.0


def _phantom(shell_mm: float, skull_mm: float = 6.0, blur_mm: float = 0.8,
             noise: float = 10.0, seed: int = 0):
    """A GM ball (radius 30 mm) with a CSF ventricle, a CSF shell of ``shell_mm``, then the
    skull (inner table, marrow, outer table), scalp fat and air, on 1 mm voxels; each shell's
    partial volume from 4x supersampling, blurred by the scanner (FWHM ``blur_mm``), with
    noise. Returns the image, the brain mask, Atropos-like labels and posteriors, the CSF
    fraction of each voxel and the distance from the centre (mm)."""
    n = 88
    sub = 4
    axis = (np.arange(n * sub) + 0.5) / sub - n / 2
    r = np.sqrt(axis[:, None, None] ** 2 + axis[None, :, None] ** 2 + axis[None, None, :] ** 2)
    edges = np.cumsum([30.0, shell_mm, 2.0, skull_mm - 3.5, 1.5, 5.0])
    levels = [GM, CSF, BONE, MARROW, BONE, FAT]
    img = np.full(r.shape, AIR, np.float32)
    for edge, level in zip(edges[::-1], levels[::-1], strict=True):
        img[r < edge] = level
    csf_fine = ((r >= edges[0]) & (r < edges[1])).astype(np.float32)

    def down(a):
        return a.reshape(n, sub, n, sub, n, sub).mean(axis=(1, 3, 5))

    img, csf_frac = down(img), down(csf_fine)
    rc = np.linalg.norm(np.indices((n, n, n)) - n / 2 + 0.5, axis=0)
    ventricle = rc < 6.0
    img[ventricle] = CSF
    img = ndimage.gaussian_filter(img, blur_mm / 2.355)
    img = img + np.random.default_rng(seed).normal(0, noise, img.shape)
    mask = rc <= 29.5  # the brain as an extraction would give it
    dseg = np.where(mask, np.where(ventricle, 1, 2), 0)
    csf_p = np.where(ventricle, 1.0, 0.0)
    gm_p = np.where(mask & ~ventricle, 1.0, 0.0)
    return img, mask, dseg, csf_p, gm_p, csf_frac, rc


@pytest.mark.parametrize("shell_mm", [1.5, 3.0, 6.0])
def test_csf_shell_is_added_up_to_the_inner_table(shell_mm):
    img, mask, dseg, csf_p, gm_p, csf_frac, rc = _phantom(shell_mm)
    added, fraction = external_csf(img, mask, dseg, csf_p, gm_p, (1.0, 1.0, 1.0))
    truth = ~mask & (csf_frac > 0.5)
    dice = 2 * (added & truth).sum() / (added.sum() + truth.sum())
    assert dice >= 0.85, dice
    # the intracranial volume (mask and shell) within 4 %: the voxels astride the inner
    # table count in from a fifth of CSF (EDGE_FRACTION), a little over half a layer here
    assert (mask | added).sum() == pytest.approx((mask | truth).sum(), rel=0.04)
    # nothing beyond the inner table but a few voxels of its noise (of some 10 000 in it)
    assert added[rc > 30 + shell_mm + 1.5].sum() <= 10
    assert np.all(fraction[added] > 0) and np.all(fraction[~added] == 0)


def test_no_leak_through_the_skull_or_into_a_separate_csf_like_blob():
    img, mask, dseg, csf_p, gm_p, _, rc = _phantom(2.0)
    # CSF-dark tissue beyond the skull (muscle, a sinus's partial volumes)
    blob = (np.abs(rc - 41.0) < 1.5) & (np.indices(img.shape)[0] < 30)
    img[blob] = CSF
    added, _ = external_csf(img, mask, dseg, csf_p, gm_p, (1.0, 1.0, 1.0))
    assert not added[blob].any()
    assert not added[rc > 34].any()


def test_the_template_mask_bounds_the_band():
    img, mask, dseg, csf_p, gm_p, _, rc = _phantom(6.0)
    # the template's brain ends 2 mm out on one side: 1 mm of margin leaves 3 mm there
    template = rc <= 32.0
    added, _ = external_csf(img, mask, dseg, csf_p, gm_p, (1.0, 1.0, 1.0),
                            template_mask=template, template_margin_mm=1.0)
    assert added.any()
    assert not added[rc > 33.5].any()


def test_band_zero_or_no_contrast_leaves_the_mask_alone():
    img, mask, dseg, csf_p, gm_p, _, _ = _phantom(shell_mm=3.0)
    added, _ = external_csf(img, mask, dseg, csf_p, gm_p, (1.0, 1.0, 1.0), band_mm=0)
    assert not added.any()
    flat = np.full(img.shape, 100.0)
    added, _ = external_csf(flat, mask, dseg, csf_p, gm_p, (1.0, 1.0, 1.0))
    assert not added.any()
