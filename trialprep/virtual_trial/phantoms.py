"""Cortex phantoms of known thickness, as partial-volume tissue fractions on a voxel grid.

- :func:`shell`: a white-matter ball in a grey-matter shell of the given thickness, in CSF.
- :func:`folded`: a white-matter floor with gyri (fingers with rounded crowns, extruded along
  y), every point within the given distance of the white matter grey, the rest CSF; the
  gyri are spaced so that the grey banks of neighbouring gyri nearly touch (a sulcal gap of
  ``gap`` mm, below a voxel), the hard case for any thickness method.

Fractions are averages over sub-samples of each voxel (the scanner's partial volume).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

WM_RADIUS_MM = 18.0
CSF_MM = 3.0


@dataclass(frozen=True)
class Phantom:
    """Tissue fractions (CSF, GM, WM), labels (1 CSF, 2 GM, 3 WM, 0 background) and the
    true thickness (mm) on a grid of ``voxel`` mm."""

    csf: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    labels: np.ndarray
    voxel: float
    thickness: float


def _labels(fractions: np.ndarray) -> np.ndarray:
    """Largest fraction (background, CSF, GM, WM) -> 0..3."""
    return np.argmax(fractions, axis=0).astype(np.uint8)


def shell(voxel: float, thickness: float, subsamples: int = 5) -> Phantom:
    """The shell phantom (white-matter radius 18 mm, 3 mm of CSF outside)."""
    extent = WM_RADIUS_MM + thickness + CSF_MM + 2 * voxel + 2
    n = int(np.ceil(2 * extent / voxel))
    centres = (np.arange(n) - (n - 1) / 2) * voxel
    offsets = (np.arange(subsamples) - (subsamples - 1) / 2) * voxel / subsamples
    frac = np.zeros((4, n, n, n))  # background, CSF, GM, WM
    for dx in offsets:
        for dy in offsets:
            for dz in offsets:
                x, y, z = np.meshgrid(centres + dx, centres + dy, centres + dz, indexing="ij")
                r = np.sqrt(x**2 + y**2 + z**2)
                frac[3] += r < WM_RADIUS_MM
                frac[2] += (r >= WM_RADIUS_MM) & (r < WM_RADIUS_MM + thickness)
                frac[1] += (r >= WM_RADIUS_MM + thickness) & (
                    r < WM_RADIUS_MM + thickness + CSF_MM)
                frac[0] += r >= WM_RADIUS_MM + thickness + CSF_MM
    frac /= subsamples**3
    return Phantom(frac[1], frac[2], frac[3], _labels(frac), voxel, thickness)


def folded(voxel: float, thickness: float, gap: float = 0.5, gyrus_width: float = 5.0,
           gyrus_height: float = 12.0, gyri: int = 4, depth_mm: float = 8.0,
           subsamples: int = 5) -> Phantom:
    """The folded phantom: gyri ``gyrus_width`` mm wide (rounded crowns) on a white-matter
    floor, ``gap`` mm of CSF between the grey banks of neighbouring gyri, extruded over
    ``depth_mm`` along y; grey matter everywhere within ``thickness`` of the white matter."""
    period = gyrus_width + 2 * thickness + gap
    fine = voxel / subsamples
    size_x = gyri * period
    top = gyrus_height + gyrus_width / 2 + thickness + CSF_MM
    nx = int(round(size_x / voxel)) * subsamples
    nz = int(round((top + 3.0) / voxel)) * subsamples
    x = (np.arange(nx) + 0.5) * fine
    z = (np.arange(nz) + 0.5) * fine - 3.0
    xx, zz = np.meshgrid(x, z, indexing="ij")
    xm = np.mod(xx, period) - period / 2
    r = gyrus_width / 2
    wm = (zz < 0) | ((np.abs(xm) < r) & (zz < gyrus_height)) | (
        (xm**2 + (zz - gyrus_height) ** 2) < r**2)
    dist = ndimage.distance_transform_edt(~wm, sampling=fine)
    gm = ~wm & (dist <= thickness)
    csf = ~wm & ~gm

    def coarse(a: np.ndarray) -> np.ndarray:
        a = a.astype(np.float64)
        return a.reshape(nx // subsamples, subsamples, nz // subsamples, subsamples).mean(
            axis=(1, 3))

    ny = max(int(round(depth_mm / voxel)), 3)
    maps = [np.repeat(coarse(m)[:, None, :], ny, axis=1) for m in (csf, gm, wm)]
    frac = np.stack([np.zeros_like(maps[0]), *maps])
    return Phantom(maps[0], maps[1], maps[2], _labels(frac), voxel, thickness)
