"""Cortical thickness with DiReCT (antspyx ``kelly_kapowski``) and its regional means."""

from __future__ import annotations

import os

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


class _KKOutputSpec(TraitedSpec):
    thickness = File(exists=True, desc="cortical thickness map (mm), 0 outside GM")


class CorticalThickness(SimpleInterface):
    """DiReCT cortical thickness (Das et al. 2009) on the Atropos segmentation.

    The images are cropped to the brain's bounding box first (same result, less work) and
    the map is padded back onto the native grid.
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
        thick = ants.kelly_kapowski(s=crop[0], g=crop[1], w=crop[2],
                                    its=self.inputs.iterations, r=self.inputs.gradient_step,
                                    m=self.inputs.smoothing, verbose=0)
        full = ants.decrop_image(thick, seg * 0.0)
        self._results["thickness"] = os.path.join(runtime.cwd, "thickness.nii.gz")
        ants.image_write(full, self._results["thickness"])
        return runtime


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
