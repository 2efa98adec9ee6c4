"""Reportlets: SVG mosaics of a session's processing for the HTML reports."""

from __future__ import annotations

import io
from pathlib import Path

import nibabel as nib
import numpy as np

from trialprep.tables import write_text

#: Slice positions (fraction of the extent of the region shown) per view.
CUTS = (0.2, 0.35, 0.5, 0.65, 0.8)
VIEWS = ("axial", "coronal", "sagittal")


def _canonical(path: str | Path) -> np.ndarray:
    img = nib.as_closest_canonical(nib.load(str(path)))
    return np.asarray(img.dataobj, dtype=np.float32)


def _row(vol: np.ndarray, view: str, box: tuple[slice, ...]) -> np.ndarray:
    """The view's slices at ``CUTS`` through ``box``, side by side (one image per row of
    the mosaic: one axes and one contour per overlay and row, not per panel)."""
    axis = {"sagittal": 0, "coronal": 1, "axial": 2}[view]
    sub = vol[box]
    idx = [int(round(c * (sub.shape[axis] - 1))) for c in CUTS]
    panels = [np.rot90(np.take(sub, i, axis=axis)) for i in idx]
    gap = np.full((panels[0].shape[0], 1), np.nan, dtype=np.float32)
    return np.hstack([p for panel in panels for p in (panel, gap)][:-1])


def _bounding_box(mask: np.ndarray, margin: int = 4) -> tuple[slice, ...]:
    coords = np.argwhere(mask)
    if coords.size == 0:
        return tuple(slice(None) for _ in mask.shape)
    lo = np.maximum(coords.min(0) - margin, 0)
    hi = np.minimum(coords.max(0) + margin + 1, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


def _mosaic(background: np.ndarray, overlays: list[tuple[np.ndarray, str]], box,
            title: str, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lo, hi = np.percentile(background[box], [1, 99.5])
    rows = [_row(background, view, box) for view in VIEWS]
    width = 2.0 * len(CUTS)
    heights = [width * r.shape[0] / r.shape[1] for r in rows]
    fig, axes = plt.subplots(len(VIEWS), 1, figsize=(width, sum(heights) / 0.93),
                             gridspec_kw={"height_ratios": heights}, facecolor="black")
    cmap = plt.get_cmap("gray").with_extremes(bad="black")
    for ax, view, bg in zip(axes, VIEWS, rows, strict=True):
        ax.imshow(bg, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
        for vol, color in overlays:
            layer = np.nan_to_num(_row(vol, view, box))
            if layer.max() > layer.min():
                ax.contour(layer, levels=[0.5], colors=color, linewidths=0.8)
        ax.set_axis_off()
    fig.suptitle(title, color="white", fontsize=9)
    fig.subplots_adjust(left=0, right=1, bottom=0, top=0.93, hspace=0.02)
    buf = io.StringIO()
    fig.savefig(buf, format="svg", facecolor="black", metadata={"Date": None})
    plt.close(fig)
    return write_text(buf.getvalue(), out)


def plot_segmentation(t1w: str, brain_mask: str, dseg: str, out: Path) -> Path:
    """Brain mask (red) and GM/WM boundaries (green/blue) on the bias-corrected T1w."""
    bg, mask, seg = _canonical(t1w), _canonical(brain_mask) > 0, _canonical(dseg)
    box = _bounding_box(mask)
    return _mosaic(bg, [(mask.astype(np.float32), "#ff3b3b"),
                        ((seg >= 2).astype(np.float32), "#37d67a"),
                        ((seg == 3).astype(np.float32), "#4aa3ff")], box,
                   "brain mask (red), GM (green) and WM (blue) boundaries", out)


def plot_brain_mask(t1w: str, brain_mask: str, template_mask: str, out: Path) -> Path:
    """The extracted brain (red) and the template's brain brought to the subject (yellow) on
    the whole head: the two must agree, and neither may follow the scalp or the neck."""
    bg = _canonical(t1w)
    mask, tpl = _canonical(brain_mask) > 0, _canonical(template_mask) >= 0.5
    head = bg > np.percentile(bg, 60)
    box = _bounding_box(head | mask, margin=2)
    return _mosaic(bg, [(mask.astype(np.float32), "#ff3b3b"),
                        (tpl.astype(np.float32), "#ffd400")], box,
                   "brain mask (red) and the template's brain (yellow) on the whole head", out)


def template_edges(template: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Edges of the template: a high-gradient band, as a binary map."""
    from scipy import ndimage

    grad = ndimage.generic_gradient_magnitude(ndimage.gaussian_filter(template, 1.0),
                                              ndimage.sobel)
    inside = grad[mask]
    return (grad > np.percentile(inside, 85)) & mask if inside.size else np.zeros_like(mask)


def plot_registration(std_t1w: str, template: str, template_mask: str, out: Path) -> Path:
    """Template edges (yellow) on the T1w resampled to template space."""
    bg, tpl = _canonical(std_t1w), _canonical(template)
    mask = _canonical(template_mask) > 0
    edges = template_edges(tpl, mask)
    box = _bounding_box(mask)
    return _mosaic(bg, [(edges.astype(np.float32), "#ffd400")], box,
                   "MNI152 template edges (yellow) on the registered T1w", out)
