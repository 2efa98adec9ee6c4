"""Nipype interfaces over antspyx (the ANTs command-line tools are not installed)."""

from __future__ import annotations

import os
import tempfile

import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    OutputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)
from nipype.utils.filemanip import fname_presuffix


def _out(in_file: str, suffix: str, cwd: str) -> str:
    return fname_presuffix(in_file, suffix=suffix, newpath=cwd, use_ext=True)


def _deterministic(seed: int | None, single_threaded: bool) -> None:
    """ANTs is bit-reproducible only with one ITK thread and a fixed seed together."""
    if single_threaded:
        os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = "1"
    if seed is not None:
        os.environ["ANTS_RANDOM_SEED"] = str(seed)


class InvalidT1wError(ValueError):
    """A T1w image that cannot be processed; the message says why."""


class RegistrationError(RuntimeError):
    """Registration to the template failed its check; the message says why."""


def check_t1w(path: str) -> None:
    """Refuse images that are not 3-D, have NaN/inf values or carry no signal."""
    import nibabel as nib
    import numpy as np

    img = nib.load(path)
    shape = tuple(d for d in img.shape if d > 1) if len(img.shape) > 3 else img.shape
    if len(shape) != 3:
        raise InvalidT1wError(f"T1w must be a 3-D image, got {len(shape)}-D {img.shape}")
    data = np.asarray(img.dataobj, dtype=np.float32)
    if not np.isfinite(data).all():
        raise InvalidT1wError(f"T1w has {int((~np.isfinite(data)).sum())} NaN/inf voxel(s)")
    if float(data.max()) <= float(data.min()):
        raise InvalidT1wError("T1w is empty (every voxel has the same value)")


def head_mask(img):
    """antspyx ``get_mask(img, cleanup=2)`` (above the mean intensity, eroded by 2 voxels,
    the largest component, dilated by 2), with the holes filled by SciPy (6-connected
    background, 0.07 s) instead of ITK's FillHoles (1.1 s on a 2 mm head; the two differ
    by at most 0.06 % of the mask's voxels on the demo's heads)."""
    import ants
    from scipy import ndimage

    mask = ants.threshold_image(img, img.mean(), img.max())
    mask = ants.iMath(ants.iMath(ants.iMath(mask, "ME", 2), "GetLargestComponent"), "MD", 2)
    return mask.new_image_like(ndimage.binary_fill_holes(mask.numpy() > 0).astype("float32"))


class _N4InputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="T1w image")
    seed = traits.Int(42, usedefault=True)
    single_threaded = traits.Bool(True, usedefault=True)
    shrink_factor = traits.Int(4, usedefault=True)
    iterations = traits.List(traits.Int, [50, 50, 50, 50], usedefault=True)


class _N4OutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="bias-corrected image")
    bias_file = File(exists=True, desc="estimated bias field")
    head_mask = File(exists=True, desc="head mask the field was fitted in")


class N4BiasFieldCorrection(SimpleInterface):
    """N4 (Tustison et al. 2010) within an Otsu head mask."""

    input_spec = _N4InputSpec
    output_spec = _N4OutputSpec

    def _run_interface(self, runtime):
        _deterministic(self.inputs.seed, self.inputs.single_threaded)  # before ITK starts
        import ants

        check_t1w(self.inputs.in_file)
        img = ants.image_read(self.inputs.in_file)
        mask = head_mask(img)
        conv = {"iters": list(self.inputs.iterations), "tol": 1e-7}
        bias = ants.n4_bias_field_correction(img, mask=mask, convergence=conv,
                                             shrink_factor=self.inputs.shrink_factor,
                                             return_bias_field=True)
        corrected = img / bias  # what N4 returns, without fitting the field twice
        for key, image, suffix in (("out_file", corrected, "_n4"), ("bias_file", bias, "_bias"),
                                   ("head_mask", mask, "_headmask")):
            self._results[key] = _out(self.inputs.in_file, suffix, runtime.cwd)
            ants.image_write(image, self._results[key])
        return runtime


class _RegInputSpec(BaseInterfaceInputSpec):
    moving = File(exists=True, mandatory=True)
    fixed = File(exists=True, mandatory=True)
    fixed_mask = File(exists=True, desc="restrict the metric to the template brain")
    moving_mask = File(exists=True, desc="restrict the metric to the subject's brain")
    initialize = traits.Bool(
        True, usedefault=True,
        desc="multi-start search of the initial rigid pose (initial_alignment.py), for heads "
             "that lie anywhere in the field of view")
    init_resolution_mm = traits.Float(
        4.0, usedefault=True,
        desc="resolution the initial search scores its poses at (the affine and SyN "
             "stages refine the pose it finds)")
    transform = traits.Enum("SyN", "Affine", "Rigid", "antsRegistrationSyNQuick[s]",
                            usedefault=True)
    syn_iterations = traits.List(traits.Int, [40, 20, 0], usedefault=True,
                                 desc="SyN iterations per level, coarse to fine")
    syn_bins = traits.Int(16, usedefault=True, desc="histogram bins of the SyN's Mattes "
                          "mutual information (antspyx: 32; its levels at 8 and 4 mm have "
                          "3 000-25 000 brain samples, sparse for 32 x 32 bins)")
    seed = traits.Int(42, usedefault=True)
    single_threaded = traits.Bool(True, usedefault=True)
    template_name = traits.Str("template", usedefault=True, desc="named in the error")
    min_correlation = traits.Float(
        -1.0, usedefault=True,
        desc="least correlation of the registered image with the template inside its mask; "
             "below it the node raises RegistrationError and the workflow stops there")


class _RegOutputSpec(TraitedSpec):
    warped = File(exists=True, desc="moving image in the fixed space")
    forward_transforms = OutputMultiObject(File(exists=True))
    inverse_transforms = OutputMultiObject(File(exists=True))
    metric = traits.Float(desc="final Mattes mutual information (lower is better)")
    correlation = traits.Float(desc="correlation with the template inside its mask")


def _crop_to_mask(image, mask, margin_mm: float):
    """``image`` and ``mask`` cropped to the mask's bounding box and ``margin_mm`` round it."""
    import ants

    idx = np.argwhere(mask.numpy() > 0)
    pad = np.ceil(margin_mm / np.asarray(mask.spacing)).astype(int)
    lower = np.maximum(idx.min(axis=0) - pad, 0)
    upper = np.minimum(idx.max(axis=0) + pad + 1, np.asarray(mask.shape))
    return (ants.crop_indices(image, lower.tolist(), upper.tolist()),
            ants.crop_indices(mask, lower.tolist(), upper.tolist()))


class RegisterToTemplate(SimpleInterface):
    """Multi-start rigid pose, affine and SyN registration (antspyx), reproducible."""

    input_spec = _RegInputSpec
    output_spec = _RegOutputSpec

    def _run_interface(self, runtime):
        _deterministic(self.inputs.seed, self.inputs.single_threaded)
        import ants

        template = ants.image_read(self.inputs.fixed)
        moving = ants.image_read(self.inputs.moving)
        template_mask = (ants.image_read(self.inputs.fixed_mask) if self.inputs.fixed_mask
                         else None)
        kwargs = {}
        if template_mask is not None:
            kwargs["mask"] = template_mask
        if self.inputs.moving_mask:
            kwargs["moving_mask"] = ants.image_read(self.inputs.moving_mask)
        if self.inputs.initialize:
            from trialprep.workflows.anat.initial_alignment import find_initial_pose

            pose = find_initial_pose(
                template, kwargs.get("mask", ants.get_mask(template)), moving,
                kwargs.get("moving_mask", ants.get_mask(moving)),
                resolution_mm=self.inputs.init_resolution_mm)
            init = os.path.join(runtime.cwd, "init.mat")
            ants.write_transform(pose.to_ants(), init)
            kwargs["initial_transform"] = [init]
        fixed = template
        if self.inputs.transform == "SyN":
            # Affine on the whole template grid (cropped, its coarsest level has so few
            # samples that one demo session's affine diverged), at antspyx's shrink levels
            # 6, 4, 2 but not 1 (10 iterations there took half the affine's time and moved
            # its scale by < 0.5 %, which the SyN absorbs); then SyN from it on the
            # template's brain and 10 mm round it (two thirds of the grid and of the SyN's
            # cost; the displacement fields are defined there, identity beyond, where the
            # template has no brain). antspyx's "SyN" runs the same two stages with a
            # longer affine schedule, in half as much time again.
            affine = ants.registration(template, moving, type_of_transform="Affine",
                                       aff_iterations=(2100, 1200, 1200, 0),
                                       random_seed=self.inputs.seed,
                                       outprefix=os.path.join(runtime.cwd, "affine_"),
                                       **kwargs)
            kwargs["initial_transform"] = list(affine["fwdtransforms"])
            if template_mask is not None:
                fixed, kwargs["mask"] = _crop_to_mask(template, template_mask, margin_mm=10.0)
            transform = "SyNOnly"
        else:
            transform = self.inputs.transform
        reg = ants.registration(fixed, moving, type_of_transform=transform,
                                reg_iterations=tuple(self.inputs.syn_iterations),
                                syn_sampling=self.inputs.syn_bins,
                                random_seed=self.inputs.seed,
                                outprefix=os.path.join(runtime.cwd, "reg_"), **kwargs)
        warped = ants.apply_transforms(template, moving, list(reg["fwdtransforms"]))
        self._results["warped"] = os.path.join(runtime.cwd, "warped.nii.gz")
        ants.image_write(warped, self._results["warped"])
        self._results["forward_transforms"] = list(reg["fwdtransforms"])
        self._results["inverse_transforms"] = list(reg["invtransforms"])
        self._results["metric"] = float(ants.image_similarity(
            fixed, reg["warpedmovout"], metric_type="MattesMutualInformation"))
        mask = (template_mask.numpy() if template_mask is not None else
                np.ones(template.shape)) > 0
        corr = correlation_in_mask(warped.numpy(), template.numpy(), mask)
        self._results["correlation"] = corr
        if corr < self.inputs.min_correlation:
            raise RegistrationError(
                f"registration to {self.inputs.template_name} failed: correlation with the "
                f"template {corr:.2f} < {self.inputs.min_correlation}")
        return runtime


class _FitInputSpec(BaseInterfaceInputSpec):
    template_mask = File(exists=True, mandatory=True,
                         desc="the template's brain mask brought to the subject")
    brain_mask = File(exists=True, mandatory=True, desc="the extracted brain mask")
    min_dice = traits.Float(0.85, usedefault=True)
    template_name = traits.Str("template", usedefault=True)


class _FitOutputSpec(TraitedSpec):
    brain_mask = File(exists=True, desc="the extracted brain mask (checked)")
    dice = traits.Float(desc="Dice of the template's brain and the extracted brain")


class CheckTemplateFit(SimpleInterface):
    """The template's brain, brought to the subject, must cover the extracted brain: a
    registration that matched the template to the scalp or the neck does not (Dice below
    ``min_dice``) and stops the session with the reason."""

    input_spec = _FitInputSpec
    output_spec = _FitOutputSpec

    def _run_interface(self, runtime):
        import nibabel as nib
        import numpy as np

        tpl = np.asarray(nib.load(self.inputs.template_mask).dataobj) >= 0.5
        brain = np.asarray(nib.load(self.inputs.brain_mask).dataobj) > 0
        total = tpl.sum() + brain.sum()
        dice = float(2 * (tpl & brain).sum() / total) if total else 0.0
        self._results["dice"] = dice
        self._results["brain_mask"] = self.inputs.brain_mask
        if dice < self.inputs.min_dice:
            raise RegistrationError(
                f"registration to {self.inputs.template_name} failed: the template's brain "
                f"covers the extracted brain with Dice {dice:.2f} < {self.inputs.min_dice}")
        return runtime


def correlation_in_mask(a, b, mask) -> float:
    """Pearson correlation of two images over ``mask`` (0 when either is constant there)."""
    import numpy as np

    x, y = np.asarray(a, np.float64)[mask], np.asarray(b, np.float64)[mask]
    if x.std() == 0 or y.std() == 0:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


class _ApplyInputSpec(BaseInterfaceInputSpec):
    in_files = InputMultiObject(File(exists=True), mandatory=True)
    reference = File(exists=True, mandatory=True)
    transforms = InputMultiObject(File(exists=True), mandatory=True)
    invert = traits.List(traits.Bool, desc="which transforms to invert (antspyx convention)")
    interpolator = traits.Enum("linear", "nearestNeighbor", "genericLabel", usedefault=True)
    within = File(exists=True, desc="resample only within this mask's bounding box (on the "
                  "reference grid) and ``margin_mm`` round it; zero beyond")
    margin_mm = traits.Float(10.0, usedefault=True)
    compress = traits.Bool(True, usedefault=True, desc="write .nii.gz (else .nii: for "
                           "intermediate images, which are read once and deleted)")


class _ApplyOutputSpec(TraitedSpec):
    out_files = OutputMultiObject(File(exists=True))


class ApplyTransforms(SimpleInterface):
    """Bring images (priors, masks, atlases) through a transform chain."""

    input_spec = _ApplyInputSpec
    output_spec = _ApplyOutputSpec

    def _run_interface(self, runtime):
        import ants

        full = ants.image_read(self.inputs.reference)
        ref = full
        if isdefined(self.inputs.within):  # the same voxels, fewer (genericLabel: per label)
            ref, _ = _crop_to_mask(full, ants.image_read(self.inputs.within),
                                   self.inputs.margin_mm)
        invert = (list(self.inputs.invert) or None) if isdefined(self.inputs.invert) else None
        outs = []
        for f in self.inputs.in_files:
            moved = ants.apply_transforms(ref, ants.image_read(f), list(self.inputs.transforms),
                                          interpolator=self.inputs.interpolator,
                                          whichtoinvert=invert)
            if ref is not full:
                moved = ants.decrop_image(moved, full * 0)
            out = _out(f, "_native", runtime.cwd)
            outs.append(out if self.inputs.compress else out.removesuffix(".gz"))
            ants.image_write(moved, outs[-1])
        self._results["out_files"] = outs
        return runtime


class _AtroposInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True)
    mask_file = File(exists=True, mandatory=True)
    priors = InputMultiObject(File(exists=True), mandatory=True, desc="CSF, GM, WM priors")
    prior_weight = traits.Float(0.25, usedefault=True)
    mrf_weight = traits.Float(0.2, usedefault=True, desc="MRF smoothing (Atropos -m [w,1x1x1])")
    seed = traits.Int(42, usedefault=True)


class _AtroposOutputSpec(TraitedSpec):
    dseg = File(exists=True, desc="labels: 1 CSF, 2 GM, 3 WM")
    probseg = OutputMultiObject(File(exists=True), desc="CSF, GM, WM posteriors")


class AtroposSegmentation(SimpleInterface):
    """3-class Atropos (Avants et al. 2011) initialised and guided by template priors."""

    input_spec = _AtroposInputSpec
    output_spec = _AtroposOutputSpec

    def _run_interface(self, runtime):
        _deterministic(self.inputs.seed, True)
        import ants

        img = ants.image_read(self.inputs.in_file)
        mask = ants.image_read(self.inputs.mask_file)
        priors = [ants.image_read(p) for p in self.inputs.priors]
        # r=0: Atropos' --use-random-seed 0 (a constant internal seed, reproducible runs)
        previous, tempfile.tempdir = tempfile.tempdir, runtime.cwd  # its scratch files
        try:
            mrf = f"[{self.inputs.mrf_weight},{'x'.join(['1'] * img.dimension)}]"
            seg = ants.atropos(a=img, x=mask, i=priors, m=mrf, c="[5,0]",
                               priorweight=self.inputs.prior_weight, r=0)
        finally:
            tempfile.tempdir = previous
        self._results["dseg"] = os.path.join(runtime.cwd, "dseg.nii.gz")
        ants.image_write(seg["segmentation"], self._results["dseg"])
        probs = []
        for i, p in enumerate(seg["probabilityimages"]):
            probs.append(os.path.join(runtime.cwd, f"probseg_{i + 1}.nii.gz"))
            ants.image_write(p, probs[-1])
        self._results["probseg"] = probs
        return runtime
