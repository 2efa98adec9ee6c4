"""Anatomical preprocessing workflow (niworkflows style)."""

from __future__ import annotations

import os
from pathlib import Path

from nipype.interfaces.utility import Function, IdentityInterface
from nipype.pipeline import engine as pe

from trialprep.workflows.anat.interfaces import (
    ApplyTransforms,
    AtroposSegmentation,
    N4BiasFieldCorrection,
    RegisterToTemplate,
)
from trialprep.workflows.anat.templates import write_atlas, write_template
from trialprep.workflows.anat.volumes import RegionalVolumes


def _threshold(in_file: str, level: float = 0.5) -> str:
    import os

    import nibabel as nib
    import numpy as np

    img = nib.load(in_file)
    out = os.path.abspath("brain_mask.nii.gz")
    nib.save(nib.Nifti1Image((np.asarray(img.dataobj) >= level).astype(np.uint8), img.affine),
             out)
    return out


def first(items):
    """First of a list output (Nipype passes one-element lists as a plain path)."""
    return items if isinstance(items, str) else items[0]


def rest(items):
    return [] if isinstance(items, str) else list(items[1:])


def init_anat_preproc_wf(*, template_dir: Path, resolution: int = 2, transform: str = "SyN",
                         seed: int = 42, single_threaded: bool = True,
                         prior_weight: float = 0.25,
                         name: str = "anat_preproc_wf") -> pe.Workflow:
    """T1w bias correction, template-based brain extraction, registration to MNI152,
    3-tissue segmentation and regional volumes.

    Inputs (``inputnode``)
    ----------------------
    t1w : the raw T1w image (NIfTI)

    Outputs (``outputnode``)
    ------------------------
    t1w_preproc : N4-corrected T1w (native space)
    bias_field : the estimated bias field
    brain_mask : template brain mask brought to native space
    dseg, probseg : Atropos labels (1 CSF, 2 GM, 3 WM) and posteriors
    std_warped : T1w in MNI152 space
    forward_transforms, inverse_transforms : native <-> MNI152 transforms
    registration_metric : final mutual information (registration cost)
    volumes : TSV of tissue, TIV and atlas-region volumes (mm^3)
    """
    if single_threaded:  # ITK reads this once, at its first use in the process
        os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = "1"
        os.environ["ANTS_RANDOM_SEED"] = str(seed)
    tpl = write_template(Path(template_dir), resolution)
    atlas, atlas_labels = write_atlas(Path(template_dir), tpl["T1w"])

    wf = pe.Workflow(name=name)
    inputnode = pe.Node(IdentityInterface(fields=["t1w"]), name="inputnode")
    outputnode = pe.Node(IdentityInterface(fields=[
        "t1w_preproc", "bias_field", "brain_mask", "dseg", "probseg", "std_warped",
        "forward_transforms", "inverse_transforms", "registration_metric", "volumes"]),
        name="outputnode")
    n4 = pe.Node(N4BiasFieldCorrection(seed=seed, single_threaded=single_threaded), name="n4")
    reg = pe.Node(RegisterToTemplate(fixed=str(tpl["T1w"]), fixed_mask=str(tpl["mask"]),
                                     transform=transform, seed=seed,
                                     single_threaded=single_threaded), name="register")
    to_native = pe.Node(ApplyTransforms(in_files=[str(tpl[k]) for k in ("mask", "CSF", "GM",
                                                                         "WM")],
                                        invert=[True, False], interpolator="linear"),
                        name="template_to_native")
    atlas_native = pe.Node(ApplyTransforms(in_files=[str(atlas)], invert=[True, False],
                                           interpolator="genericLabel"), name="atlas_to_native")
    mask = pe.Node(Function(input_names=["in_file"], output_names=["out"],
                            function=_threshold), name="brain_mask")
    atropos = pe.Node(AtroposSegmentation(prior_weight=prior_weight, seed=seed),
                      name="atropos")
    vols = pe.Node(RegionalVolumes(atlas_labels=str(atlas_labels)), name="volumes")

    wf.connect([
        (inputnode, n4, [("t1w", "in_file")]),
        (n4, reg, [("out_file", "moving")]),
        (n4, to_native, [("out_file", "reference")]),
        (reg, to_native, [("inverse_transforms", "transforms")]),
        (n4, atlas_native, [("out_file", "reference")]),
        (reg, atlas_native, [("inverse_transforms", "transforms")]),
        (to_native, mask, [(("out_files", first), "in_file")]),
        (n4, atropos, [("out_file", "in_file")]),
        (mask, atropos, [("out", "mask_file")]),
        (to_native, atropos, [(("out_files", rest), "priors")]),
        (atropos, vols, [("dseg", "dseg")]),
        (mask, vols, [("out", "brain_mask")]),
        (atlas_native, vols, [(("out_files", first), "atlas")]),
        (n4, outputnode, [("out_file", "t1w_preproc"), ("bias_file", "bias_field")]),
        (mask, outputnode, [("out", "brain_mask")]),
        (atropos, outputnode, [("dseg", "dseg"), ("probseg", "probseg")]),
        (reg, outputnode, [("warped", "std_warped"), ("forward_transforms",
                                                       "forward_transforms"),
                           ("inverse_transforms", "inverse_transforms"),
                           ("metric", "registration_metric")]),
        (vols, outputnode, [("out_tsv", "volumes")]),
    ])
    return wf
