"""Cortical thickness with DiReCT (antspyx ``kelly_kapowski``) and its regional means."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import nibabel as nib
import numpy as np
import pandas as pd
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from trialprep.workflows.anat.interfaces import _deterministic


class _KKInputSpec(BaseInterfaceInputSpec):
    dseg = File(exists=True, mandatory=True, desc="labels 1 CSF, 2 GM, 3 WM")
    probseg = InputMultiObject(File(exists=True), mandatory=True, desc="CSF, GM, WM posteriors")
    iterations = traits.Int(45, usedefault=True, desc="DiReCT iterations (ANTs default 45)")
    gradient_step = traits.Float(0.025, usedefault=True)
    smoothing = traits.Float(1.5, usedefault=True, desc="smoothing variance (mm)")
    margin = traits.Int(2, usedefault=True, desc="voxels kept around the brain when cropping")
    seed = traits.Int(42, usedefault=True)
    single_threaded = traits.Bool(True, usedefault=True)
    processes = traits.Int(1, usedefault=True,
                           desc="slabs along the left-right axis run at once, one process each")
    overlap_mm = traits.Float(16.0, usedefault=True,
                              desc="context each slab keeps beyond its own part")


class _KKOutputSpec(TraitedSpec):
    thickness = File(exists=True, desc="cortical thickness map (mm), 0 outside GM")


class CorticalThickness(SimpleInterface):
    """DiReCT cortical thickness (Das et al. 2009) on the Atropos segmentation.

    The images are cropped to the brain's bounding box first (same result, less work) and
    the map is padded back onto the native grid. DiReCT is local (fixed gradient step,
    Gaussian smoothing of a few voxels, zero velocity at the image border), and one ITK
    thread is all it uses well; with ``processes`` > 1 the brain is cut into that many slabs
    of equal brain volume along its left-right axis, each slab runs in its own process with
    ``overlap_mm`` of context on either side, and each keeps only its own part.
    """

    input_spec = _KKInputSpec
    output_spec = _KKOutputSpec

    def _run_interface(self, runtime):
        _deterministic(self.inputs.seed, self.inputs.single_threaded)
        import ants

        seg = ants.image_read(self.inputs.dseg)
        probs = [ants.image_read(p) for p in self.inputs.probseg]
        box = ants.iMath(ants.threshold_image(seg, 1, 3), "MD", self.inputs.margin)
        crop = [ants.crop_image(img, box) for img in (seg, probs[1], probs[2])]
        params = {"its": self.inputs.iterations, "r": self.inputs.gradient_step,
                  "m": self.inputs.smoothing}
        if self.inputs.processes > 1:
            thick = _direct_in_slabs(crop, params, self.inputs.processes,
                                     self.inputs.overlap_mm, self.inputs.seed, runtime.cwd)
        else:
            thick = ants.kelly_kapowski(s=crop[0], g=crop[1], w=crop[2], verbose=0, **params)
        full = ants.decrop_image(thick, seg * 0.0)
        self._results["thickness"] = os.path.join(runtime.cwd, "thickness.nii.gz")
        ants.image_write(full, self._results["thickness"])
        return runtime


def slab_bounds(counts: np.ndarray, n: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """(start, stop) of each of ``n`` slabs holding equal shares of ``counts`` (brain voxels
    per plane along the axis), and the (start, stop) of the slab with ``overlap`` planes of
    context on each side."""
    cum = np.cumsum(counts)
    cuts = [0] + [int(np.searchsorted(cum, cum[-1] * k / n)) + 1 for k in range(1, n)]
    cuts.append(len(counts))
    out = []
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        out.append((a, b, max(0, a - overlap), min(len(counts), b + overlap)))
    return [s for s in out if s[1] > s[0]]


def _direct_slab(paths: tuple[str, str, str], out: str, params: dict, seed: int) -> str:
    """One slab's DiReCT, in a process of its own (one ITK thread, fixed seed)."""
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = "1"
    _deterministic(seed, True)
    import ants

    seg, gm, wm = (ants.image_read(p) for p in paths)
    ants.image_write(ants.kelly_kapowski(s=seg, g=gm, w=wm, verbose=0, **params), out)
    return out


def _direct_in_slabs(crop: list, params: dict, n: int, overlap_mm: float, seed: int,
                     cwd: str):
    import ants

    direction = np.asarray(crop[0].direction)
    axis = int(np.argmax(np.abs(direction[0, :])))  # the array axis closest to left-right
    seg = crop[0].numpy()
    counts = np.count_nonzero(seg, axis=tuple(i for i in range(seg.ndim) if i != axis))
    overlap = int(np.ceil(overlap_mm / crop[0].spacing[axis]))
    jobs, slabs = [], slab_bounds(counts, n, overlap)
    for k, (_, _, lo, hi) in enumerate(slabs):
        lower = [0] * seg.ndim
        upper = list(seg.shape)
        lower[axis], upper[axis] = lo, hi
        paths = []
        for name, img in zip(("seg", "gm", "wm"), crop, strict=True):
            paths.append(os.path.join(cwd, f"slab{k}_{name}.nii.gz"))
            ants.image_write(ants.crop_indices(img, lower, upper), paths[-1])
        jobs.append((tuple(paths), os.path.join(cwd, f"slab{k}_thickness.nii.gz")))
    with ProcessPoolExecutor(len(jobs), mp_context=get_context("spawn")) as pool:
        outs = list(pool.map(_direct_slab, *zip(*jobs, strict=True), [params] * len(jobs),
                             [seed] * len(jobs)))
    full = np.zeros(seg.shape, dtype=np.float32)
    for (a, b, lo, _), out in zip(slabs, outs, strict=True):
        part = ants.image_read(out).numpy()
        take = [slice(None)] * seg.ndim
        take[axis] = slice(a - lo, b - lo)
        put = [slice(None)] * seg.ndim
        put[axis] = slice(a, b)
        full[tuple(put)] = part[tuple(take)]
    return ants.from_numpy(full, origin=crop[0].origin, spacing=crop[0].spacing,
                           direction=crop[0].direction)


def regional_thickness(thickness: str, atlas: str, atlas_labels: str) -> dict[str, float]:
    """Mean thickness (mm) over the cortical voxels of every cortical atlas region, and the
    whole cortex (``mean_cortex``); a region with no cortical voxel is NaN."""
    thick = np.asarray(nib.load(thickness).dataobj, dtype=np.float64)
    lab = np.asarray(nib.load(atlas).dataobj).astype(int)
    if thick.shape != lab.shape:
        raise ValueError("thickness map and atlas are not on the same grid")
    table = pd.read_csv(atlas_labels, sep="\t")
    cortical = table[table["cortical"].astype(bool)] if "cortical" in table else table
    inside = thick > 0
    sums = np.bincount(lab[inside], weights=thick[inside], minlength=int(table["index"].max()) + 1)
    counts = np.bincount(lab[inside], minlength=sums.size)
    out = {}
    for idx, name in zip(cortical["index"], cortical["name"], strict=True):
        n = counts[int(idx)]
        out[str(name)] = float(sums[int(idx)] / n) if n else float("nan")
    cortex = np.isin(lab, cortical["index"].to_numpy()) & inside
    out["mean_cortex"] = float(thick[cortex].mean()) if cortex.any() else float("nan")
    return out
