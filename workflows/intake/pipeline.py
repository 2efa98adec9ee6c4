"""Intake of one site drop into the study's BIDS dataset.

scan -> group into series -> identify subject and visit -> classify and check against the
locked protocol -> de-identify into a private work folder -> dcm2niix -> BIDS names ->
scrubbed sidecars -> atomic move into the dataset -> records, tables and completeness.
Every input file ends converted, quarantined (with a reason) or ignored (with a reason);
no input file, however damaged, stops the drop, and the manifest is always written.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
from pydicom.dataset import Dataset
from tqdm import tqdm

from trialprep import __version__
from trialprep.audit import study_audit
from trialprep.bids import bids_path, sanitize_label
from trialprep.config import StudyConfig
from trialprep.keys import StudyKey
from trialprep.layout import StudyLayout
from trialprep.provenance import utc_now
from trialprep.tables import read_table, write_table
from trialprep.workflows.intake import bids_tables, state
from trialprep.workflows.intake.conversion import (
    IntakeContext,
    SeriesPlan,
    plan_series,
    read_header,
)
from trialprep.workflows.intake.convert import pair_phasediff_echo_times
from trialprep.workflows.intake.dates import series_date
from trialprep.workflows.intake.deid import SubjectIdentity, identity_for, shift_for
from trialprep.workflows.intake.outcomes import Outcome, Problem, Reason, exception_detail
from trialprep.workflows.intake.scan import scan_drop
from trialprep.workflows.intake.schedule import completeness
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
        return (f"site {self.site}: {sum(c.values())} file(s): "
                f"{c.get(Outcome.CONVERTED, 0)} converted, "
                f"{c.get(Outcome.QUARANTINED, 0)} quarantined, "
                f"{c.get(Outcome.IGNORED, 0)} ignored; "
                f"{self.converted_series}/{self.series} series converted; "
                f"{self.empty_folders} empty folder(s)")


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
    shift_range = config["deid"]["date_shift_days"]

    files, empty = scan_drop(source, key, site)
    summary.empty_folders = len(empty)
    series = group_series(files)
    summary.series = len(series)
    log.info("site %s: %d file(s), %d series", site, len(files), len(series))

    old_series = state.read(bids, "series", state.SERIES_COLUMNS)
    work = state.intake_dir(bids) / ".work" / run_id.replace(":", "")
    plans: list[SeriesPlan] = []
    pool = ThreadPoolExecutor(min(2, os.cpu_count() or 1))
    try:
        # Each series' full header (its first file's): dates, classification, protocol.
        headers = list(pool.map(read_header, series))
        ids, raw_pid, first_real = _identities(series, headers, key, site, shift_range,
                                               old_series)
        ctx = IntakeContext(site, config, key, work, first_real, visit)
        # Series convert independently (dcm2niix runs as a subprocess): two at a time,
        # largest first so that the longest conversion does not start last.
        order = sorted(range(len(series)), key=lambda i: -sum(f.size for f in series[i].files))
        with tqdm(total=len(series), desc=f"intake {site}", unit="series",
                  disable=not progress) as bar:
            for plan in pool.map(lambda i: plan_series(series[i], headers[i],
                                                        ids[series[i].uid], ctx), order):
                plans.append(plan)
                bar.update()
        rank = {id(s): i for i, s in enumerate(series)}
        plans.sort(key=lambda p: rank[id(p.series)])
        with state.locked(bids):
            _commit(plans, bids, old_series)
    finally:
        pool.shutdown()
        shutil.rmtree(work, ignore_errors=True)

    series_rows = sorted((p.row for p in plans), key=lambda r: (
        r["subject"], r["session"], int(r["series_number"]), r["series"]))
    for plan in plans:
        plan.row["bids_files"] = ";".join(plan.final)
        plan.row["run_id"] = run_id
        for f in plan.series.files:
            f.series_key, f.bids_files = plan.row["series"], plan.final
            if plan.final:
                f.settle(Outcome.CONVERTED)
        if plan.final:
            summary.converted_series += 1

    session_of = {id(f): p.row["session"] for p in plans for f in p.series.files}
    manifest_rows = []
    for f in files:
        f.reject(Problem(Reason.INTERNAL_ERROR, "no outcome recorded (internal error)"))
        ident = ids.get(f.series_uid)
        session = session_of.get(id(f), "")
        manifest_rows.append({
            "site": site, "source_id": f.source_id, "sha256": f.sha256, "size": f.size,
            "outcome": f.outcome, "reason": f.problem.detail if f.problem else "",
            "reason_code": f.problem.reason if f.problem else "", "series": f.series_key,
            "subject": ident.subject if ident else "", "session": session,
            "bids_files": ";".join(x for x in f.bids_files if x.endswith(".nii.gz")),
            "run_id": run_id})
        summary.counts[f.outcome] = summary.counts.get(f.outcome, 0) + 1
    for folder_id in empty:
        manifest_rows.append({"site": site, "source_id": folder_id, "sha256": "", "size": 0,
                              "outcome": Outcome.IGNORED, "reason": "empty folder",
                              "reason_code": Reason.EMPTY_FOLDER, "series": "",
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
        state.write_description(bids, config["study"]["bids_version"])
    log.info(summary.line())
    study_audit(bids).append("intake", {**summary.to_dict(), "config_sha256": config.hash,
                                        "trialprep": __version__})
    return summary


def _identities(series: list[Series], headers: list, key: StudyKey, site: str,
                shift_range: tuple[int, int], old_series: pd.DataFrame) -> tuple[
                    dict[str, SubjectIdentity], dict[str, str], dict[str, date]]:
    """Each series' subject identity, the raw PatientID per subject and each subject's
    earliest real date (in memory only: visits are assigned from the offsets to it)."""
    ids: dict[str, SubjectIdentity] = {}
    raw_pid: dict[str, str] = {}
    first_real: dict[str, date] = {}
    for s, header in zip(series, headers, strict=True):
        pid = str(s.header.get("PatientID", "") or "")
        ident = identity_for(key, site, pid, shift_range)
        ids[s.uid], raw_pid[ident.subject] = ident, pid
        dated = series_date(header if isinstance(header, Dataset) else s.header)
        d = dated.value if dated else None
        if d and (ident.subject not in first_real or d < first_real[ident.subject]):
            first_real[ident.subject] = d
    for subject in list(first_real):  # earlier sessions already in the dataset
        prev = old_series[(old_series["subject"] == subject) & (old_series["acq_date"] != "")]
        if len(prev):
            shifted = min(datetime.strptime(v, "%Y-%m-%d").date() for v in prev["acq_date"])
            real = shifted - timedelta(days=shift_for(key, subject, shift_range))
            first_real[subject] = min(first_real[subject], real)
    return ids, raw_pid, first_real


def _commit(plans: list[SeriesPlan], bids: Path, old_series: pd.DataFrame) -> None:
    """Give converted series their final BIDS names (runs where names collide) and move them
    into the dataset atomically (same filesystem: os.replace). Everything that could fail on
    a damaged input was done when the series was planned; this only renames."""
    converting = [p for p in plans if p.converts]
    names: dict[Path, list[SeriesPlan]] = {}
    for plan in converting:
        for out in plan.outputs.values():
            names.setdefault(_planned_name(plan.ctx, out.suffix, out.entities, None),
                             []).append(plan)
    existing = {}
    for _, r in old_series.iterrows():
        for f in str(r["bids_files"]).split(";"):
            if f:
                existing[f] = r["series"]
    for plan in sorted(converting, key=lambda p: (p.row["subject"], p.row["session"],
                                                  int(p.row["series_number"]),
                                                  p.row["series"])):
        try:
            _commit_plan(plan, plans, names, existing, bids)
        except OSError as exc:  # disk full, permissions: undo this series, go on
            for rel in plan.final:
                (bids / rel).unlink(missing_ok=True)
            plan.final = []
            plan.quarantine(Problem(Reason.INTERNAL_ERROR, "could not be written into the "
                                    f"dataset ({exception_detail(exc)})"))


def _commit_plan(plan: SeriesPlan, plans: list[SeriesPlan], names: dict, existing: dict,
                 bids: Path) -> None:
    """Move one series' prepared outputs to their BIDS names (``plan.final``)."""
    for _, out in sorted(plan.outputs.items()):
        base = _planned_name(plan.ctx, out.suffix, out.entities, None)
        sharers = sorted({id(p): p for p in names[base]}.values(),
                         key=lambda p: (int(p.row["series_number"]), p.row["series"]))
        run = sharers.index(plan) + 1 if len(sharers) > 1 else None
        target = _planned_name(plan.ctx, out.suffix, out.entities, run)
        owner = existing.get(target.as_posix())
        while owner and owner != plan.row["series"]:
            run = (run or 1) + 1
            target = _planned_name(plan.ctx, out.suffix, out.entities, run)
            owner = existing.get(target.as_posix())
        stem = target.as_posix()[:-len(".nii.gz")]
        (bids / target.parent).mkdir(parents=True, exist_ok=True)
        sidecar = out.sidecar
        if out.suffix == "phasediff":
            sidecar = pair_phasediff_echo_times(sidecar, _session_magnitudes(plans, plan))
        tmp_json = out.nifti.with_name(f"{out.suffix}.scrubbed.json")
        tmp_json.write_text(json.dumps(sidecar, indent=2) + "\n")
        moves = [(out.nifti, ".nii.gz"), (tmp_json, ".json"), *(
            (path, ext) for ext, path in out.extras.items())]
        for src, ext in moves:
            dest = bids / (stem + ext)
            shutil.move(src, dest.with_name(dest.name + ".part"))
            dest.with_name(dest.name + ".part").replace(dest)
            plan.final.append((Path(stem + ext)).as_posix())
    if plan.archive is not None:
        dest = StudyLayout.from_bids(bids).sourcedata / plan.archive_rel
        tmp = dest.with_name(dest.name + ".part")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(plan.archive, tmp)
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)


def _session_magnitudes(plans: list[SeriesPlan], plan: SeriesPlan) -> list[dict]:
    """Sidecars of magnitude1/2 images of the same subject and session, nearest series
    number below the phase-difference series first."""
    out = []
    same = [p for p in plans if p.converts and p.ctx == plan.ctx and p is not plan]
    same.sort(key=lambda p: abs(int(plan.row["series_number"]) - int(p.row["series_number"])))
    for p in same:
        mags = [o.sidecar for o in p.outputs.values()
                if o.suffix in ("magnitude1", "magnitude2")]
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
