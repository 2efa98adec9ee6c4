"""Intake of one site drop into the study's BIDS dataset.

scan -> group into series -> identify subject and visit -> classify and check against the
locked protocol -> de-identify into a private work folder -> dcm2niix -> BIDS names ->
scrubbed sidecars -> atomic move into the dataset -> records, tables and completeness.
Every input file ends converted, quarantined (with a reason) or ignored (with a reason).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from tqdm import tqdm

from trialprep import __version__
from trialprep.audit import study_audit
from trialprep.bids import bids_path, sanitize_label
from trialprep.config import StudyConfig
from trialprep.keys import StudyKey
from trialprep.provenance import utc_now
from trialprep.tables import read_table, write_table
from trialprep.workflows.intake import bids_tables, state
from trialprep.workflows.intake.convert import (
    bids_suffixes,
    finalize_nifti,
    pair_phasediff_echo_times,
    run_dcm2niix,
    scrub_sidecar,
)
from trialprep.workflows.intake.deid import (
    Deidentifier,
    SubjectIdentity,
    age_years,
    capped_age,
    clean_descriptor,
    identifying_strings,
    identity_for,
    phi_pattern,
    real_dates,
    shift_date,
    shift_for,
)
from trialprep.workflows.intake.protocol import check_series, classify, find_value
from trialprep.workflows.intake.scan import (
    CONVERTED,
    IGNORED,
    QUARANTINED,
    read_series_header,
    scan_drop,
)
from trialprep.workflows.intake.schedule import assign_visit, completeness
from trialprep.workflows.intake.series import Series, group_series

log = logging.getLogger("trialprep.intake")


@dataclass
class IntakeSummary:
    site: str
    run_id: str
    counts: dict[str, int] = field(default_factory=dict)
    series: int = 0
    converted_series: int = 0
    empty_folders: int = 0
    bids: Path | None = None

    def to_dict(self) -> dict:
        return {"site": self.site, "run_id": self.run_id, "files": self.counts,
                "series": self.series, "converted_series": self.converted_series,
                "empty_folders": self.empty_folders}

    def line(self) -> str:
        c = self.counts
        return (f"site {self.site}: {sum(c.values())} file(s): {c.get(CONVERTED, 0)} converted, "
                f"{c.get(QUARANTINED, 0)} quarantined, {c.get(IGNORED, 0)} ignored; "
                f"{self.converted_series}/{self.series} series converted; "
                f"{self.empty_folders} empty folder(s)")


def _real_date(h) -> date | None:
    for kw in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"):
        v = str(h.get(kw, "") or "")
        try:
            return datetime.strptime(v[:8], "%Y%m%d").date()
        except ValueError:
            continue
    return None


def _time(h) -> str:
    t = str(h.get("StudyTime", "") or h.get("SeriesTime", "") or "")
    return f"{t[0:2]}:{t[2:4]}:{t[4:6]}" if len(t) >= 6 and t[:6].isdigit() else ""


def _write_deidentified(files, deid: Deidentifier, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(files):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(f.path, force=True)
            deid.apply(ds)
            meta = getattr(ds, "file_meta", None)
            if meta is None or "TransferSyntaxUID" not in meta:
                implicit = ds.original_encoding[0] if ds.original_encoding else False
                meta = FileMetaDataset()
                meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else \
                    ExplicitVRLittleEndian
                ds.file_meta = meta
            meta.MediaStorageSOPClassUID = ds.get("SOPClassUID", "")
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.save_as(dest / f"{i:05d}.dcm", enforce_file_format=True)


def _planned_name(ctx: dict, suffix: str, entities: dict, run: int | None) -> Path:
    return bids_path(".", ctx["datatype"], suffix, ".nii.gz", sub=ctx["subject"],
                     ses=ctx["session"], run=run, **entities)


def run_intake(source: Path, site: str, bids: Path, config: StudyConfig, key: StudyKey,
               progress: bool = False, as_of: date | None = None,
               visit: str | None = None) -> IntakeSummary:
    """Take one site drop into the BIDS dataset at ``bids``; see the module docstring.

    ``visit`` assigns every series of the drop to that visit (a drop made per visit);
    otherwise visits come from ClinicalTrialTimePointID or the study dates.
    """
    site = sanitize_label(site)
    if visit is not None and visit not in config.visit_ids:
        raise ValueError(f"visit {visit!r} is not in the schedule {config.visit_ids}")
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    source, bids = Path(source), Path(bids)
    if not source.is_dir():
        raise FileNotFoundError(f"source folder {source} does not exist")
    bids.mkdir(parents=True, exist_ok=True)
    run_id = utc_now()
    summary = IntakeSummary(site=site, run_id=run_id, bids=bids)
    deid_cfg, protocol = config["deid"], config.protocol
    shift_range = deid_cfg["date_shift_days"]

    files, empty = scan_drop(source, key, site)
    summary.empty_folders = len(empty)
    series = group_series(files)
    summary.series = len(series)
    log.info("site %s: %d file(s), %d series", site, len(files), len(series))

    old_series = state.read(bids, "series", state.SERIES_COLUMNS)
    # Subject identity and real study dates (in memory only) for visit assignment.
    ids: dict[str, SubjectIdentity] = {}
    raw_pid: dict[str, str] = {}
    first_real: dict[str, date] = {}
    for s in series:  # from the scan's header (the full one is read when converting)
        pid = str(s.header.get("PatientID", "") or "")
        ident = identity_for(key, site, pid, shift_range)
        ids[s.uid], raw_pid[ident.subject] = ident, pid
        d = _real_date(s.header)
        if d and (ident.subject not in first_real or d < first_real[ident.subject]):
            first_real[ident.subject] = d
    for subject in list(first_real):  # earlier sessions already in the dataset
        prev = old_series[(old_series["subject"] == subject) & (old_series["acq_date"] != "")]
        if len(prev):
            shifted = min(datetime.strptime(v, "%Y-%m-%d").date() for v in prev["acq_date"])
            real = shifted - timedelta(days=shift_for(key, subject, shift_range))
            first_real[subject] = min(first_real[subject], real)

    work = state.intake_dir(bids) / ".work" / run_id.replace(":", "")
    series_rows, plans = [], []
    try:
        # Series convert independently (dcm2niix runs as a subprocess): two at a time,
        # largest first so that the longest conversion does not start last.
        def convert(s: Series) -> dict:
            s.full_header = read_series_header(s.files[0].path)
            return _convert_series(s, ids[s.uid], first_real, site, config, key, work,
                                   protocol, series_rows, visit)

        by_size = sorted(series, key=lambda s: -sum(f.size for f in s.files))
        with ThreadPoolExecutor(min(2, os.cpu_count() or 1)) as pool, tqdm(
                total=len(series), desc=f"intake {site}", unit="series",
                disable=not progress) as bar:
            for plan in pool.map(convert, by_size):
                plans.append(plan)
                bar.update()
        order = {id(s): i for i, s in enumerate(series)}
        plans.sort(key=lambda p: order[id(p["series"])])
        series_rows.sort(key=lambda r: (r["subject"], r["session"], int(r["series_number"]),
                                        r["series"]))
        with state.locked(bids):
            _commit(plans, bids, old_series)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    for plan in plans:
        row = plan["row"]
        row["bids_files"] = ";".join(plan.get("final", []))
        row["run_id"] = run_id
        for f in plan["series"].files:
            f.series_key, f.bids_files = row["series"], plan.get("final", [])
            if plan.get("final"):
                f.settle(CONVERTED)
        if plan.get("final"):
            summary.converted_series += 1

    session_of = {id(f): p["row"]["session"] for p in plans for f in p["series"].files}
    manifest_rows = []
    for f in files:
        f.settle(QUARANTINED, "no outcome recorded (internal error)")
        ident = ids.get(f.series_uid)
        session = session_of.get(id(f), "")
        manifest_rows.append({
            "site": site, "source_id": f.source_id, "sha256": f.sha256, "size": f.size,
            "outcome": f.outcome, "reason": f.reason, "series": f.series_key,
            "subject": ident.subject if ident else "", "session": session,
            "bids_files": ";".join(x for x in f.bids_files if x.endswith(".nii.gz")),
            "run_id": run_id})
        summary.counts[f.outcome] = summary.counts.get(f.outcome, 0) + 1
    for folder_id in empty:
        manifest_rows.append({"site": site, "source_id": folder_id, "sha256": "", "size": 0,
                              "outcome": IGNORED, "reason": "empty folder", "series": "",
                              "subject": "", "session": "", "bids_files": "",
                              "run_id": run_id})

    with state.locked(bids):
        state.upsert(bids, "manifest", state.MANIFEST_COLUMNS, manifest_rows,
                     key=["site", "source_id"])
        all_series = state.upsert(bids, "series", state.SERIES_COLUMNS, series_rows,
                                  key=["site", "series"])
        subjects = _update_subjects(bids, config, key, site, ids, raw_pid, all_series)
        clinical_cols = [c for c in subjects.columns if c not in state.SUBJECT_COLUMNS]
        bids_tables.write_dataset_description(bids, config["study"])
        # Per-subject tables of this drop's subjects only (a rerun of a drop rewrites the
        # same ones, so an interrupted run is repaired by running it again).
        bids_tables.write_tables(bids, subjects, all_series, clinical_cols,
                                 only={r["subject"] for r in series_rows})
        _write_completeness(bids, config, key, subjects, all_series, as_of)
        state.write_description(bids)
    log.info(summary.line())
    study_audit(bids).append("intake", {**summary.to_dict(), "config_sha256": config.hash,
                                        "trialprep": __version__})
    return summary


def _convert_series(s: Series, ident: SubjectIdentity, first_real: dict, site: str,
                    config: StudyConfig, key: StudyKey, work: Path, protocol: dict,
                    series_rows: list, forced_visit: str | None) -> dict:
    h = s.full_header
    series_key = key.uid(s.uid)
    real = _real_date(h)
    base = first_real.get(ident.subject)
    offset = (real - base).days if real and base else None
    if forced_visit:
        visit, visit_problem = forced_visit, ""
    else:
        visit, visit_problem = assign_visit(
            config["visits"], str(h.get("ClinicalTrialTimePointID", "") or ""), offset)
    series_type = classify(h, protocol)
    n_slices = len({tuple(f.header.get("ImagePositionPatient", [])) for f in s.files})
    verdict = check_series(series_type, h, n_slices, protocol) if series_type != "other" else None
    phi = identifying_strings(h) | real_dates(h)
    shifted = shift_date(real.strftime("%Y%m%d"), ident.shift_days) if real else ""
    age = capped_age(age_years(str(h.get("PatientBirthDate", "")), real and real.strftime(
        "%Y%m%d"), str(h.get("PatientAge", ""))), config["deid"]["max_age"])
    row = {
        "site": site, "subject": ident.subject, "session": visit or "", "series": series_key,
        "series_number": s.number, "series_type": series_type,
        "description": clean_descriptor(str(h.get("SeriesDescription", "")), phi),
        "manufacturer": str(h.get("Manufacturer", "")).strip(),
        "model": str(h.get("ManufacturerModelName", "")).strip(),
        "software": "\\".join(str(v) for v in h.get("SoftwareVersions", []))
        if isinstance(h.get("SoftwareVersions"), (list, pydicom.multival.MultiValue))
        else str(h.get("SoftwareVersions", "")).strip(),
        "field_strength": find_value(h, "MagneticFieldStrength") or "",
        "n_files": len(s.files), "verdict": "", "deviations": "", "bids_files": "",
        "acq_date": f"{shifted[:4]}-{shifted[4:6]}-{shifted[6:8]}" if shifted else "",
        "acq_time": _time(h), "age": "" if age is None else age,
        "sex": str(h.get("PatientSex", "") or "").strip().upper()[:1],
    }
    plan = {"series": s, "row": row}
    series_rows.append(row)

    def quarantine(reason: str) -> dict:
        row["verdict"], row["deviations"] = "quarantined", reason
        for f in s.files:
            f.settle(QUARANTINED, reason)
        return plan

    if visit is None:
        return quarantine(visit_problem)
    if series_type == "other":
        row["verdict"] = "unclassified"
        for f in s.files:
            f.settle(IGNORED, "series matches no classification rule of the protocol "
                     f"(description {row['description']!r})")
        return plan
    row["verdict"] = "compliant" if verdict.compliant else "deviant"
    row["deviations"] = "; ".join(verdict.deviations)

    # dcm2niix reads the validated originals through links in intake's private work folder;
    # its raw outputs never leave it (sidecars are scrubbed, files renamed, on commit).
    in_dir, out_dir = work / series_key / "in", work / series_key / "out"
    if folder_holds_only(s):
        in_dir = s.files[0].path.parent  # nothing else there: convert in place (read-only)
    else:
        in_dir.mkdir(parents=True)
        for i, f in enumerate(s.files):
            (in_dir / f"{i:05d}.dcm").symlink_to(f.path.resolve())
    if config["deid"].get("archive_dicom"):
        deid = Deidentifier(key, ident, config["deid"]["private_allowlist"],
                            config["deid"]["max_age"])
        plan["archive"] = (deid, bids_path(".", None, "x", sub=ident.subject,
                                           ses=visit).parent / series_key)
    conv = run_dcm2niix(in_dir, out_dir, config["dcm2niix"]["args"],
                        config["dcm2niix"]["timeout"])
    if conv.error:
        return quarantine(conv.error)
    sidecars = {p: json.loads(f[".json"].read_text()) if ".json" in f else {}
                for p, f in conv.outputs.items()}
    spec = protocol["series"][series_type]
    try:
        suffixes = bids_suffixes(series_type, spec, conv, sidecars)
    except ValueError as exc:
        return quarantine(str(exc))
    ctx = {"datatype": spec["datatype"], "subject": ident.subject, "session": visit}
    plan.update(ctx=ctx, conv=conv, sidecars=sidecars, suffixes=suffixes, phi=phi, spec=spec)
    return plan


def _commit(plans: list[dict], bids: Path, old_series: pd.DataFrame) -> None:
    """Give converted series their final BIDS names (runs where names collide) and move them
    into the dataset atomically (same filesystem: os.replace)."""
    names: dict[Path, list[dict]] = {}
    for plan in plans:
        if "conv" not in plan:
            continue
        for suffix, entities in plan["suffixes"].values():
            names.setdefault(_planned_name(plan["ctx"], suffix, entities, None), []).append(plan)
    existing = {}
    for _, r in old_series.iterrows():
        for f in str(r["bids_files"]).split(";"):
            if f:
                existing[f] = r["series"]
    for plan in sorted((p for p in plans if "conv" in p),
                       key=lambda p: (p["row"]["subject"], p["row"]["session"],
                                      int(p["row"]["series_number"]), p["row"]["series"])):
        final = []
        for postfix, (suffix, entities) in sorted(plan["suffixes"].items()):
            base = _planned_name(plan["ctx"], suffix, entities, None)
            sharers = sorted({id(p): p for p in names[base]}.values(),
                             key=lambda p: (int(p["row"]["series_number"]), p["row"]["series"]))
            run = sharers.index(plan) + 1 if len(sharers) > 1 else None
            target = _planned_name(plan["ctx"], suffix, entities, run)
            owner = existing.get(target.as_posix())
            while owner and owner != plan["row"]["series"]:
                run = (run or 1) + 1
                target = _planned_name(plan["ctx"], suffix, entities, run)
                owner = existing.get(target.as_posix())
            outputs = plan["conv"].outputs[postfix]
            stem = target.as_posix()[:-len(".nii.gz")]
            dest_dir = bids / target.parent
            dest_dir.mkdir(parents=True, exist_ok=True)
            sidecar = scrub_sidecar(plan["sidecars"][postfix], plan["phi"])
            if plan["spec"].get("task"):
                sidecar["TaskName"] = plan["spec"]["task"]
            if suffix == "fieldmap":
                sidecar.setdefault("Units", "Hz")
            if suffix == "phasediff":
                sidecar = pair_phasediff_echo_times(sidecar, _session_magnitudes(plans, plan))
            tmp_json = out_dir_of(outputs) / f"{suffix}{postfix}.scrubbed.json"
            tmp_json.write_text(json.dumps(sidecar, indent=2) + "\n")
            nii = outputs[".nii.gz"]
            tmp_nii = nii.with_name(nii.name + ".final.nii.gz")
            finalize_nifti(nii, tmp_nii, phi_pattern(plan["phi"]))
            moves = [(tmp_nii, ".nii.gz"), (tmp_json, ".json")]
            moves += [(outputs[e], e) for e in (".bval", ".bvec") if e in outputs]
            for src, ext in moves:
                dest = bids / (stem + ext)
                shutil.move(src, dest.with_name(dest.name + ".part"))
                dest.with_name(dest.name + ".part").replace(dest)
                final.append((Path(stem + ext)).as_posix())
        if "archive" in plan:
            deid, rel = plan["archive"]
            dest = bids / "sourcedata" / "dicom" / rel
            tmp = dest.with_name(dest.name + ".part")
            shutil.rmtree(tmp, ignore_errors=True)
            _write_deidentified(plan["series"].files, deid, tmp)
            shutil.rmtree(dest, ignore_errors=True)
            tmp.rename(dest)
        plan["final"] = final


def folder_holds_only(s: Series) -> bool:
    """Whether the series' folder (with sub-folders, as dcm2niix searches) holds exactly the
    series' files and nothing else."""
    folder = s.files[0].path.parent
    mine = {f.path for f in s.files}
    if any(f.path.parent != folder for f in s.files):
        return False
    count = 0
    for p in folder.rglob("*"):
        if p.is_file() or p.is_symlink():
            count += 1
            if p not in mine:
                return False
    return count == len(mine)


def out_dir_of(outputs: dict[str, Path]) -> Path:
    return next(iter(outputs.values())).parent


def _session_magnitudes(plans: list[dict], plan: dict) -> list[dict]:
    """Sidecars of magnitude1/2 images of the same subject and session, nearest series
    number below the phase-difference series first."""
    out = []
    same = [p for p in plans if "conv" in p and p["ctx"] == plan["ctx"] and p is not plan]
    same.sort(key=lambda p: abs(int(plan["row"]["series_number"]) -
                                int(p["row"]["series_number"])))
    for p in same:
        mags = [p["sidecars"][pf] for pf, (sfx, _) in p["suffixes"].items()
                if sfx in ("magnitude1", "magnitude2")]
        if len(mags) >= 2:
            return mags
        out.extend(mags)
    return out


def _update_subjects(bids: Path, config: StudyConfig, key: StudyKey, site: str,
                     ids: dict[str, SubjectIdentity], raw_pid: dict[str, str],
                     series: pd.DataFrame) -> pd.DataFrame:
    rows = {}
    for ident in ids.values():
        rows[ident.subject] = {"subject": ident.subject, "site": site, "sex": "",
                               "enrolled": ""}
    old = state.read(bids, "subjects", state.SUBJECT_COLUMNS)
    for subject, row in rows.items():
        sexes = series.loc[series["subject"] == subject, "sex"]
        row["sex"] = next((s for s in sexes if s), "")
    enrollment = config.resolve(config["enrollment"])
    if enrollment:
        enr = read_table(enrollment, as_text=True)
        for pid in enr.loc[enr["site"] == site, "patient_id"]:
            label = key.label("subject", site, pid)
            rows.setdefault(label, {"subject": label, "site": site, "sex": "", "enrolled": ""})
            rows[label]["enrolled"] = "yes"
    clinical = config.resolve(config["clinical"])
    columns = list(state.SUBJECT_COLUMNS)
    if clinical:
        cl = read_table(clinical, as_text=True)
        extra = [c for c in cl.columns if c not in ("site", "patient_id")]
        columns += extra
        for subject, pid in raw_pid.items():
            match = cl[(cl["site"] == site) & (cl["patient_id"] == pid)]
            if len(match):
                rows[subject].update({c: match.iloc[0][c] for c in extra})
    for c in old.columns:
        if c not in columns:
            columns.append(c)
    return state.upsert(bids, "subjects", columns, list(rows.values()), key=["subject"])


def _write_completeness(bids: Path, config: StudyConfig, key: StudyKey, subjects: pd.DataFrame,
                        series: pd.DataFrame, as_of: date | None) -> None:
    shift_range = config["deid"]["date_shift_days"]
    real_baseline = {}
    for subject in subjects["subject"]:
        dates = series.loc[(series["subject"] == subject) & (series["acq_date"] != ""),
                           "acq_date"]
        if len(dates):
            shifted = min(datetime.strptime(v, "%Y-%m-%d").date() for v in dates)
            real_baseline[subject] = shifted - timedelta(days=shift_for(key, subject,
                                                                         shift_range))
    required = [t for t, spec in config.protocol["series"].items() if spec.get("required")]
    table = completeness(subjects, series, config["visits"], required, real_baseline,
                         as_of or date.today())
    write_table(table, state.intake_dir(bids) / "completeness.tsv")
