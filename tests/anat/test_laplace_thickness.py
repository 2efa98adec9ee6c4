"""Laplacian (Yezzi-Prince) thickness on phantoms of known thickness: the short form of the
benchmark (benchmarks/thickness_phantom.py): within 10 % of the truth at 1 mm voxels and
20 % at 2 mm, on shells and on a folded cortex whose sulcal banks nearly touch."""

from __future__ import annotations

import numpy as np
import pytest

from trialprep.virtual_trial.phantoms import folded, shell
from trialprep.workflows.anat.laplace_thickness import laplace_thickness
from trialprep.workflows.anat.partial_volume import partial_volumes


def _mean_thickness(p) -> float:
    th = laplace_thickness(p.gm, p.wm, (p.voxel,) * 3, p.csf)
    grey = p.labels == 2
    assert (th[grey] > 0).all(), "every grey voxel gets a thickness"
    return float(th[grey].mean())


@pytest.mark.parametrize("voxel,true,tolerance", [(1.0, 1.5, 0.10), (1.0, 3.0, 0.10),
                                                  (1.0, 4.5, 0.10), (2.0, 1.5, 0.20),
                                                  (2.0, 3.0, 0.20)])
def test_shells(voxel, true, tolerance):
    assert _mean_thickness(shell(voxel, true)) == pytest.approx(true, rel=tolerance)


@pytest.mark.parametrize("voxel,true,tolerance", [(1.0, 2.25, 0.10), (1.0, 3.0, 0.10),
                                                  (2.0, 2.25, 0.20), (2.0, 3.0, 0.20)])
def test_folded_cortex_with_touching_banks(voxel, true, tolerance):
    assert _mean_thickness(folded(voxel, true, gap=0.5)) == pytest.approx(true, rel=tolerance)
    # banks that touch (no CSF between them at all): the plane where they meet is found
    touching = folded(voxel, true, gap=0.0)
    assert _mean_thickness(touching) == pytest.approx(true, rel=tolerance)
    # ... without it the field lines run along the fused banks and read far too thick
    from trialprep.workflows.anat.laplace_thickness import ThicknessSettings

    merged = laplace_thickness(touching.gm, touching.wm, (voxel,) * 3, touching.csf,
                               ThicknessSettings(buried_sulci=False))
    assert merged[touching.labels == 2].mean() > (1 + tolerance) * true


def test_deterministic_and_zero_outside_the_grey_matter():
    p = shell(1.5, 2.5)
    a = laplace_thickness(p.gm, p.wm, (1.5,) * 3, p.csf)
    b = laplace_thickness(p.gm, p.wm, (1.5,) * 3, p.csf)
    assert np.array_equal(a, b)
    assert (a[(p.gm == 0) & (p.labels != 2)] == 0).all()


def test_partial_volumes_from_intensity_keep_the_grey_matter_amount():
    """A blurred, noisy image of the shell: posteriors sharpened to labels lose the partial
    volumes; reading the fractions off the intensity brings the grey-matter amount back."""
    from scipy import ndimage

    p = shell(1.0, 2.5)
    rng = np.random.default_rng(0)
    image = 0.22 * p.csf + 0.55 * p.gm + 0.85 * p.wm
    image = ndimage.gaussian_filter(image, 0.8) + rng.normal(0, 0.01, image.shape)
    hard = np.stack([(p.labels == k).astype(float) for k in (1, 2, 3)])
    pv = partial_volumes(image, hard, p.labels > 0)
    assert pv[1].sum() == pytest.approx(p.gm.sum(), rel=0.05)
    assert _mean_thickness(p) == pytest.approx(
        float(laplace_thickness(pv[1], pv[2], (1.0,) * 3, pv[0])[p.labels == 2].mean()),
        rel=0.10)
