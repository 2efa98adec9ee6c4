"""One session's T1w through the anatomical workflow, written as BIDS derivatives.

A session that cannot be processed (bad image, failed registration) still gets its
biomarker row, with ``status`` = ``failed`` and the reason, so the study's other sessions
go on and the failure is visible in the outputs.
"""

from __future__ import annotations

import logging
import shutil
import time
import traceback
from pathlib import Path

from trialprep import __version__
from trialprep.bids import sanitize_label
from trialprep.config import StudyConfig
from trialprep.derivatives import SessionWriter, new_row, write_stage_dataset
from trialprep.layout import StudyLayout
from trialprep.provenance import environment_record, sha256_file, sha256_json, utc_now
from trialprep.stages import SessionStatus
from trialprep.tables import read_table
from trialprep.workflows.anat.stage import ANAT_STAGE

log = logging.getLogger(__name__)

TISSUE_LABELS = ("CSF", "GM", "WM")


class SessionError(RuntimeError):
    """A session that cannot be processed; the message is the reason reported."""


def biomarker_row_path(bids: Path, subject: str, session: str) -> Path:
    """The per-session biomarker row (the anatomical job's declared output)."""
    return ANAT_STAGE.row_path(StudyLayout.from_bids(bids), subject, session)


def anat_config_hash(config: StudyConfig) -> str:
    """Checksum of what determines the biomarkers: the anatomical settings."""
    return sha256_json({"anat": config["anat"], "trialprep": __version__})


def find_t1w(bids: Path, subject: str, session: str) -> tuple[Path, list[Path]]:
    """The session's T1w (the first run) and any further runs left unprocessed."""
    found = ANAT_STAGE.find_inputs(StudyLayout.from_bids(bids), subject, session)
    if not found:
        raise SessionError(f"no T1w for sub-{sanitize_label(subject)} "
                           f"ses-{sanitize_label(session)} in {bids}")
    return found[0], found[1:]


def _run_workflow(t1w: Path, config: StudyConfig, work: Path) -> tuple[dict, dict]:
    """Run init_anat_preproc_wf; returns (outputnode outputs, per-node wall times)."""
    from nipype import config as nipype_config

    from trialprep.workflows.anat.base import collect_outputs, init_anat_preproc_wf
    from trialprep.workflows.anat.templates import template_cache_dir

    a = config["anat"]
    nipype_config.set("execution", "crashdump_dir", str(work))
    nipype_config.set("execution", "crashfile_format", "txt")
    nipype_config.set("execution", "stop_on_first_crash", "true")
    nipype_config.set("execution", "remove_unnecessary_outputs", "false")
    nipype_config.set("logging", "workflow_level", "WARNING")
    nipype_config.set("logging", "interface_level", "WARNING")
    from nipype import logging as nipype_logging

    nipype_logging.update_logging(nipype_config)
    wf = init_anat_preproc_wf(
        template_dir=template_cache_dir(), resolution=a["template_resolution"],
        transform=a["transform"], syn_iterations=a["syn_iterations"], seed=a["seed"],
        refinement_iterations=a["hippocampal_refinement_iterations"],
        single_threaded=a["single_threaded"],
        prior_weight=a["prior_weight"], mrf_weight=a["mrf_weight"],
        external_csf_mm=a["external_csf_mm"],
        thickness=a["thickness"]["enabled"], thickness_method=a["thickness"]["method"],
        thickness_iterations=a["thickness"]["iterations"],
        thickness_processes=a["thickness"]["processes"],
        min_correlation=a["registration_min_correlation"],
        brain_extraction=a["brain_extraction"], min_template_dice=a["min_template_dice"],
        use_gpu=a["gpu"])
    wf.base_dir = str(work)
    wf.inputs.inputnode.t1w = str(t1w)
    graph = wf.run(plugin="Linear")
    outputs, timings = collect_outputs(wf, graph), {}
    for node in graph.nodes():
        runtime = getattr(node.result, "runtime", None)
        duration = getattr(runtime, "duration", None) if runtime is not None else None
        if duration is not None:
            timings[node.name] = round(float(duration), 3)
    return outputs, timings


def _failure_reason(exc: BaseException) -> str:
    """A one-line reason from an exception (Nipype wraps node errors in tracebacks)."""
    from trialprep.workflows.anat.brain_extraction import BrainExtractionError
    from trialprep.workflows.anat.interfaces import InvalidT1wError, RegistrationError

    if isinstance(exc, InvalidT1wError | RegistrationError | SessionError |
                  BrainExtractionError):
        return str(exc)
    text = str(exc)
    for marker in ("InvalidT1wError: ", "RegistrationError: ", "SessionError: ",
                   "BrainExtractionError: "):
        if marker in text:
            return text.split(marker)[-1].strip().splitlines()[0]
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    last = lines[-1] if lines else type(exc).__name__
    return f"processing failed: {type(exc).__name__}: {last}"[:500]


#: Physiological ranges of an adult head: TIV (L) and tissue fractions of it. A session
#: outside them has failed somewhere (a brain mask that took the scalp, a registration that
#: matched the neck) and gets no numbers.
PHYSIOLOGICAL = {"TIV_L": (0.9, 2.4), "GM_fraction": (0.25, 0.65),
                 "WM_fraction": (0.2, 0.6), "CSF_fraction": (0.03, 0.45)}


def check_physiology(vols: dict) -> dict[str, float]:
    """TIV (L) and tissue fractions; SessionError naming the first out of range."""
    tiv = float(vols["TIV"])
    values = {"TIV_L": tiv / 1e6}
    for tissue in ("GM", "WM", "CSF"):
        values[f"{tissue}_fraction"] = float(vols[tissue]) / tiv if tiv > 0 else float("nan")
    for name, (lo, hi) in PHYSIOLOGICAL.items():
        v = values[name]
        if not lo <= v <= hi:
            raise SessionError(f"{name.replace('_', ' ')} {v:.3f} outside the physiological "
                               f"range {lo}-{hi}: the brain mask or segmentation failed")
    return values


def _biomarkers(outputs: dict, thickness_on: bool) -> dict:
    vols = read_table(outputs["volumes"]).iloc[0].to_dict()
    check_physiology(vols)
    row = {f"{k}_mm3": float(v) for k, v in vols.items()}
    if thickness_on:
        for region, value in outputs["regional_thickness"].items():
            key = ("mean_cortical" if region == "mean_cortex" else region)
            row[f"{key}_thickness_mm"] = float(value)
    return row


#: How each thickness method is named in descriptions (and its derivative's desc entity).
THICKNESS_METHODS = {"laplacian": "Laplacian, Yezzi-Prince path lengths on partial volumes",
                     "direct": "DiReCT"}
THICKNESS_DESC = {"laplacian": "laplacian", "direct": "DiReCT"}


def column_dictionary(row: dict, thickness_method: str = "laplacian") -> dict:
    """Every biomarker column's description and unit (the row's JSON dictionary; the
    identifying columns are described by the shared writer)."""
    out = {}
    for col in row:
        if col.endswith("_GM_mm3"):
            out[col] = {"Description": "grey-matter volume within the Harvard-Oxford cortical "
                                       f"region {col[:-7]}", "Units": "mm^3"}
        elif col.endswith("_mm3"):
            name = col[:-4]
            what = {"TIV": "total intracranial volume (brain mask)",
                    "GM": "grey-matter volume", "WM": "white-matter volume",
                    "CSF": "cerebrospinal-fluid volume (within the brain mask)"}.get(
                name, f"volume of the Harvard-Oxford region {name} within the brain mask "
                      "(maximum-probability label, voxels at least 25 % likely)")
            out[col] = {"Description": what, "Units": "mm^3"}
        elif col.endswith("_thickness_mm"):
            name = col[: -len("_thickness_mm")]
            how = THICKNESS_METHODS[thickness_method]
            what = (f"mean cortical thickness ({how}) over the whole cortex"
                    if name == "mean_cortical"
                    else f"mean cortical thickness ({how}) in the Harvard-Oxford region {name}")
            out[col] = {"Description": what, "Units": "mm"}
    return out


def run_anat_session(bids: Path, subject: str, session: str, config: StudyConfig,
                     work: Path | None = None) -> dict:
    """Process one session; write its derivatives and biomarker row; return the row."""
    bids = Path(bids).absolute()  # Nipype runs each node in its own folder
    layout = StudyLayout.from_bids(bids)
    sub, ses = sanitize_label(subject), sanitize_label(session)
    work = Path(work or layout.work(ANAT_STAGE.name)).absolute() / f"sub-{sub}_ses-{ses}"
    work.mkdir(parents=True, exist_ok=True)
    write_stage_dataset(ANAT_STAGE, layout, config["study"]["bids_version"])
    a = config["anat"]
    row = new_row(sub, ses, __version__, anat_config_hash(config))
    started, t0 = utc_now(), time.perf_counter()
    provenance = {"GeneratedBy": [{"Name": "trialprep", "Version": __version__}],
                  "Parameters": a, "Seed": a["seed"], "Environment": environment_record()}
    writer = SessionWriter(ANAT_STAGE, layout, sub, ses, provenance)
    try:
        t1w, extra_runs = find_t1w(bids, sub, ses)
        row["source"] = f"bids::{t1w.relative_to(bids).as_posix()}"
        row["source_sha256"] = sha256_file(t1w)
        provenance["Sources"] = [row["source"]]
        provenance["SourceChecksums"] = {row["source"]: row["source_sha256"]}
        if extra_runs:
            provenance["UnprocessedRuns"] = [p.name for p in extra_runs]
        from trialprep.workflows.anat.interfaces import check_t1w

        check_t1w(str(t1w))
        # The registration node fails the workflow when the registered T1w correlates
        # less than registration_min_correlation with the template (nothing after it runs).
        outputs, timings = _run_workflow(t1w, config, work)
        corr = outputs["registration_correlation"]
        provenance["WallTimeSeconds"] = round(time.perf_counter() - t0, 1)
        provenance["NodeWallTimeSeconds"] = timings
        provenance["Started"], provenance["Finished"] = started, utc_now()
        biomarkers = _biomarkers(outputs, a["thickness"]["enabled"])  # checked first
        _write_outputs(writer, outputs, a, corr)
        row.update(biomarkers)
    except Exception as exc:  # reported in the session's outputs, never fatal to the study
        row["status"], row["reason"] = SessionStatus.FAILED.value, _failure_reason(exc)
        log.debug("session sub-%s ses-%s failed:\n%s", sub, ses, traceback.format_exc())
    writer.row(row, column_dictionary(row, a["thickness"]["method"]))  # last: session done
    if row["status"] == SessionStatus.OK and not a["keep_work"]:
        shutil.rmtree(work, ignore_errors=True)
    return row


def _write_outputs(w: SessionWriter, o: dict, a: dict, corr: float) -> None:
    space = a["template"]
    whole_head = {"SkullStripped": False}  # BIDS: required on a preprocessed T1w
    w.copy("preproc", o["t1w_preproc"], "T1w", desc="preproc", sidecar=whole_head,
           description="N4 bias-corrected T1w")
    w.copy("bias", o["bias_field"], "T1w", desc="biasfield", sidecar=whole_head,
           description="N4 bias field")
    how = ("deepbet's brain extraction" if a["brain_extraction"] == "deepbet"
           else "the template's brain mask brought to native space")
    w.copy("mask", o["brain_mask"], "mask", desc="brain",
           description=f"intracranial mask: {how} and the CSF around the brain")
    w.copy("dseg", o["dseg"], "dseg", description="Atropos tissue labels: 1 CSF, 2 GM, 3 WM")
    for label, path in zip(TISSUE_LABELS, o["probseg"], strict=True):
        w.copy(f"probseg_{label}", path, "probseg", label=label,
               description=f"Atropos {label} posterior probability")
    w.copy("atlas", o["atlas_native"], "dseg", desc=a["atlas"],
           description=f"{a['atlas']} atlas labels warped to native space")
    w.copy("std", o["std_warped"], "T1w", space=space, desc="preproc", sidecar=whole_head,
           description=f"bias-corrected T1w in {space}")
    fwd, inv = list(o["forward_transforms"]), list(o["inverse_transforms"])
    for key, src in (("xfm_warp", fwd[0]), ("xfm_affine", fwd[-1])):
        ext = ".mat" if src.endswith(".mat") else ".nii.gz"
        kind = "affine" if ext == ".mat" else "warp"
        w.copy(key, src, "xfm", ext, **{"from": "T1w", "to": space, "mode": "image"},
               desc=kind, description=f"T1w -> {space} {kind}")
    inv_warp = [p for p in inv if p.endswith(".nii.gz")]
    if inv_warp:
        w.copy("xfm_inverse_warp", inv_warp[0], "xfm", **{"from": space, "to": "T1w",
                                                           "mode": "image"},
               desc="warp", description=f"{space} -> T1w warp (after the inverse affine)")
    if o.get("thickness"):
        method = a["thickness"]["method"]
        w.copy("thickness", o["thickness"], "thickness", desc=THICKNESS_DESC[method],
               description=f"cortical thickness ({THICKNESS_METHODS[method]}, mm), 0 outside "
                           "the cortex")
    vols = read_table(o["volumes"]).iloc[0].to_dict()
    iqms = dict(o["iqms"], reg_correlation=corr, **check_physiology(vols))
    if o.get("template_dice") is not None:
        iqms["template_dice"] = float(o["template_dice"])
    w.iqms(iqms)
    from trialprep.workflows.anat.reportlets import (
        plot_brain_mask,
        plot_registration,
        plot_segmentation,
    )

    plot_brain_mask(o["t1w_preproc"], o["extracted_mask"], o["template_mask_native"],
                    w.figure("fig_mask", "brainmask"))
    plot_segmentation(o["t1w_preproc"], o["brain_mask"], o["dseg"], w.figure("fig_seg", "seg"))
    plot_registration(o["std_warped"], o["template"], o["template_mask"],
                      w.figure("fig_reg", "registration"))
