"""One series from its DICOM files to BIDS-ready outputs in intake's private work folder.

:func:`plan_series` reads the series' header, assigns the visit, classifies and checks the
series against the protocol, runs dcm2niix and prepares every output (scrubbed sidecar,
checked NIfTI header, de-identified DICOM archive) so that committing it is only renames.
It never raises: anything that goes wrong quarantines the series with a reason, and the
other series go on.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from trialprep.bids import bids_path
from trialprep.config import StudyConfig
from trialprep.keys import StudyKey
from trialprep.workflows.intake.convert import (
    Conversion,
    bids_suffixes,
    finalize_nifti,
    run_dcm2niix,
    scrub_sidecar,
)
from trialprep.workflows.intake.dates import series_date
from trialprep.workflows.intake.deid import (
    Deidentifier,
    SubjectIdentity,
    age_years,
    capped_age,
    clean_descriptor,
    identifying_strings,
    phi_pattern,
    real_dates,
    shift_date,
)
from trialprep.workflows.intake.outcomes import (
    Outcome,
    Problem,
    Reason,
    SeriesVerdict,
    exception_detail,
)
from trialprep.workflows.intake.protocol import check_series, classify, find_value
from trialprep.workflows.intake.scan import SeriesHeaderError, read_series_header
from trialprep.workflows.intake.schedule import assign_visit
from trialprep.workflows.intake.series import Series
from trialprep.workflows.intake.state import SERIES_COLUMNS

log = logging.getLogger("trialprep.intake")


@dataclass
class PreparedOutput:
    """One dcm2niix image ready to be moved into the dataset under its BIDS name."""

    suffix: str
    entities: dict
    nifti: Path                 # header checked, PHI-free
    sidecar: dict               # scrubbed
    extras: dict[str, Path]     # .bval / .bvec


@dataclass
class SeriesPlan:
    """What becomes of one series: its record and, when converted, its outputs."""

    series: Series
    row: dict
    ctx: dict | None = None     # datatype, subject, session of the outputs
    outputs: dict[str, PreparedOutput] = field(default_factory=dict)
    archive: Path | None = None  # the de-identified DICOM copy, prepared in the work folder
    archive_rel: Path | None = None
    final: list[str] = field(default_factory=list)

    @property
    def converts(self) -> bool:
        return bool(self.outputs)

    def quarantine(self, problem: Problem) -> SeriesPlan:
        self.row.update(verdict=SeriesVerdict.QUARANTINED, deviations=problem.detail,
                        reason_code=problem.reason)
        self.outputs.clear()
        for f in self.series.files:
            f.reject(problem)
        return self

    def ignore(self, problem: Problem) -> SeriesPlan:
        self.row.update(verdict=SeriesVerdict.UNCLASSIFIED, reason_code=problem.reason)
        for f in self.series.files:
            f.settle(Outcome.IGNORED, problem)
        return self


@dataclass(frozen=True)
class IntakeContext:
    """What every series of one drop is planned with."""

    site: str
    config: StudyConfig
    key: StudyKey
    work: Path
    first_real: dict[str, date]   # subject -> earliest real date (in memory only)
    forced_visit: str | None


def read_header(s: Series) -> Dataset | SeriesHeaderError:
    """The series' full header (its first file's), or why it cannot be read."""
    try:
        return read_series_header(s.files[0].path)
    except SeriesHeaderError as exc:
        return exc


def plan_series(s: Series, header: Dataset | SeriesHeaderError, ident: SubjectIdentity,
                ctx: IntakeContext) -> SeriesPlan:
    """The series' plan; never raises (an unexpected failure quarantines the series)."""
    plan = SeriesPlan(s, _scan_row(s, ident, ctx))
    if isinstance(header, SeriesHeaderError):
        return plan.quarantine(Problem(Reason.SERIES_HEADER_UNREADABLE, str(header)))
    try:
        return _plan(plan, header, ident, ctx)
    except Exception as exc:  # noqa: BLE001 - one series' failure must not stop the drop
        detail = exception_detail(exc)
        log.debug("series %s failed: %s", plan.row["series"], detail)
        return plan.quarantine(Problem(Reason.INTERNAL_ERROR,
                                       f"series could not be processed ({detail})"))


def _scan_row(s: Series, ident: SubjectIdentity, ctx: IntakeContext) -> dict:
    """The series record from what the scan read (completed once the full header is)."""
    row = dict.fromkeys(SERIES_COLUMNS, "")
    row.update(site=ctx.site, subject=ident.subject, series=ctx.key.uid(s.uid),
               series_number=s.number, n_files=len(s.files))
    return row


def _plan(plan: SeriesPlan, h: Dataset, ident: SubjectIdentity,
          ctx: IntakeContext) -> SeriesPlan:
    s, row, config, key = plan.series, plan.row, ctx.config, ctx.key
    protocol = config.protocol
    dated = series_date(h)
    real = dated.value if dated else None
    base = ctx.first_real.get(ident.subject)
    offset = (real - base).days if real and base else None
    if ctx.forced_visit:
        visit, visit_problem = ctx.forced_visit, ""
    else:
        visit, visit_problem = assign_visit(
            config["visits"], str(h.get("ClinicalTrialTimePointID", "") or ""), offset)
    series_type = classify(h, protocol)
    n_slices = len({tuple(f.header.get("ImagePositionPatient") or []) for f in s.files})
    verdict = check_series(series_type, h, n_slices, protocol) if series_type != "other" else None
    phi = identifying_strings(h) | real_dates(h)
    shifted = shift_date(real.strftime("%Y%m%d"), ident.shift_days) if real else ""
    age = capped_age(age_years(str(h.get("PatientBirthDate", "")), real and real.strftime(
        "%Y%m%d"), str(h.get("PatientAge", ""))), config["deid"]["max_age"])
    software = h.get("SoftwareVersions", "")
    row.update({
        "session": visit or "", "series_type": series_type,
        "description": clean_descriptor(str(h.get("SeriesDescription", "")), phi),
        "manufacturer": str(h.get("Manufacturer", "")).strip(),
        "model": str(h.get("ManufacturerModelName", "")).strip(),
        "software": "\\".join(str(v) for v in software)
        if isinstance(software, list | pydicom.multival.MultiValue) else str(software).strip(),
        "field_strength": find_value(h, "MagneticFieldStrength") or "",
        "acq_date": f"{shifted[:4]}-{shifted[4:6]}-{shifted[6:8]}" if shifted else "",
        "acq_time": _time(h), "date_source": dated.attribute if dated else "",
        "age": "" if age is None else age,
        "sex": str(h.get("PatientSex", "") or "").strip().upper()[:1],
    })
    if visit is None:
        return plan.quarantine(Problem(Reason.NO_VISIT, visit_problem))
    if series_type == "other":
        return plan.ignore(Problem(Reason.UNCLASSIFIED, "series matches no classification "
                                   f"rule of the protocol (description {row['description']!r})"))
    row["verdict"] = SeriesVerdict.COMPLIANT if verdict.compliant else SeriesVerdict.DEVIANT
    row["deviations"] = "; ".join(verdict.deviations)

    # dcm2niix reads the validated originals through links in intake's private work folder;
    # its raw outputs never leave it (sidecars are scrubbed, files renamed, on commit).
    series_key = row["series"]
    in_dir, out_dir = ctx.work / series_key / "in", ctx.work / series_key / "out"
    if folder_holds_only(s):
        in_dir = s.files[0].path.parent  # nothing else there: convert in place (read-only)
    else:
        in_dir.mkdir(parents=True)
        for i, f in enumerate(s.files):
            (in_dir / f"{i:05d}.dcm").symlink_to(f.path.resolve())
    conv = run_dcm2niix(in_dir, out_dir, config["dcm2niix"]["args"],
                        config["dcm2niix"]["timeout"])
    if not conv.error and conv.files_converted is not None \
            and conv.files_converted < len(s.files):
        conv.error = (f"dcm2niix converted {conv.files_converted} of the series' "
                      f"{len(s.files)} files (the others damaged or inconsistent)")
    if conv.error:
        return plan.quarantine(Problem(Reason.CONVERSION_FAILED, conv.error))
    spec = protocol["series"][series_type]
    try:
        sidecars = {p: json.loads(f[".json"].read_text(errors="replace")) if ".json" in f
                    else {} for p, f in conv.outputs.items()}
    except ValueError as exc:
        return plan.quarantine(Problem(Reason.CONVERSION_FAILED,
                                       "dcm2niix wrote an unreadable sidecar "
                                       f"({exception_detail(exc)})"))
    try:
        suffixes = bids_suffixes(series_type, spec, conv, sidecars)
    except ValueError as exc:
        return plan.quarantine(Problem(Reason.NO_BIDS_NAME, str(exc)))
    plan.ctx = {"datatype": spec["datatype"], "subject": ident.subject, "session": visit}
    _prepare_outputs(plan, conv, sidecars, suffixes, phi, spec)
    if config["deid"].get("archive_dicom"):
        deid = Deidentifier(key, ident, config["deid"]["private_allowlist"],
                            config["deid"]["max_age"])
        plan.archive = ctx.work / series_key / "archive"
        plan.archive_rel = bids_path(".", None, "x", sub=ident.subject,
                                     ses=visit).parent / series_key
        try:
            write_deidentified(s.files, deid, plan.archive)
        except Exception as exc:  # noqa: BLE001 - pydicom reads every element here
            return plan.quarantine(Problem(Reason.ARCHIVE_FAILED, "the de-identified DICOM "
                                           f"copy cannot be written ({exception_detail(exc)})"))
    return plan


def _prepare_outputs(plan: SeriesPlan, conv: Conversion, sidecars: dict, suffixes: dict,
                     phi: set[str], spec: dict) -> None:
    """Scrubbed sidecars and PHI-checked NIfTIs beside dcm2niix's outputs."""
    pattern = phi_pattern(phi)
    for postfix, (suffix, entities) in sorted(suffixes.items()):
        outputs = conv.outputs[postfix]
        sidecar = scrub_sidecar(sidecars[postfix], phi)
        if spec.get("task"):
            sidecar["TaskName"] = spec["task"]
        if suffix == "fieldmap":
            sidecar.setdefault("Units", "Hz")
        nii = outputs[".nii.gz"]
        ready = nii.with_name(nii.name + ".final.nii.gz")
        finalize_nifti(nii, ready, pattern)
        plan.outputs[postfix] = PreparedOutput(
            suffix, entities, ready, sidecar,
            {e: outputs[e] for e in (".bval", ".bvec") if e in outputs})


def write_deidentified(files, deid: Deidentifier, dest: Path) -> None:
    """A PS3.15 de-identified copy of every file of a series in ``dest``."""
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


def _time(h) -> str:
    t = str(h.get("StudyTime", "") or h.get("SeriesTime", "") or "")
    return f"{t[0:2]}:{t[2:4]}:{t[4:6]}" if len(t) >= 6 and t[:6].isdigit() else ""


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
