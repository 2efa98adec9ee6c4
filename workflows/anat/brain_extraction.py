"""Brain extraction that does not depend on where the head sits: deepbet (Fisch et al. 2024,
a U-Net trained on real T1w heads; MIT, its weights ship inside its wheel, nothing is
downloaded), on the CPU by default and on a GPU when one is present and allowed.

The mask it gives (the brain with its CSF) is checked against physiological volumes; a
mask outside them (a failed extraction, not a head) stops the session with the reason.
"""

from __future__ import annotations

import os

import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

#: Intracranial volumes (mL) a brain mask of an adult head can have (0.1 and 99.9
#: percentiles of adult TIV are about 1.05 and 2.05 L; margin for children and large heads).
MASK_VOLUME_ML = (850.0, 2400.0)


class BrainExtractionError(RuntimeError):
    """The brain mask is not a brain's; the message says why."""


def extract_brain(t1w: str, threshold: float = 0.5, use_gpu: bool = False,
                  threads: int = 1, seed: int = 42):
    """(mask image, mask volume in mL) of ``t1w`` by deepbet."""
    import nibabel as nib
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(max(1, threads))
    gpu = bool(use_gpu) and torch.cuda.is_available()
    if gpu:  # CPU kernels are deterministic at a fixed thread count; cuDNN's are not all.
        # (It imports torch's compiler settings, 2.5 s: not paid on the CPU path.)
        torch.use_deterministic_algorithms(True, warn_only=True)
    from deepbet.bet import BrainExtraction as DeepBET

    bet = DeepBET(no_gpu=not gpu)
    img = nib.load(t1w)
    _, mask, _ = bet.run(img, threshold=threshold)
    data = np.asarray(mask.dataobj) > 0
    volume = float(data.sum() * np.prod(img.header.get_zooms()[:3]) / 1000.0)
    return nib.Nifti1Image(data.astype(np.uint8), img.affine), volume


class _BETInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="bias-corrected T1w (whole head)")
    threshold = traits.Float(0.5, usedefault=True, desc="deepbet's mask threshold")
    use_gpu = traits.Bool(False, usedefault=True, desc="run on a GPU when one is present")
    threads = traits.Int(1, usedefault=True)
    seed = traits.Int(42, usedefault=True)


class _BETOutputSpec(TraitedSpec):
    mask_file = File(exists=True, desc="brain mask (the brain and its CSF)")
    brain_file = File(exists=True, desc="the T1w inside the mask")
    mask_volume_ml = traits.Float(desc="volume of the mask (mL)")
    device = traits.Str(desc="cpu or cuda")


class BrainExtraction(SimpleInterface):
    """deepbet brain extraction, with the mask's volume checked."""

    input_spec = _BETInputSpec
    output_spec = _BETOutputSpec

    def _run_interface(self, runtime):
        import nibabel as nib
        import torch

        mask, volume = extract_brain(self.inputs.in_file, self.inputs.threshold,
                                     self.inputs.use_gpu, self.inputs.threads,
                                     self.inputs.seed)
        lo, hi = MASK_VOLUME_ML
        if not lo <= volume <= hi:
            raise BrainExtractionError(
                f"brain extraction failed: the brain mask holds {volume / 1000:.2f} L, "
                f"outside {lo / 1000:.2f}-{hi / 1000:.2f} L (not a whole adult brain)")
        self._results["mask_file"] = os.path.join(runtime.cwd, "brain_mask.nii.gz")
        nib.save(mask, self._results["mask_file"])
        img = nib.load(self.inputs.in_file)
        brain = np.asarray(img.dataobj, np.float32) * (np.asarray(mask.dataobj) > 0)
        self._results["brain_file"] = os.path.join(runtime.cwd, "brain.nii.gz")
        nib.save(nib.Nifti1Image(brain, img.affine), self._results["brain_file"])
        self._results["mask_volume_ml"] = volume
        self._results["device"] = "cuda" if (self.inputs.use_gpu and
                                             torch.cuda.is_available()) else "cpu"
        return runtime
