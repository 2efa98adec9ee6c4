"""Regional volumes and total intracranial volume in native space."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pandas as pd
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
)

TISSUES = {1: "CSF", 2: "GM", 3: "WM"}


def regional_volumes(dseg: str, brain_mask: str, atlas: str, atlas_labels: str) -> dict:
    """Volumes (mm^3): tissues, TIV (brain mask), the grey matter of every cortical atlas
    region (``<region>_GM``) and every subcortical region within the mask."""
    seg_img = nib.load(dseg)
    zooms = seg_img.header.get_zooms()[:3]
    voxel = float(np.prod(zooms))
    seg = np.asarray(seg_img.dataobj).astype(int)
    mask = np.asarray(nib.load(brain_mask).dataobj) > 0
    lab = np.asarray(nib.load(atlas).dataobj).astype(int)
    if lab.shape != seg.shape or mask.shape != seg.shape:
        raise ValueError("segmentation, mask and atlas are not on the same grid")
    out = {"TIV": float(mask.sum()) * voxel}
    for k, name in TISSUES.items():
        out[name] = float((seg == k).sum()) * voxel
    table = pd.read_csv(atlas_labels, sep="\t")
    n = int(table["index"].max()) + 1
    counts = np.bincount(lab[mask].ravel(), minlength=n)
    gm = np.bincount(lab[mask & (seg == 2)].ravel(), minlength=n)
    cortical = table["cortical"].astype(bool) if "cortical" in table else np.zeros(len(table),
                                                                                  bool)
    for idx, name, is_cortex in zip(table["index"], table["name"], cortical, strict=True):
        if is_cortex:  # a cortical region's biomarker is its grey matter
            out[f"{name}_GM"] = float(gm[int(idx)]) * voxel
        else:
            out[str(name)] = float(counts[int(idx)]) * voxel
    return out


class _VolInputSpec(BaseInterfaceInputSpec):
    dseg = File(exists=True, mandatory=True)
    brain_mask = File(exists=True, mandatory=True)
    atlas = File(exists=True, mandatory=True, desc="atlas labels in native space")
    atlas_labels = File(exists=True, mandatory=True, desc="TSV: index, name")


class _VolOutputSpec(TraitedSpec):
    out_tsv = File(exists=True, desc="one row: region volumes in mm^3")


class RegionalVolumes(SimpleInterface):
    input_spec = _VolInputSpec
    output_spec = _VolOutputSpec

    def _run_interface(self, runtime):
        vols = regional_volumes(self.inputs.dseg, self.inputs.brain_mask, self.inputs.atlas,
                                self.inputs.atlas_labels)
        self._results["out_tsv"] = os.path.join(runtime.cwd, "volumes.tsv")
        pd.DataFrame([vols]).to_csv(self._results["out_tsv"], sep="\t", index=False)
        return runtime
