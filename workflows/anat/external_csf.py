"""The CSF around the brain: extends the template brain mask to the intracranial space.

The template's brain mask, brought to the subject, stops at the brain's surface, but the
subarachnoid CSF between brain and skull is intracranial volume and CSF as much as the CSF in
the sulci and ventricles (FSL FAST's and SPM's CSF classes include it). Atropos runs inside
the brain mask; this step then looks at a band just outside it: under a two-compartment
partial-volume model (voxel intensity = f * CSF + (1 - f) * dark, the dark level being skull
and air), a band voxel is CSF when CSF fills most of it (intensity above the midpoint of the
two levels), it is not brighter than the CSF/GM midpoint, and it connects to the brain.
"""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    OutputMultiObject,
    SimpleInterface,
    TraitedSpec,
    traits,
)
from scipy import ndimage


def external_csf(t1w: np.ndarray, mask: np.ndarray, dseg: np.ndarray, csf_prob: np.ndarray,
                 gm_prob: np.ndarray, voxel_mm: tuple, band_mm: float = 4.0
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(CSF voxels outside ``mask``, their CSF fraction). Levels: CSF and GM are the
    median intensities of voxels Atropos is sure of (posterior > 0.9); dark is the 10th
    percentile of the band (skull, air)."""
    mask = mask.astype(bool)
    sure_csf = (csf_prob > 0.9) & (dseg == 1)
    sure_gm = (gm_prob > 0.9) & (dseg == 2)
    empty = np.zeros(mask.shape, bool)
    if sure_csf.sum() < 10 or sure_gm.sum() < 10 or band_mm <= 0:
        return empty, np.zeros(mask.shape, np.float32)
    outside = ndimage.distance_transform_edt(~mask, sampling=voxel_mm)
    band = ~mask & (outside <= band_mm)
    if not band.any():
        return empty, np.zeros(mask.shape, np.float32)
    csf, gm = float(np.median(t1w[sure_csf])), float(np.median(t1w[sure_gm]))
    dark = float(np.percentile(t1w[band], 10))
    if not dark < csf < gm:  # no usable contrast: leave the mask as it is
        return empty, np.zeros(mask.shape, np.float32)
    candidate = band & (t1w > (dark + csf) / 2) & (t1w < (csf + gm) / 2)
    # Keep what touches the brain (through other candidates), not isolated bright noise.
    labels, _ = ndimage.label(candidate | mask)
    touching = np.unique(labels[mask])
    added = candidate & np.isin(labels, touching[touching > 0])
    fraction = np.where(added, np.clip((t1w - dark) / (csf - dark), 0, 1), 0)
    return added, fraction.astype(np.float32)


class _ExternalCSFInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="bias-corrected T1w")
    mask_file = File(exists=True, mandatory=True, desc="brain mask (template-based)")
    dseg = File(exists=True, mandatory=True, desc="labels 1 CSF, 2 GM, 3 WM")
    probseg = InputMultiObject(File(exists=True), mandatory=True, desc="CSF, GM, WM")
    band_mm = traits.Float(4.0, usedefault=True, desc="how far outside the mask to look")


class _ExternalCSFOutputSpec(TraitedSpec):
    mask_file = File(exists=True, desc="intracranial mask: brain and the CSF around it")
    dseg = File(exists=True, desc="labels with the external CSF as CSF")
    probseg = OutputMultiObject(File(exists=True), desc="CSF, GM, WM")


class ExternalCSF(SimpleInterface):
    """Add the CSF around the brain to the mask, the labels and the CSF probability."""

    input_spec = _ExternalCSFInputSpec
    output_spec = _ExternalCSFOutputSpec

    def _run_interface(self, runtime):
        seg_img = nib.load(self.inputs.dseg)
        seg = np.asarray(seg_img.dataobj).astype(np.uint8)
        mask = np.asarray(nib.load(self.inputs.mask_file).dataobj) > 0
        probs = [nib.load(p) for p in self.inputs.probseg]
        csf_p, gm_p, wm_p = (np.asarray(p.dataobj, dtype=np.float32) for p in probs)
        t1w = np.asarray(nib.load(self.inputs.in_file).dataobj, dtype=np.float64)
        added, fraction = external_csf(t1w, mask, seg, csf_p, gm_p,
                                       seg_img.header.get_zooms()[:3], self.inputs.band_mm)
        seg[added] = 1
        csf_p = np.where(added, fraction, csf_p).astype(np.float32)
        out = {}
        for name, data, ref in (("mask_file", (mask | added).astype(np.uint8), seg_img),
                                ("dseg", seg, seg_img)):
            out[name] = os.path.join(runtime.cwd, f"{name}.nii.gz")
            nib.save(nib.Nifti1Image(data, ref.affine), out[name])
        self._results.update(out)
        self._results["probseg"] = []
        for i, (data, ref) in enumerate(zip((csf_p, gm_p, wm_p), probs, strict=True)):
            path = os.path.join(runtime.cwd, f"probseg_{i + 1}.nii.gz")
            nib.save(nib.Nifti1Image(data, ref.affine), path)
            self._results["probseg"].append(path)
        return runtime
