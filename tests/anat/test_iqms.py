"""Image-quality metrics on constructed images whose values are known in closed form."""

from __future__ import annotations

import numpy as np
import pytest

from trialprep.workflows.anat import iqms


def phantom(sigma: float = 20.0, seed: int = 0, shape=(48, 48, 48)):
    """Nested spheres: WM (1000) inside GM (600) inside CSF (250), in air (0), plus
    Gaussian noise of known sigma everywhere."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape) - np.array(shape)[:, None, None, None] / 2
    r = np.sqrt(x**2 + y**2 + z**2)
    dseg = np.select([r < 8, r < 13, r < 17], [3, 2, 1], 0)
    clean = np.select([dseg == 3, dseg == 2, dseg == 1], [1000.0, 600.0, 250.0], 0.0)
    return clean + rng.normal(0, sigma, shape), dseg, r < 17


def test_efc_is_one_for_a_uniform_image_and_zero_for_a_single_voxel():
    assert iqms.efc(np.full((20, 20, 20), 7.0)) == pytest.approx(1.0, abs=1e-9)
    spike = np.zeros((20, 20, 20))
    spike[3, 4, 5] = 100.0
    assert iqms.efc(spike) == pytest.approx(0.0, abs=1e-9)
    # Half-normal noise: EFC -> E[x] - E[x ln x] / ln(sqrt(N)) for unit-energy voxels.
    from scipy import integrate, stats

    n = 40**3
    noise = np.abs(np.random.default_rng(1).normal(size=n))
    e_xlnx = integrate.quad(lambda x: x * np.log(x) * 2 * stats.norm.pdf(x), 0, np.inf)[0]
    expected = np.sqrt(2 / np.pi) - e_xlnx / np.log(np.sqrt(n))
    assert iqms.efc(noise) == pytest.approx(expected, abs=0.01)


def test_efc_ignores_the_frame_mask():
    img = np.full((10, 10, 10), 5.0)
    frame = np.zeros(img.shape, bool)
    frame[:2] = True
    img[frame] = 1000.0  # padding that must not count
    assert iqms.efc(img, framemask=frame) == pytest.approx(1.0, abs=1e-9)


def test_snr_of_a_tissue_is_mean_over_noise():
    rng = np.random.default_rng(2)
    values = 500.0 + rng.normal(0, 25.0, 200_000)
    assert iqms.snr(values.mean(), values.std(), values.size) == pytest.approx(20.0, rel=0.01)


def test_snr_dietrich_corrects_the_rayleigh_air_noise():
    # Magnitude noise in air: Rayleigh with scale s has sd s*sqrt((4 - pi)/2).
    s = 10.0
    air = np.random.default_rng(3).rayleigh(s, 500_000)
    # mu / (sd_air * sqrt(2/(4-pi))) = mu / s
    assert iqms.snr_dietrich(400.0, air.std()) == pytest.approx(40.0, rel=0.01)


def test_phantom_metrics_match_their_closed_forms():
    sigma = 20.0
    img, dseg, head = phantom(sigma)
    out = iqms.compute_iqms(img, dseg, head, dseg > 0)
    assert out["snr_wm"] == pytest.approx(1000 / sigma, rel=0.05)
    assert out["snr_gm"] == pytest.approx(600 / sigma, rel=0.05)
    assert out["snr_csf"] == pytest.approx(250 / sigma, rel=0.05)
    assert out["cnr"] == pytest.approx(400 / np.sqrt(3 * sigma**2), rel=0.05)
    assert out["cjv"] == pytest.approx(2 * sigma / 400, rel=0.05)
    # P99.95 of the image lies in the WM tail: the top 0.05 % of all voxels.
    from scipy import stats

    z = stats.norm.ppf(1 - 0.0005 * img.size / (dseg == 3).sum())
    assert out["wm2max"] == pytest.approx(1000 / (1000 + z * sigma), rel=0.01)


def test_cnr_and_cjv_worsen_with_noise():
    low, high = (iqms.compute_iqms(*phantom(s)[:2], phantom(s)[2], phantom(s)[1] > 0)
                 for s in (10.0, 60.0))
    assert high["cnr"] < low["cnr"] and high["cjv"] > low["cjv"]
    assert high["snr_wm"] < low["snr_wm"]


def test_fber_is_the_energy_ratio_and_capped_for_an_empty_background():
    img = np.full((10, 10, 10), 2.0)
    head = np.zeros(img.shape, bool)
    head[3:7, 3:7, 3:7] = True
    img[head] = 10.0
    assert iqms.fber(img, head) == pytest.approx(100.0 / 4.0)
    img[~head] = 0.0
    assert iqms.fber(img, head) == 1e3


def test_wm2max_is_one_without_bright_outliers_and_drops_with_a_vessel():
    img, dseg, _ = phantom(0.0)
    assert iqms.wm2max(img, dseg == 3) == pytest.approx(1.0)
    img[dseg == 0] = 0
    img[0:3, 0:3, 0:30] = 4000.0  # a bright vessel/fat streak, 270 voxels > 0.05 %
    assert iqms.wm2max(img, dseg == 3) == pytest.approx(0.25)


def test_inu_range_of_a_known_bias_field():
    # A linear ramp from 0.8 to 1.2 across the brain: P95 - P5 = 0.9 * 0.4.
    shape = (40, 40, 40)
    ramp = np.broadcast_to(np.linspace(0.8, 1.2, shape[0])[:, None, None], shape)
    out = iqms.inu_stats(ramp, np.ones(shape, bool))
    assert out["inu_range"] == pytest.approx(0.36, abs=0.02)
    assert out["inu_med"] == pytest.approx(1.0, abs=0.01)
    flat = iqms.inu_stats(np.ones(shape), np.ones(shape, bool))
    assert flat["inu_range"] == 0.0


def test_iqms_refuse_a_field_of_view_without_air():
    img, dseg, _ = phantom(10.0)
    with pytest.raises(ValueError, match="no air"):
        iqms.compute_iqms(img, dseg, np.ones(img.shape, bool), dseg > 0)


def test_tissue_metrics_are_taken_on_the_inu_corrected_image():
    """MRIQC's StructuralQC: a bias field is not noise. A strong ramp (0.6 .. 1.4) lowers
    the WM SNR of the raw image; divided by the N4 field it is the unbiased one again."""
    img, dseg, head = phantom(10.0)
    ramp = np.broadcast_to(np.linspace(0.6, 1.4, img.shape[0])[:, None, None], img.shape)
    clean = iqms.compute_iqms(img, dseg, head, dseg > 0)
    raw = iqms.compute_iqms(img * ramp, dseg, head, dseg > 0)
    corrected = iqms.compute_iqms(img * ramp, dseg, head, dseg > 0, bias=ramp)
    assert raw["snr_wm"] < 0.8 * clean["snr_wm"]
    assert corrected["snr_wm"] == pytest.approx(clean["snr_wm"], rel=0.02)
    assert corrected["cjv"] == pytest.approx(clean["cjv"], rel=0.02)
    assert corrected["inu_range"] > 0.3  # the field itself is still reported
