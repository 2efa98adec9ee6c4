"""Linear look-ups of volumes at many points, skipping the points outside a volume's support.

A session samples some twenty template and head volumes at every voxel centre of its field of
view (1.6 million points at 2 mm); most volumes are zero over much of it (the brain's maps
beyond the brain, the head's beyond the head). Points more than a voxel outside the box where
a volume differs from the fill value get the fill value without interpolation: the result is
the same as interpolating them, at a fraction of the cost.
"""

from __future__ import annotations

import weakref

import numpy as np
from scipy import ndimage

_BOUNDS: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def support_bounds(volume: np.ndarray, cval: float,
                   below: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(lowest, highest) voxel index, per axis, where ``volume`` differs from ``cval``, or
    with ``below`` where it is below that (computed once per array)."""
    key = (id(volume), float(cval), below)
    if key not in _BOUNDS:
        differs = volume != cval if below is None else volume < below
        lo, hi = [], []
        for axis in range(volume.ndim):
            others = tuple(a for a in range(volume.ndim) if a != axis)
            where = np.flatnonzero(differs.any(axis=others))
            lo.append(where[0] if where.size else 0)
            hi.append(where[-1] if where.size else -2)
        _BOUNDS[key] = (np.asarray(lo, float), np.asarray(hi, float))
        weakref.finalize(volume, _BOUNDS.pop, key, None)
    return _BOUNDS[key]


def to_voxels(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """World points (N x 3, mm) as (3 x N) voxel coordinates of a volume with ``affine``."""
    return (np.linalg.inv(affine) @ np.c_[points, np.ones(len(points))].T)[:3]


def sample(volume: np.ndarray, vox: np.ndarray, cval: float = 0.0,
           bounds: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """``ndimage.map_coordinates(volume, vox, order=1, mode="constant", cval=cval)``, with
    the points outside ``bounds`` (default: the volume's support) set to ``cval`` directly."""
    lo, hi = support_bounds(volume, cval) if bounds is None else bounds
    inside = np.all((vox > lo[:, None] - 1) & (vox < hi[:, None] + 1), axis=0)
    out = np.full(vox.shape[1], cval, dtype=volume.dtype)
    if inside.any():
        out[inside] = ndimage.map_coordinates(volume, vox[:, inside], order=1,
                                              mode="constant", cval=cval)
    return out
