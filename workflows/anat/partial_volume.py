"""Tissue fractions (partial volumes) from the bias-corrected T1w and the segmentation.

A segmentation's posterior says how likely a voxel belongs to a class, not how much of the
class it holds: at a tissue boundary it jumps from 0 to 1 within a voxel or two wherever
the image's blur put the edge. For thickness the amount matters. Where two tissues meet,
intensity mixes linearly (``I = f mu_bright + (1 - f) mu_dark``, and the scanner's blur is
linear too), so the fraction ``f`` read off the intensity keeps each tissue's amount along
a line across the boundary, however blurred (Acosta et al. 2009 use the same two-compartment
model at the grey matter's boundaries).
"""

from __future__ import annotations

import numpy as np


def tissue_means(t1w: np.ndarray, probs: np.ndarray, sure: float = 0.95) -> np.ndarray | None:
    """Median intensity of each class (CSF, GM, WM) over voxels it is sure of; None when a
    class has too few such voxels or the means are not ordered CSF < GM < WM."""
    means = []
    for c in range(3):
        voxels = t1w[probs[c] >= sure]
        if voxels.size < 20:
            return None
        means.append(float(np.median(voxels)))
    means = np.array(means)
    return means if means[0] < means[1] < means[2] else None


def partial_volumes(t1w: np.ndarray, probs: np.ndarray, mask: np.ndarray | None = None
                    ) -> np.ndarray:
    """(3, ...) CSF, GM, WM fractions: every voxel labelled grey matter or CSF whose
    intensity lies between their means is a mixture of the two (sulcal CSF narrower than a
    voxel shows only as such a dip, with no CSF label near it), and likewise for grey and
    white matter; elsewhere the posteriors are kept. ``probs``: (3, ...) posteriors;
    ``mask``: where the brain is."""
    probs = np.clip(np.asarray(probs, np.float64), 0, 1)
    means = tissue_means(t1w, probs)
    if means is None:
        return probs
    labels = probs.argmax(axis=0)
    inside = probs.sum(axis=0) > 0.5 if mask is None else mask.astype(bool)
    out = probs.copy()
    for dark, bright in ((0, 1), (1, 2)):
        mixed = inside & np.isin(labels, (dark, bright)) & (t1w > means[dark]) & \
            (t1w < means[bright])
        frac = np.clip((t1w - means[dark]) / (means[bright] - means[dark]), 0, 1)
        rest = 1.0 - out[3 - dark - bright]
        out[bright] = np.where(mixed, frac * rest, out[bright])
        out[dark] = np.where(mixed, (1 - frac) * rest, out[dark])
    return out
