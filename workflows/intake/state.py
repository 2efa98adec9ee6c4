"""Intake's persistent records under ``BIDS/derivatives/intake``: one row per input file
(manifest), per series and per subject. Rewritten atomically under a lock, so concurrent
site intakes and re-runs after a crash never leave half-written or duplicated rows."""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from trialprep.datasets import write_dataset_description
from trialprep.layout import StudyLayout
from trialprep.tables import write_table

MANIFEST_COLUMNS = ["site", "source_id", "sha256", "size", "outcome", "reason", "series",
                    "subject", "session", "bids_files", "run_id", "reason_code"]
SERIES_COLUMNS = ["site", "subject", "session", "series", "series_number", "series_type",
                  "description", "manufacturer", "model", "software", "field_strength",
                  "n_files", "verdict", "deviations", "bids_files", "acq_date", "acq_time",
                  "age", "sex", "run_id", "date_source", "reason_code"]
SUBJECT_COLUMNS = ["subject", "site", "sex", "enrolled"]


def intake_dir(bids: Path) -> Path:
    return StudyLayout.from_bids(bids).intake


@contextmanager
def locked(bids: Path):
    """Exclusive lock over intake's shared state (participants, manifests)."""
    d = intake_dir(bids)
    d.mkdir(parents=True, exist_ok=True)
    with open(d / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read(bids: Path, name: str, columns: list[str]) -> pd.DataFrame:
    path = intake_dir(bids) / f"{name}.tsv"
    if not path.exists():
        return pd.DataFrame(columns=columns)
    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    for c in columns:
        if c not in df.columns:
            df[c] = ""
    return df


def upsert(bids: Path, name: str, columns: list[str], rows: list[dict],
           key: list[str]) -> pd.DataFrame:
    """Replace rows with the same ``key`` values, append new ones, write atomically."""
    old = read(bids, name, columns)
    new = pd.DataFrame(rows, columns=columns).astype(str).replace({"None": "", "nan": ""})
    merged = pd.concat([old[columns], new], ignore_index=True) if len(old) else new
    merged = merged.drop_duplicates(subset=key, keep="last").sort_values(key, kind="stable")
    write_table(merged, intake_dir(bids) / f"{name}.tsv")
    return merged


#: Intake's records: BIDS has no rule for them (they are this dataset's content).
RECORDS = ("/manifest.tsv", "/series.tsv", "/subjects.tsv", "/completeness.tsv",
           "/intake_complete.json", "/sites")


def write_description(bids: Path, bids_version: str) -> None:
    write_dataset_description(
        intake_dir(bids), name="trialprep intake records", bids_version=bids_version,
        description="DICOM intake: de-identification, protocol check, conversion, manifest "
                    "and completeness", bidsignore=RECORDS)
