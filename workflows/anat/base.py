"""Anatomical preprocessing workflow (niworkflows style)."""

from __future__ import annotations

import os
from pathlib import Path

from nipype.interfaces.utility import Function, IdentityInterface
from nipype.pipeline import engine as pe

from trialprep.workflows.anat.brain_extraction import BrainExtraction
from trialprep.workflows.anat.external_csf import ExternalCSF
from trialprep.workflows.anat.interfaces import (
    ApplyTransforms,
    AtroposSegmentation,
    CheckTemplateFit,
    N4BiasFieldCorrection,
    RegisterToTemplate,
)
from trialprep.workflows.anat.iqms import ComputeIQMs
from trialprep.workflows.anat.laplace_thickness import LaplacianThickness
from trialprep.workflows.anat.local_refinement import RefineLocally
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


def _label_table(path) -> tuple[list[int], list[str]]:
    import pandas as pd

    table = pd.read_csv(path, sep="\t")
    return table["index"].astype(int).tolist(), table["name"].astype(str).tolist()


def init_anat_preproc_wf(*, template_dir: Path, resolution: int = 2, transform: str = "SyN",
                         seed: int = 42, single_threaded: bool = True,
                         syn_iterations: tuple[int, ...] = (40, 20, 0),
                         refinement_iterations: tuple[int, ...] = (10, 10),
                         prior_weight: float = 0.25, mrf_weight: float = 0.2,
                         external_csf_mm: float = 10.0,
                         thickness: bool = True, thickness_method: str = "laplacian",
                         thickness_iterations: int = 45, thickness_processes: int = 1,
                         min_correlation: float = -1.0,
                         brain_extraction: str = "deepbet", min_template_dice: float = 0.85,
                         use_gpu: bool = False,
                         name: str = "anat_preproc_wf") -> pe.Workflow:
    """T1w bias correction, brain extraction, registration to MNI152, 3-tissue segmentation,
    regional volumes, cortical thickness and image-quality metrics.

    With ``refinement_iterations`` (not all zero) the atlas reaches native space through
    a second, local SyN round the hippocampi as well (``local_refinement.py``).

    ``brain_extraction="deepbet"`` (the default) extracts the brain from the whole head with
    deepbet, registers the extracted brain to the (brain-only) template from a multi-start
    initial rotation, and checks that the template's brain brought back covers the extracted
    one (Dice at least ``min_template_dice``); ``"template"`` registers the whole image and
    takes the template's brain mask (for images that are already skull-stripped).

    Inputs (``inputnode``)
    ----------------------
    t1w : the raw T1w image (NIfTI)

    Outputs (``outputnode``)
    ------------------------
    t1w_preproc : N4-corrected T1w (native space)
    bias_field : the estimated bias field
    brain_mask : intracranial mask: the extracted brain (or the template brain mask brought
        to native space) and the CSF around it (within ``external_csf_mm``)
    extracted_mask : the brain mask the extraction gave (before the CSF around it)
    template_mask_native : the template's brain mask brought to native space
    template_dice : Dice of the two (deepbet only)
    dseg, probseg : Atropos labels (1 CSF, 2 GM, 3 WM) and posteriors, with that CSF
    std_warped : T1w in MNI152 space
    forward_transforms, inverse_transforms : native <-> MNI152 transforms
    registration_metric : final mutual information (registration cost)
    registration_correlation : correlation of ``std_warped`` with the template in its mask;
        below ``min_correlation`` the registration node fails and nothing after it runs
    volumes : TSV of tissue, TIV and atlas-region volumes (mm^3)
    head_mask : the head mask N4 was fitted in
    atlas_native : the atlas labels in native space
    thickness : cortical thickness map (mm), when ``thickness``: Laplacian (Yezzi-Prince on
        the partial-volume posteriors, ``thickness_method="laplacian"``) or DiReCT
        (``"direct"``, antspyx ``kelly_kapowski``)
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
        "template_mask", "extracted_mask", "template_mask_native", "template_dice"]),
        name="outputnode")
    outputnode.inputs.template = str(tpl["T1w"])
    outputnode.inputs.template_mask = str(tpl["mask"])
    n4 = pe.Node(N4BiasFieldCorrection(seed=seed, single_threaded=single_threaded), name="n4")
    reg = pe.Node(RegisterToTemplate(fixed=str(tpl["T1w"]), fixed_mask=str(tpl["mask"]),
                                     transform=transform, seed=seed,
                                     syn_iterations=list(syn_iterations),
                                     single_threaded=single_threaded,
                                     template_name=TEMPLATE_SPACE,
                                     min_correlation=min_correlation), name="register")
    if brain_extraction == "deepbet":
        bet = pe.Node(BrainExtraction(seed=seed, use_gpu=use_gpu), name="brain_extraction")
        mask = pe.Node(CheckTemplateFit(min_dice=min_template_dice,
                                        template_name=TEMPLATE_SPACE), name="template_fit")
        mask_out = "brain_mask"
    else:
        mask = pe.Node(Function(input_names=["in_file"], output_names=["out"],
                                function=_threshold), name="brain_mask")
        mask_out = "out"
    to_native = pe.Node(ApplyTransforms(in_files=[str(tpl[k]) for k in ("mask", "CSF", "GM",
                                                                         "WM")],
                                        invert=[True, False], interpolator="linear",
                                        compress=False),
                        name="template_to_native")
    atlas_native = pe.Node(ApplyTransforms(in_files=[str(atlas)], invert=[True, False],
                                           interpolator="genericLabel"), name="atlas_to_native")
    refine = None
    if transform == "SyN" and any(refinement_iterations):
        hippocampi = [int(i) for i, n in zip(*_label_table(atlas_labels), strict=True)
                      if n in ("Left_Hippocampus", "Right_Hippocampus")]
        refine = pe.Node(RefineLocally(template=str(tpl["T1w"]), atlas=str(atlas),
                                       labels=hippocampi, invert=[True, False],
                                       iterations=list(refinement_iterations), seed=seed),
                         name="refine_hippocampi")
    atropos = pe.Node(AtroposSegmentation(prior_weight=prior_weight, mrf_weight=mrf_weight,
                                          seed=seed),
                      name="atropos")
    ext_csf = pe.Node(ExternalCSF(band_mm=external_csf_mm), name="external_csf")
    vols = pe.Node(RegionalVolumes(atlas_labels=str(atlas_labels)), name="volumes")
    iqms = pe.Node(ComputeIQMs(), name="iqms")

    if brain_extraction == "deepbet":
        wf.connect([
            (n4, bet, [("out_file", "in_file")]),
            (bet, reg, [("brain_file", "moving"), ("mask_file", "moving_mask")]),
            (to_native, mask, [(("out_files", first), "template_mask")]),
            (bet, mask, [("mask_file", "brain_mask")]),
            (bet, outputnode, [("mask_file", "extracted_mask")]),
            (mask, outputnode, [("dice", "template_dice")]),
        ])
    else:
        wf.connect([
            (n4, reg, [("out_file", "moving")]),
            (to_native, mask, [(("out_files", first), "in_file")]),
            (mask, outputnode, [("out", "extracted_mask")]),
        ])
    wf.connect([
        (inputnode, n4, [("t1w", "in_file")]),
        (n4, to_native, [("out_file", "reference")]),
        (reg, to_native, [("inverse_transforms", "transforms")]),
        (n4, atlas_native, [("out_file", "reference")]),
        # the atlas lies within the template's brain: resampled on its box (a third of the
        # head's grid, and genericLabel interpolates every label on every voxel)
        (to_native, atlas_native, [(("out_files", first), "within")]),
        (n4, atropos, [("out_file", "in_file")]),
        (mask, atropos, [(mask_out, "mask_file")]),
        (to_native, atropos, [(("out_files", rest), "priors")]),
        (to_native, outputnode, [(("out_files", first), "template_mask_native")]),
        (n4, ext_csf, [("out_file", "in_file")]),
        (mask, ext_csf, [(mask_out, "mask_file")]),
        (to_native, ext_csf, [(("out_files", first), "template_mask")]),
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
    if refine is None:
        wf.connect(reg, "inverse_transforms", atlas_native, "transforms")
    else:
        wf.connect([
            (reg, refine, [("warped", "warped"), ("inverse_transforms", "transforms")]),
            (refine, atlas_native, [("transforms", "transforms"), ("invert", "invert")]),
        ])
    if thickness:
        if thickness_method == "direct":
            kk = pe.Node(CorticalThickness(iterations=thickness_iterations, seed=seed,
                                           processes=thickness_processes,
                                           single_threaded=single_threaded), name="thickness")
        else:
            kk = pe.Node(LaplacianThickness(), name="thickness")
        regional = pe.Node(Function(input_names=["thickness", "atlas", "atlas_labels"],
                                    output_names=["out"], function=_regional_thickness),
                           name="regional_thickness")
        regional.inputs.atlas_labels = str(atlas_labels)
        if thickness_method == "direct":
            wf.connect(ext_csf, "dseg", kk, "dseg")
        else:  # partial volumes from the intensity at the tissue boundaries
            wf.connect([(n4, kk, [("out_file", "in_file")]),
                        (ext_csf, kk, [("mask_file", "mask_file")])])
        wf.connect([
            (ext_csf, kk, [("probseg", "probseg")]),
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
