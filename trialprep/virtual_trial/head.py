"""The virtual head around the template's brain: skull, scalp, face, eyes and neck.

Real T1w images hold much more than a brain: the subarachnoid CSF up to the skull's inner
table, a skull of varying thickness with fatty marrow (diploe) between its tables, bright
subcutaneous fat and skin, the face (eyes with their lenses in orbital fat inside bony
orbits, the nasal cavity and maxillary sinuses full of air, the nose, tongue and mandible)
and the neck (muscles, the cervical spine with marrow in its vertebral bodies, the spinal
canal with CSF and the cord). None of it follows the brain's outline: the inner table is
the brain's hull smoothed over centimetres with a CSF gap of 1 to 5 mm, the skull is 4-9 mm
thick and the fat 3-8 mm, each varying smoothly over the head.

The model is painted as labels on a 1 mm grid in template (MNI) space and stored as
partial-volume fractions of each tissue on a 2 mm grid (cached once per machine), sampled
like the template's maps through each subject's backward mapping.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from trialprep.atomic import atomic_path
from trialprep.virtual_trial.sampling import sample, to_voxels

#: Tissues of the head outside the brain, in the order of their labels (1..).
TISSUES = ("skin", "fat", "muscle", "bone", "marrow", "eye", "lens", "cord", "csf_rim",
           "canal")
#: The head grid (MNI mm, 1 mm painting, 2 mm stored): x, y, z extents.
EXTENT = ((-100.0, 100.0), (-140.0, 120.0), (-210.0, 120.0))
STORED_MM = 2.0
EYES = ((-32.0, 52.0, -36.0), (32.0, 52.0, -36.0))


@dataclass(frozen=True)
class Head:
    affine: np.ndarray          # voxel -> MNI mm of the stored (2 mm) maps
    maps: dict                  # tissue -> fraction (float32)
    intracranial: np.ndarray    # brain and CSF up to the inner table, above the foramen magnum


def _smooth_field(shape, rng: np.random.Generator, sigma_vox: float, lo: float,
                  hi: float) -> np.ndarray:
    """A smooth random field spanning [lo, hi] (low-resolution noise, upsampled)."""
    coarse = [max(2, int(np.ceil(s / sigma_vox))) + 1 for s in shape]
    field = ndimage.gaussian_filter(rng.normal(0, 1, coarse), 1.0)
    field = ndimage.zoom(field, [s / c for s, c in zip(shape, coarse, strict=True)], order=1)
    field = field[:shape[0], :shape[1], :shape[2]]
    field = (field - field.min()) / max(float(np.ptp(field)), 1e-9)
    return lo + (hi - lo) * field


def _ellipsoid(X, Y, Z, centre, radii) -> np.ndarray:
    """Normalized radius (< 1 inside) of an axis-aligned ellipsoid."""
    cx, cy, cz = centre
    rx, ry, rz = radii
    return np.sqrt(((X - cx) / rx) ** 2 + ((Y - cy) / ry) ** 2 + ((Z - cz) / rz) ** 2)


def build_head(brain_mask: np.ndarray, brain_affine: np.ndarray, seed: int = 20261201) -> Head:
    """Paint the head around ``brain_mask`` (template grid, 1 mm) and store its fractions."""
    rng = np.random.default_rng(seed)
    (x0, x1), (y0, y1), (z0, z1) = EXTENT
    shape = (int(x1 - x0), int(y1 - y0), int(z1 - z0))
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = (x0, y0, z0)
    # the template's brain on the head grid (the two grids share the 1 mm lattice)
    brain = np.zeros(shape, bool)
    offset = np.round(np.linalg.inv(affine) @ brain_affine[:, 3])[:3].astype(int)
    sx, sy, sz = brain_mask.shape
    brain[offset[0]:offset[0] + sx, offset[1]:offset[1] + sy,
          offset[2]:offset[2] + sz] = brain_mask > 0.5
    X, Y, Z = (np.arange(n) + o for n, o in zip(shape, (x0, y0, z0), strict=True))
    X, Y, Z = np.meshgrid(X, Y, Z, indexing="ij", sparse=True)

    # The brainstem leaves the template's grid at its bottom: the spinal cord goes on down.
    bottom = np.argwhere(brain_mask[:, :, 0] > 0.5)
    stem = (brain_affine @ np.r_[bottom.mean(axis=0), 0, 1])[:2] if bottom.size else (0, -38)
    cord_r = np.hypot(X - stem[0], Y - stem[1])
    grid_bottom = float(brain_affine[2, 3])
    below = np.less(Z, grid_bottom + 1)
    cord = (cord_r <= 5.0) & below
    canal = (cord_r <= 8.0) & below

    # Intracranial space: the brain's hull (smoothed over ~1 cm) plus 1-5 mm of CSF.
    gap = _smooth_field(shape, rng, 25, 1.0, 5.0)
    dist_brain = ndimage.distance_transform_edt(~brain)
    hull = ndimage.gaussian_filter((dist_brain <= gap).astype(np.float32), 4.0) > 0.35
    intracranial = hull | brain | canal
    # Skull and scalp over the vault: thickness fields varying over the head.
    dist_ic = ndimage.distance_transform_edt(~intracranial)
    skull_t = _smooth_field(shape, rng, 30, 4.0, 9.0)
    fat_t = _smooth_field(shape, rng, 30, 3.0, 8.0)
    vault = Z > -40  # the cranial vault; below it the skull base, face and neck
    labels = np.zeros(shape, np.uint8)
    L = {name: i + 1 for i, name in enumerate(TISSUES)}

    # Face, lower head and neck: soft tissue volumes (muscle) covered by fat and skin.
    neck = (np.hypot((X - 0.0) / 58.0, (Y - (stem[1] + 18)) / 62.0) <= 1.0) & (Z < -50)
    lower_head = _ellipsoid(X, Y, Z, (0.0, 0.0, -45.0), (72.0, 88.0, 60.0)) <= 1.0
    face = (_ellipsoid(X, Y, Z, (0.0, 42.0, -62.0), (58.0, 55.0, 55.0)) <= 1.0) & (Z < 0)
    nose_tip_y = 96.0 - 0.25 * np.abs(Z + 52.0)
    nose = (np.abs(X) <= 4 + 0.35 * (nose_tip_y - Y)) & (Y >= 60) & np.less_equal(
        Y, nose_tip_y) & (Z > -72) & (Z < -22)
    body = neck | lower_head | face | nose | (dist_ic <= skull_t + fat_t + 2.0)
    dist_out = ndimage.distance_transform_edt(body)  # depth below the skin
    labels[body] = L["muscle"]
    labels[body & (dist_out <= fat_t + 2.0) & ~vault] = L["fat"]
    # over the vault: skull, then fat, then skin
    shell = vault & (dist_ic > 0)
    labels[shell & (dist_ic <= skull_t + fat_t + 2.0)] = L["fat"]
    temporalis = (np.abs(X) > 45) & (Z > -30) & (Z < 30) & (Y > -40) & (Y < 30)
    labels[shell & temporalis & (dist_ic > skull_t) & (dist_ic <= skull_t + 4.0)] = \
        L["muscle"]
    labels[body & (dist_out <= 2.0)] = L["skin"]
    # the skull: vault and base as one shell round the intracranial space; marrow between
    # its tables where it is thick
    skull = (dist_ic > 0) & (dist_ic <= skull_t)
    labels[skull] = L["bone"]
    labels[skull & (dist_ic > 0.3 * skull_t) & (dist_ic < 0.7 * skull_t) &
           (skull_t > 5.0)] = L["marrow"]

    # Eyes: vitreous globes with lenses in orbital fat inside bony orbits.
    for centre in EYES:
        orbit = _ellipsoid(X, Y, Z, (centre[0], centre[1] - 8, centre[2]), (19, 26, 18))
        labels[(orbit <= 1.12) & (orbit > 1.0)] = L["bone"]
        labels[orbit <= 1.0] = L["fat"]
        labels[_ellipsoid(X, Y, Z, centre, (11.5, 11.5, 11.5)) <= 1.0] = L["eye"]
        labels[_ellipsoid(X, Y, Z, (centre[0], centre[1] + 9.5, centre[2]),
                          (4.5, 1.8, 4.5)) <= 1.0] = L["lens"]
    # Air: the nasal cavity (either side of the septum) and the maxillary sinuses.
    nasal = _ellipsoid(X, Y, Z, (0.0, 60.0, -48.0), (8.0, 18.0, 14.0)) <= 1.0
    labels[nasal & (np.abs(X) > 1.0)] = 0
    labels[nasal & (np.abs(X) <= 1.0)] = L["bone"]
    for side in (-1, 1):
        labels[_ellipsoid(X, Y, Z, (side * 25, 40, -56), (11, 15, 14)) <= 1.0] = 0
    # Mandible (a U of bone with marrow) and tongue.
    arc = np.hypot(X / 46.0, np.clip(Y - 5.0, 0, None) / 60.0)
    mandible = (np.abs(arc - 1.0) * 50 <= 6.0) & (Y > 5) & (Z > -100) & (Z < -82)
    labels[mandible] = L["bone"]
    labels[mandible & (np.abs(arc - 1.0) * 50 <= 2.5)] = L["marrow"]
    labels[_ellipsoid(X, Y, Z, (0, 38, -80), (24, 30, 14)) <= 1.0] = L["muscle"]
    # Cervical spine in front of the canal: vertebral bodies (bone rim, marrow inside).
    vert_r = np.hypot(X - stem[0], Y - (stem[1] + 24))
    spine = (vert_r <= 10.0) & np.less(Z, grid_bottom - 8)
    labels[spine] = L["bone"]
    labels[spine & (vert_r <= 8.0) & (np.mod(Z, 16) > 2)] = L["marrow"]
    # the intracranial space (CSF round the brain, up to the inner table), the spinal canal
    # below the foramen magnum (CSF round the cord) and the cord
    labels[intracranial & ~below] = L["csf_rim"]
    labels[canal & below] = L["canal"]
    labels[cord] = L["cord"]
    labels[brain] = 0  # the template's tissue maps are the brain

    def stored(mask: np.ndarray) -> np.ndarray:
        a = mask.astype(np.float32)
        k = int(STORED_MM)
        n = [s // k for s in a.shape]
        a = a[:n[0] * k, :n[1] * k, :n[2] * k]
        return a.reshape(n[0], k, n[1], k, n[2], k).mean(axis=(1, 3, 5))

    maps = {t: stored(labels == L[t]) for t in TISSUES}
    stored_affine = np.diag([STORED_MM] * 3 + [1.0])
    stored_affine[:3, 3] = (x0 + 0.5 * (STORED_MM - 1), y0 + 0.5 * (STORED_MM - 1),
                            z0 + 0.5 * (STORED_MM - 1))
    return Head(stored_affine, maps, stored(intracranial & ~below))


def _cache_path() -> Path:
    root = Path(os.environ.get("TRIALPREP_CACHE", Path.home() / ".cache" / "trialprep"))
    return root / "virtual-trial-head-v3.npz"


def load_head(brain_mask: np.ndarray, brain_affine: np.ndarray) -> Head:
    """The head model (built once, then read from a local cache)."""
    path = _cache_path()
    if path.exists():
        with np.load(path) as z:
            return Head(z["affine"], {t: z[t].astype(np.float32) for t in TISSUES},
                        z["intracranial"].astype(np.float32))
    head = build_head(brain_mask, brain_affine)
    with atomic_path(path) as tmp:
        np.savez(tmp, affine=head.affine, intracranial=head.intracranial.astype(np.float16),
                 **{t: m.astype(np.float16) for t, m in head.maps.items()})
    return head


def sample_head(points_template: np.ndarray, head: Head) -> dict[str, np.ndarray]:
    """Head tissue fractions at template-space points (linear interpolation; air beyond)."""
    vox = to_voxels(points_template, head.affine)
    out = {t: sample(m, vox) for t, m in head.maps.items()}
    out["intracranial"] = sample(head.intracranial, vox)
    return out
