"""The BIDS dataset's own files: description, README, participants, sessions and scans."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from trialprep import datasets
from trialprep.tables import write_table
from trialprep.workflows.intake.convert import dcm2niix_version

PARTICIPANTS_JSON = {
    "participant_id": {"Description": "Keyed pseudonym (HMAC of site and site PatientID)"},
    "site": {"Description": "Acquisition site"},
    "sex": {"Description": "Sex from the DICOM header", "Levels": {"M": "male", "F": "female",
                                                                  "O": "other", "n/a": "unknown"}},
    "age": {"Description": "Age at the first session (years; above the cap reported as cap+1)",
            "Units": "year"},
}
SESSIONS_JSON = {
    "acq_time": {"Description": "Session date and time, shifted by a per-subject offset"},
    "age": {"Description": "Age at the session", "Units": "year"},
    "site": {"Description": "Acquisition site"},
    "manufacturer": {"Description": "Scanner manufacturer"},
    "model": {"Description": "Scanner model"},
    "software_version": {"Description": "Scanner software version"},
    "field_strength": {"Description": "Magnetic field strength", "Units": "T"},
}


def _acq_time(row) -> str:
    """BIDS datetime of a (shifted) acquisition, or n/a when the date is unknown."""
    if not row["acq_date"]:
        return "n/a"
    return f"{row['acq_date']}T{row['acq_time'] or '00:00:00'}"


def write_dataset_description(bids: Path, study: dict) -> None:
    datasets.write_dataset_description(
        bids, name=study["name"], bids_version=study["bids_version"], dataset_type="raw",
        license=study.get("license", "CC0"),
        description=f"intake with dcm2niix {dcm2niix_version()}")
    readme = bids / "README.md"
    if not readme.exists():
        readme.write_text(
            f"# {study['name']}\n\nRaw BIDS dataset assembled by trialprep intake from site "
            "DICOM drops. Identifiers are keyed pseudonyms; dates are shifted per subject.\n"
            "Intake records (manifest, series verdicts, completeness) are in "
            "`derivatives/intake/`.\n")


def write_tables(bids: Path, subjects: pd.DataFrame, series: pd.DataFrame,
                 clinical_columns: list[str], only: set[str] | None = None) -> None:
    """participants.tsv, and the sessions.tsv and scans.tsv files of the subjects in
    ``only`` (all subjects when None), rebuilt from intake's records."""
    done = series[series["bids_files"] != ""].copy()
    done["age_f"] = pd.to_numeric(done["age"], errors="coerce")
    part_rows = []
    for _, s in subjects.sort_values("subject").iterrows():
        mine = done[done["subject"] == s["subject"]]
        if mine.empty:
            continue
        first = mine.sort_values(["acq_date", "acq_time"]).iloc[0]
        row = {"participant_id": f"sub-{s['subject']}", "site": s["site"],
               "sex": s["sex"] or "n/a",
               "age": "n/a" if pd.isna(first["age_f"]) else f"{first['age_f']:.1f}"}
        for c in clinical_columns:
            row[c] = s.get(c, "") or "n/a"
        part_rows.append(row)
    cols = ["participant_id", "site", "sex", "age", *clinical_columns]
    write_table(pd.DataFrame(part_rows, columns=cols), bids / "participants.tsv")
    meta = dict(PARTICIPANTS_JSON)
    for c in clinical_columns:
        meta[c] = {"Description": f"Clinical variable '{c}' from the study's clinical export"}
    (bids / "participants.json").write_text(json.dumps(meta, indent=2) + "\n")

    for subject, mine in done.groupby("subject"):
        if only is not None and subject not in only:
            continue
        ses_rows = []
        for session, ses in mine.groupby("session"):
            first = ses.sort_values(["acq_date", "acq_time"]).iloc[0]
            ses_rows.append({
                "session_id": f"ses-{session}",
                "acq_time": _acq_time(first),
                "age": "n/a" if pd.isna(first["age_f"]) else f"{first['age_f']:.1f}",
                "site": first["site"], "manufacturer": first["manufacturer"],
                "model": first["model"], "software_version": first["software"],
                "field_strength": first["field_strength"] or "n/a"})
            scans = []
            for _, s in ses.iterrows():
                for f in s["bids_files"].split(";"):
                    if f.endswith((".nii.gz", ".nii")):
                        rel = Path(f).relative_to(f"sub-{subject}/ses-{session}").as_posix()
                        scans.append({"filename": rel, "acq_time": _acq_time(s)})
            scans_path = bids / f"sub-{subject}" / f"ses-{session}" / \
                f"sub-{subject}_ses-{session}_scans.tsv"
            write_table(pd.DataFrame(scans, columns=["filename", "acq_time"]).sort_values(
                "filename"), scans_path)
        write_table(pd.DataFrame(ses_rows), bids / f"sub-{subject}" /
                    f"sub-{subject}_sessions.tsv")
    (bids / "sessions.json").write_text(json.dumps(SESSIONS_JSON, indent=2) + "\n")
