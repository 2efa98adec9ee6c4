"""Anatomical preprocessing workflow (niworkflows style)."""

from __future__ import annotations

import os
from pathlib import Path

from nipype.interfaces.utility import Function, IdentityInterface
from nipype.pipeline import engine as pe

from trialprep.workflows.anat.external_csf import ExternalCSF
from trialprep.workflows.anat.interfaces import (
    ApplyTransforms,
    AtroposSegmentation,
    N4BiasFieldCorrection,
    RegisterToTemplate,
)
from trialprep.workflows.anat.iqms import ComputeIQMs
from trialprep.workflows.anat.templates import TEMPLATE_SPACE, write_atlas, write_template
from trialprep.workflows.anat.thickness import CorticalThickness
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


def _regional_thickness(thickness: str, atlas: str, atlas_labels: str) -> dict:
    from trialprep.workflows.anat.thickness import regional_thickness

    return regional_thickness(thickness, atlas, atlas_labels)


def init_anat_preproc_wf(*, template_dir: Path, resolution: int = 2, transform: str = "SyN",
                         seed: int = 42, single_threaded: bool = True,
                         syn_iterations: tuple[int, ...] = (40, 20, 0),
                         prior_weight: float = 0.25, mrf_weight: float = 0.2,
                         external_csf_mm: float = 4.0,
                         thickness: bool = True,
                         thickness_iterations: int = 45, thickness_processes: int = 1,
                         min_correlation: float = -1.0,
                         name: str = "anat_preproc_wf") -> pe.Workflow:
    """T1w bias correction, template-based brain extraction, registration to MNI152,
    3-tissue segmentation, regional volumes, cortical thickness and image-quality metrics.

    Inputs (``inputnode``)
    ----------------------
    t1w : the raw T1w image (NIfTI)

    Outputs (``outputnode``)
    ------------------------
    t1w_preproc : N4-corrected T1w (native space)
    bias_field : the estimated bias field
    brain_mask : intracranial mask: the template brain mask brought to native space and
        the CSF around the brain (within ``external_csf_mm`` of it)
    dseg, probseg : Atropos labels (1 CSF, 2 GM, 3 WM) and posteriors, with that CSF
    std_warped : T1w in MNI152 space
    forward_transforms, inverse_transforms : native <-> MNI152 transforms
    registration_metric : final mutual information (registration cost)
    registration_correlation : correlation of ``std_warped`` with the template in its mask;
        below ``min_correlation`` the registration node fails and nothing after it runs
    volumes : TSV of tissue, TIV and atlas-region volumes (mm^3)
    head_mask : the head mask N4 was fitted in
    atlas_native : the atlas labels in native space
    thickness : DiReCT cortical thickness map (mm), when ``thickness``
    regional_thickness : dict of mean thickness per cortical region (mm), when ``thickness``
    iqms : dict of MRIQC-style image-quality metrics (also written as JSON)
    template, template_mask : the template the T1w was registered to
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
        "forward_transforms", "inverse_transforms", "registration_metric",
        "registration_correlation", "volumes",
        "head_mask", "atlas_native", "thickness", "regional_thickness", "iqms", "template",
        "template_mask"]), name="outputnode")
    outputnode.inputs.template = str(tpl["T1w"])
    outputnode.inputs.template_mask = str(tpl["mask"])
    n4 = pe.Node(N4BiasFieldCorrection(seed=seed, single_threaded=single_threaded), name="n4")
    reg = pe.Node(RegisterToTemplate(fixed=str(tpl["T1w"]), fixed_mask=str(tpl["mask"]),
                                     transform=transform, seed=seed,
                                     syn_iterations=list(syn_iterations),
                                     single_threaded=single_threaded,
                                     template_name=TEMPLATE_SPACE,
                                     min_correlation=min_correlation), name="register")
    to_native = pe.Node(ApplyTransforms(in_files=[str(tpl[k]) for k in ("mask", "CSF", "GM",
                                                                         "WM")],
                                        invert=[True, False], interpolator="linear"),
                        name="template_to_native")
    atlas_native = pe.Node(ApplyTransforms(in_files=[str(atlas)], invert=[True, False],
                                           interpolator="genericLabel"), name="atlas_to_native")
    mask = pe.Node(Function(input_names=["in_file"], output_names=["out"],
                            function=_threshold), name="brain_mask")
    atropos = pe.Node(AtroposSegmentation(prior_weight=prior_weight, mrf_weight=mrf_weight,
                                          seed=seed),
                      name="atropos")
    ext_csf = pe.Node(ExternalCSF(band_mm=external_csf_mm), name="external_csf")
    vols = pe.Node(RegionalVolumes(atlas_labels=str(atlas_labels)), name="volumes")
    iqms = pe.Node(ComputeIQMs(), name="iqms")

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
        (n4, ext_csf, [("out_file", "in_file")]),
        (mask, ext_csf, [("out", "mask_file")]),
        (atropos, ext_csf, [("dseg", "dseg"), ("probseg", "probseg")]),
        (ext_csf, vols, [("dseg", "dseg"), ("mask_file", "brain_mask")]),
        (atlas_native, vols, [(("out_files", first), "atlas")]),
        (n4, outputnode, [("out_file", "t1w_preproc"), ("bias_file", "bias_field")]),
        (ext_csf, outputnode, [("mask_file", "brain_mask"), ("dseg", "dseg"),
                               ("probseg", "probseg")]),
        (reg, outputnode, [("warped", "std_warped"), ("forward_transforms",
                                                       "forward_transforms"),
                           ("inverse_transforms", "inverse_transforms"),
                           ("metric", "registration_metric"),
                           ("correlation", "registration_correlation")]),
        (vols, outputnode, [("out_tsv", "volumes")]),
        (atlas_native, outputnode, [(("out_files", first), "atlas_native")]),
        (n4, outputnode, [("head_mask", "head_mask")]),
        (inputnode, iqms, [("t1w", "in_file")]),
        (ext_csf, iqms, [("dseg", "dseg"), ("mask_file", "brain_mask")]),
        (n4, iqms, [("head_mask", "head_mask"), ("bias_file", "bias_file")]),
        (reg, iqms, [("metric", "registration_metric")]),
        (iqms, outputnode, [("iqms", "iqms")]),
    ])
    if thickness:
        kk = pe.Node(CorticalThickness(iterations=thickness_iterations, seed=seed,
                                       processes=thickness_processes,
                                       single_threaded=single_threaded), name="thickness")
        regional = pe.Node(Function(input_names=["thickness", "atlas", "atlas_labels"],
                                    output_names=["out"], function=_regional_thickness),
                           name="regional_thickness")
        regional.inputs.atlas_labels = str(atlas_labels)
        wf.connect([
            (ext_csf, kk, [("dseg", "dseg"), ("probseg", "probseg")]),
            (kk, regional, [("thickness", "thickness")]),
            (atlas_native, regional, [(("out_files", first), "atlas")]),
            (kk, outputnode, [("thickness", "thickness")]),
            (regional, outputnode, [("out", "regional_thickness")]),
        ])
    return wf


def collect_outputs(wf: pe.Workflow, graph) -> dict:
    """``outputnode``'s values after ``wf.run()`` returned the execution ``graph``.

    Nipype drops identity nodes from the execution graph, so the values are read from the
    nodes that feed ``outputnode`` (applying any connection function such as ``first``).
    """
    from nipype.interfaces.base import isdefined
    from nipype.utils.functions import create_function_from_source

    outnode = wf.get_node("outputnode")
    results = {n.fullname: n.result.outputs for n in graph.nodes()}
    values = {k: v for k, v in outnode.inputs.get().items() if isdefined(v)}
    for src, _, data in wf._graph.in_edges(outnode, data=True):
        outputs = results[src.fullname]
        for src_field, dst_field in data["connect"]:
            if isinstance(src_field, tuple):
                field, func = src_field[0], src_field[1]
                func = create_function_from_source(func) if isinstance(func, str) else func
                values[dst_field] = func(getattr(outputs, field))
            else:
                values[dst_field] = getattr(outputs, src_field)
    return values
