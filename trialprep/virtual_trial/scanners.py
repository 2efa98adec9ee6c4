"""Sites, their scanners, and how a scanner turns tissue into a T1-weighted image."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass
class ScannerEffect:
    """Site/epoch-specific image formation: contrast, gain, offset, bias field and noise."""

    gain: float  # multiplicative intensity scale
    offset: float  # additive intensity
    contrast: dict  # tissue -> relative intensity (T1w: WM > GM > CSF)
    bias_amplitude: float  # peak-to-centre log-amplitude of the smooth bias field
    bias_coeffs: list  # 10 second-order polynomial coefficients (unit norm)
    noise_sd: float  # Rician noise sd, as a fraction of the WM intensity
    blur_fwhm_mm: float = 0.0  # effective resolution (point-spread function), mm FWHM

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Vendor:
    manufacturer: str
    model: str
    series_description: str
    protocol_name: str
    sequence: dict  # RepetitionTime, EchoTime, InversionTime, FlipAngle, ...
    image_type: list
    orientation: str = "sagittal"
    #: field of view (mm) along rows, columns and slices, as the vendor's T1w protocol has it
    fov_mm: tuple = (256.0, 240.0, 176.0)


@dataclass
class Site:
    name: str
    vendor: Vendor
    institution: str
    city: str
    software: list  # software version per epoch
    effects: list = field(default_factory=list)  # ScannerEffect per epoch
    upgrade_after_visit: int | None = None  # epoch 1 starts after this visit


VENDORS = {
    "siemens_prisma": Vendor(
        "SIEMENS", "Prisma_fit", "t1_mprage_sag_p2_iso", "t1_mprage_sag_p2_iso",
        {"RepetitionTime": 2300.0, "EchoTime": 2.98, "InversionTime": 900.0, "FlipAngle": 9.0,
         "ScanningSequence": ["GR", "IR"], "SequenceVariant": ["SK", "SP", "MP"],
         "SequenceName": "*tfl3d1_16ns", "ScanOptions": "IR"},
        ["ORIGINAL", "PRIMARY", "M", "ND", "NORM"]),
    "siemens_skyra": Vendor(
        "SIEMENS", "Skyra", "t1_mprage_sag_p2_iso", "t1_mprage_sag_p2_iso",
        {"RepetitionTime": 2300.0, "EchoTime": 2.98, "InversionTime": 900.0, "FlipAngle": 9.0,
         "ScanningSequence": ["GR", "IR"], "SequenceVariant": ["SK", "SP", "MP"],
         "SequenceName": "*tfl3d1_16ns", "ScanOptions": "IR"},
        ["ORIGINAL", "PRIMARY", "M", "ND", "NORM"]),
    "ge_mr750": Vendor(
        "GE MEDICAL SYSTEMS", "DISCOVERY MR750", "Sag 3D BRAVO", "ADNI3 T1 BRAVO",
        {"RepetitionTime": 7.3, "EchoTime": 3.0, "InversionTime": 400.0, "FlipAngle": 11.0,
         "ScanningSequence": ["GR"], "SequenceVariant": ["SS", "SK"],
         "SequenceName": "efgre3d", "ScanOptions": ["FAST_GEMS", "EDR_GEMS", "ACC_GEMS"]},
        ["ORIGINAL", "PRIMARY", "OTHER"], orientation="axial", fov_mm=(256.0, 256.0, 200.0)),
    "philips_ingenia": Vendor(
        "Philips Medical Systems", "Ingenia", "T1W_3D_TFE", "WIP T1W_3D_TFE SENSE",
        {"RepetitionTime": 6.8, "EchoTime": 3.1, "FlipAngle": 9.0,
         "ScanningSequence": ["GR"], "SequenceVariant": ["MP"], "SequenceName": "T1TFE",
         "ScanOptions": "OTHER"},
        ["ORIGINAL", "PRIMARY", "M_FFE", "M", "FFE"], fov_mm=(240.0, 240.0, 170.0)),
}

TISSUES = ("csf", "gm", "wm", "skin", "fat", "muscle", "bone", "marrow", "eye", "lens",
           "cord")
#: T1w (MPRAGE-like) intensities relative to each other: fat brightest, then marrow and the
#: cord (white matter), grey matter, muscle; CSF and the eyes' vitreous dark, cortical bone
#: and air darkest.
BASE_CONTRAST = {"csf": 0.22, "gm": 0.55, "wm": 0.85, "skin": 0.55, "fat": 0.98,
                 "muscle": 0.42, "bone": 0.06, "marrow": 0.78, "eye": 0.12, "lens": 0.55,
                 "cord": 0.78}
#: The softest scanner's point-spread function (FWHM, mm); the sharpest has 0.5 mm.
MAX_PSF_FWHM_MM = 2.5


def spread_effects(rng: np.random.Generator, n: int) -> list[ScannerEffect]:
    """``n`` plausible scanners, spread evenly (each in its own random order) over the
    three parameters that bias morphometry most, so that every scanner leaves its own mark
    on the regional volumes and thicknesses, as vendor, coil and sequence differences do in
    real multi-site data:

    - a resolution axis: effective resolution (point-spread function) from 0.5 to 2.5 mm
      FWHM (sharp to soft on the trial's 2 mm grid; vendors' filtering and k-space
      coverage differ by about this much), spaced evenly in FWHM squared, together with
      GM/WM contrast (GM from -12 % to +12 %; both a wider PSF and a brighter GM shift
      partial-volume voxels from GM to WM);
    - CSF contrast from -30 % to +30 %;
    - noise (SNR: head coil, acceleration, bandwidth) from 1.5 % to 4 % of the WM signal:
      noisier images lose grey matter to white matter at its boundary (on one head, 1.5 ->
      4 % lowers GM/TIV by 3 % and the mean thickness by 7 %; the GM contrast range moves
      them by 5 and 8 %).

    Gain 0.7-1.4, offset, bias field (up to 25 %) and WM contrast are drawn at random.
    """
    t, u, v = (rng.permutation(n) / max(n - 1, 1) for _ in range(3))
    effects = []
    for ti, ui, vi in zip(t, u, v, strict=True):
        contrast = dict(BASE_CONTRAST)
        contrast["gm"] *= 0.88 + 0.24 * ti
        contrast["wm"] *= 1 + rng.uniform(-0.05, 0.05)
        contrast["csf"] *= 0.7 + 0.6 * ui
        for tissue in ("fat", "muscle", "marrow", "skin"):  # sequences differ outside too
            contrast[tissue] *= 1 + rng.uniform(-0.1, 0.1)
        coeffs = rng.normal(0, 1, 10)
        effects.append(ScannerEffect(
            gain=float(1000 * rng.uniform(0.7, 1.4)), offset=float(rng.uniform(0, 40)),
            contrast={k: float(v) for k, v in contrast.items()},
            bias_amplitude=float(rng.uniform(0.05, 0.25)),
            bias_coeffs=(coeffs / np.linalg.norm(coeffs)).tolist(),
            noise_sd=float(0.015 + 0.025 * vi),
            blur_fwhm_mm=float(np.sqrt(0.5**2 + ti * (MAX_PSF_FWHM_MM**2 - 0.5**2)))))
    return effects


def bias_field(points: np.ndarray, effect: ScannerEffect, radius: float = 90.0) -> np.ndarray:
    """Smooth multiplicative field: exp of a 2nd-order polynomial in scanner coordinates."""
    x, y, z = (points / radius).T
    terms = np.stack([x, y, z, x * x, y * y, z * z, x * y, x * z, y * z, np.ones_like(x)])
    log_field = np.tensordot(np.asarray(effect.bias_coeffs), terms, axes=1)
    return np.exp(effect.bias_amplitude * log_field)


def synthesize_t1(maps: dict[str, np.ndarray], points: np.ndarray, effect: ScannerEffect,
                  rng: np.random.Generator, shape: tuple | None = None,
                  voxel_mm: tuple | None = None) -> np.ndarray:
    """Intensities (float) of a T1w image from sampled tissue maps and a scanner effect;
    with the grid's ``shape`` and ``voxel_mm`` the scanner's point-spread function (a
    Gaussian of ``blur_fwhm_mm``) is applied before the bias field and noise."""
    signal = sum(effect.contrast[t] * maps[t] for t in TISSUES)
    if shape is not None and voxel_mm is not None and effect.blur_fwhm_mm > 0:
        from scipy import ndimage

        sigma = [effect.blur_fwhm_mm / 2.3548 / v for v in voxel_mm]
        signal = ndimage.gaussian_filter(signal.reshape(shape), sigma).ravel()
    signal = signal * bias_field(points, effect)
    sigma = effect.noise_sd * effect.contrast["wm"]
    noisy = np.hypot(signal + rng.normal(0, sigma, signal.shape), rng.normal(0, sigma,
                                                                             signal.shape))
    return effect.gain * noisy + effect.offset
