"""Image-quality metrics of a T1w, following MRIQC's definitions (Esteban et al. 2017,
PLoS ONE 12(9):e0184661; https://mriqc.readthedocs.io/en/latest/iqms/t1w.html).

As in MRIQC's ``StructuralQC``, every metric but the bias field's is computed on the
INU-corrected image (the raw T1w divided by the N4 field: a bias field would otherwise
count as noise), tissue statistics over voxels whose label is the tissue, eroded once when
voxels are finer than 1.9 mm; tissue means are medians, and the CJV's spreads are MADs.
The air mask is everything outside the dilated head mask.
"""

from __future__ import annotations

import json
import os

import nibabel as nib
import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)
from scipy import ndimage

from trialprep.workflows.anat.stage import IQM_DESCRIPTIONS  # noqa: F401 (re-exported)


def tissue_stats(values: np.ndarray) -> dict[str, float]:
    """Mean, standard deviation, median, MAD (scaled to sigma) and count of ``values``."""
    v = np.asarray(values, dtype=np.float64)
    if v.size < 2:
        raise ValueError("too few voxels in a tissue mask to compute image-quality metrics")
    med = float(np.median(v))
    return {"mean": float(v.mean()), "stdv": float(v.std()), "median": med,
            "mad": float(1.4826 * np.median(np.abs(v - med))), "n": float(v.size)}


def snr(mu_fg: float, sd_fg: float, n: float) -> float:
    r"""Within-tissue SNR (MRIQC ``snr``): :math:`\mu_F / (\sigma_F \sqrt{n / (n - 1)})`."""
    return float(mu_fg / (sd_fg * np.sqrt(n / (n - 1))))


def snr_dietrich(mu_fg: float, sigma_air: float) -> float:
    r"""Dietrich et al. 2007 SNR (MRIQC ``snr_dietrich``): :math:`\mu_F / (\sigma_{air}
    \sqrt{2 / (4 - \pi)})`, the factor correcting the Rayleigh-distributed air noise."""
    if sigma_air <= 0:
        return float("inf")
    return float(mu_fg / (sigma_air * np.sqrt(2.0 / (4.0 - np.pi))))


def cnr(mu_wm: float, mu_gm: float, sigma_air: float, sigma_wm: float,
        sigma_gm: float) -> float:
    r"""Contrast-to-noise ratio (Magnotta & Friedman 2006; MRIQC ``cnr``):
    :math:`|\mu_{WM} - \mu_{GM}| / \sqrt{\sigma_{air}^2 + \sigma_{GM}^2 + \sigma_{WM}^2}`."""
    return float(abs(mu_wm - mu_gm) / np.sqrt(sigma_air**2 + sigma_gm**2 + sigma_wm**2))


def cjv(mu_wm: float, mu_gm: float, sigma_wm: float, sigma_gm: float) -> float:
    r"""Coefficient of joint variation (Ganzetti et al. 2016; MRIQC ``cjv``):
    :math:`(\sigma_{WM} + \sigma_{GM}) / |\mu_{WM} - \mu_{GM}|`."""
    return float((sigma_wm + sigma_gm) / abs(mu_wm - mu_gm))


def efc(img: np.ndarray, framemask: np.ndarray | None = None) -> float:
    r"""Entropy focus criterion (Atkinson et al. 1997; MRIQC ``efc``), normalised by its
    maximum so that 0 means all energy in one voxel and 1 a uniform image:

    .. math:: E = -\sum_j \frac{x_j}{x_{max}} \ln\frac{x_j}{x_{max}},\quad
              x_{max} = \sqrt{\sum_j x_j^2},\quad
              \mathrm{EFC} = E / \left(\sqrt{N} \ln\sqrt{N}\right)

    ``framemask`` marks voxels to ignore (e.g. padding added by reorientation)."""
    x = np.abs(np.asarray(img, dtype=np.float64))
    if framemask is not None:
        x = x[~np.asarray(framemask, bool)]
    x = x.ravel()
    n = x.size
    b_max = np.sqrt((x**2).sum())
    if n < 2 or b_max == 0:
        raise ValueError("EFC needs an image with at least two voxels and some signal")
    ratio = x / b_max
    entropy = -np.sum(ratio * np.log(ratio + 1e-16))
    return float(entropy / (np.sqrt(n) * np.log(np.sqrt(n))))


def fber(img: np.ndarray, head_mask: np.ndarray) -> float:
    r"""Foreground-background energy ratio (Shehzad et al. 2015; MRIQC ``fber``):
    :math:`\mathrm{median}(|F|^2) / \mathrm{median}(|B|^2)`; 1000 when the background is
    (numerically) empty, as MRIQC does."""
    img = np.asarray(img, dtype=np.float64)
    head = np.asarray(head_mask, bool)
    fg = np.median(np.abs(img[head]) ** 2)
    bg = np.median(np.abs(img[~head]) ** 2)
    if bg < 1e-3:
        return 1e3
    return float(fg / bg)


def wm2max(img: np.ndarray, wm_mask: np.ndarray) -> float:
    r"""White-matter-to-maximum ratio (MRIQC ``wm2max``): :math:`\mathrm{median}(WM) /
    P_{99.95}(X)`; values near 1 are better (no bright outliers such as vessels or fat)."""
    img = np.asarray(img, dtype=np.float64)
    return float(np.median(img[np.asarray(wm_mask, bool)]) / np.percentile(img, 99.95))


def inu_stats(bias: np.ndarray, brain_mask: np.ndarray) -> dict[str, float]:
    r"""Bias-field summary (MRIQC ``inu_range``/``inu_med``): :math:`P_{95} - P_5` and the
    median of the N4 field within the brain."""
    v = np.asarray(bias, dtype=np.float64)[np.asarray(brain_mask, bool)]
    p5, p95 = np.percentile(v, [5, 95])
    return {"inu_range": float(p95 - p5), "inu_med": float(np.median(v))}


def _erode(mask: np.ndarray, erode: bool = True) -> np.ndarray:
    if not erode:
        return mask
    struct = ndimage.generate_binary_structure(3, 2)
    eroded = ndimage.binary_erosion(mask, structure=struct)
    return eroded if eroded.sum() >= 10 else mask


def air_mask(head_mask: np.ndarray, margin: int = 3) -> np.ndarray:
    """Air: voxels outside the head mask dilated by ``margin`` voxels."""
    head = ndimage.binary_dilation(np.asarray(head_mask, bool), iterations=margin)
    return ~head


def compute_iqms(t1w: np.ndarray, dseg: np.ndarray, head_mask: np.ndarray,
                 brain_mask: np.ndarray, bias: np.ndarray | None = None,
                 registration_metric: float | None = None,
                 voxel_mm: tuple = (1.0, 1.0, 1.0)) -> dict[str, float]:
    """All IQMs of one T1w (raw intensities and, when given, the N4 ``bias`` field they
    are corrected by; ``dseg`` labels 1 CSF, 2 GM, 3 WM)."""
    img = np.asarray(t1w, dtype=np.float64)
    if bias is not None:
        field = np.asarray(bias, dtype=np.float64)
        img = np.where(field > 1e-6, img / np.where(field > 1e-6, field, 1.0), img)
    erode = bool(np.all(np.asarray(voxel_mm, float)[:3] < 1.9))
    stats = {name: tissue_stats(img[_erode(dseg == k, erode)])
             for k, name in ((1, "csf"), (2, "gm"), (3, "wm"))}
    air = air_mask(head_mask)
    if air.sum() < 100:
        raise ValueError("no air around the head: the field of view is too tight for "
                         "noise-based IQMs")
    sigma_air = float(img[air].std())
    wm, gm = stats["wm"], stats["gm"]
    out = {f"snr_{k}": snr(s["median"], s["stdv"], s["n"]) for k, s in stats.items()}
    out["snr_total"] = float(np.mean([out["snr_csf"], out["snr_gm"], out["snr_wm"]]))
    out["snrd_wm"] = snr_dietrich(wm["median"], sigma_air)
    out["cnr"] = cnr(wm["median"], gm["median"], sigma_air, wm["stdv"], gm["stdv"])
    out["cjv"] = cjv(wm["median"], gm["median"], wm["mad"], gm["mad"])
    out["efc"] = efc(img)
    out["fber"] = fber(img, head_mask)
    out["wm2max"] = wm2max(img, dseg == 3)
    if bias is not None:
        out.update(inu_stats(bias, brain_mask))
    if registration_metric is not None:
        out["reg_cost"] = float(registration_metric)
    for k, s in stats.items():  # the tissue summaries MRIQC also reports
        out[f"summary_{k}_mean"] = s["mean"]
        out[f"summary_{k}_stdv"] = s["stdv"]
    return out


class _IQMInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="raw T1w (before bias correction)")
    dseg = File(exists=True, mandatory=True)
    head_mask = File(exists=True, mandatory=True)
    brain_mask = File(exists=True, mandatory=True)
    bias_file = File(exists=True, desc="N4 bias field")
    registration_metric = traits.Float()


class _IQMOutputSpec(TraitedSpec):
    out_json = File(exists=True)
    iqms = traits.Dict()


class ComputeIQMs(SimpleInterface):
    """MRIQC-style IQMs of a T1w, written as JSON."""

    input_spec = _IQMInputSpec
    output_spec = _IQMOutputSpec

    def _run_interface(self, runtime):
        def load(path):
            return np.asarray(nib.load(path).dataobj)

        bias = load(self.inputs.bias_file) if isdefined(self.inputs.bias_file) else None
        metric = self.inputs.registration_metric
        metric = metric if isdefined(metric) else None
        iqms = compute_iqms(load(self.inputs.in_file), load(self.inputs.dseg).astype(int),
                            load(self.inputs.head_mask) > 0, load(self.inputs.brain_mask) > 0,
                            bias=bias, registration_metric=metric,
                            voxel_mm=nib.load(self.inputs.in_file).header.get_zooms()[:3])
        self._results["iqms"] = iqms
        self._results["out_json"] = os.path.join(runtime.cwd, "iqms.json")
        with open(self._results["out_json"], "w") as fh:
            json.dump(iqms, fh, indent=2, sort_keys=True)
        return runtime
