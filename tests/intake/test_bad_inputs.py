"""Bad inputs get a clear reason in the manifest and never stop the other files."""

from __future__ import annotations

import shutil

import pandas as pd
import pydicom
import pytest

from tests.intake.helpers import KEY, header, study_yaml, today, write
from trialprep.config import load_config
from trialprep.keys import StudyKey
from trialprep.provenance import sha256_file
from trialprep.workflows.intake.pipeline import run_intake


@pytest.fixture(scope="module")
def drop(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    d = root / "drop"
    good = write(d / "good", header("GOOD01"), seed="good")
    # a truncated copy of a file (interrupted transfer)
    (d / "good" / "IM_partial.dcm").write_bytes(good[3].read_bytes()[:5000])
    # an exact duplicate instance under another name
    shutil.copy(good[4], d / "good" / "IM_copy.dcm")
    (d / "notes.txt").write_text("site notes, not an image\n")
    # a series with a missing slice
    holed = write(d / "holed", header("HOLE01"), seed="holed")
    holed[5].unlink()
    # two different series sharing one SeriesInstanceUID
    a = write(d / "shared_a", header("SHARE01"), seed="sa", series_number=4)
    b = write(d / "shared_b", header("SHARE01"), seed="sb", series_number=5)
    uid = pydicom.dcmread(a[0]).SeriesInstanceUID
    for p in b:
        ds = pydicom.dcmread(p)
        ds.SeriesInstanceUID = uid
        ds.SeriesDescription = "t1_other_protocol"
        ds.save_as(p)
    # a PatientID that looks like a path
    write(d / "evil", header("../../etc"), seed="evil")
    (d / "empty" / "nested").mkdir(parents=True)
    checksums = {p: sha256_file(p) for p in d.rglob("*") if p.is_file()}
    cfg = load_config(study_yaml(root))
    bids = root / "bids"
    summary = run_intake(d, "site1", bids, cfg, StudyKey(KEY.encode()), as_of=today())
    manifest = pd.read_csv(bids / "derivatives" / "intake" / "manifest.tsv", sep="\t",
                           dtype=str, keep_default_na=False)
    return {"root": root, "drop": d, "bids": bids, "summary": summary, "manifest": manifest,
            "checksums": checksums}


def _reasons(drop, pattern):
    m = drop["manifest"]
    return m[m["reason"].str.contains(pattern, regex=False)]


def test_every_file_has_an_outcome(drop):
    files = [p for p in drop["drop"].rglob("*") if p.is_file()]
    m = drop["manifest"]
    assert len(m[m["reason"] != "empty folder"]) == len(files)


def test_truncated_file_is_quarantined(drop):
    rows = _reasons(drop, "truncated")
    assert len(rows) == 1 and rows.iloc[0]["outcome"] == "quarantined"


def test_non_dicom_file_is_ignored(drop):
    rows = _reasons(drop, "not a DICOM file")
    assert len(rows) == 1 and rows.iloc[0]["outcome"] == "ignored"


def test_exact_duplicate_is_ignored_and_series_still_converts(drop):
    rows = _reasons(drop, "exact duplicate of file")
    assert len(rows) == 1 and rows.iloc[0]["outcome"] == "ignored"
    good = drop["manifest"][drop["manifest"]["outcome"] == "converted"]
    assert len(good) >= 12


def test_missing_slice_quarantines_that_series(drop):
    rows = _reasons(drop, "missing slice(s): gap of 8.00 mm")
    assert len(rows) == 11 and set(rows["outcome"]) == {"quarantined"}


def test_shared_series_uid_is_quarantined_with_both_named(drop):
    rows = _reasons(drop, "SeriesInstanceUID shared by 2 different series")
    assert len(rows) == 24
    assert "#4" in rows.iloc[0]["reason"] and "#5" in rows.iloc[0]["reason"]


def test_path_like_patient_id_never_becomes_a_path(drop):
    bids = drop["bids"]
    assert not (drop["root"] / "etc").exists() and not (bids.parent / "etc").exists()
    subjects = sorted(p.name for p in bids.glob("sub-*"))
    assert all(s[4:].isalnum() for s in subjects)
    assert len(subjects) == 2  # the good series and the '../../etc' one were converted


def test_empty_folder_is_reported(drop):
    assert len(_reasons(drop, "empty folder")) == 1


def test_originals_are_never_modified(drop):
    assert {p: sha256_file(p) for p in drop["drop"].rglob("*") if p.is_file()} == \
        drop["checksums"]


def test_empty_drop_is_reported_not_fatal(tmp_path):
    (tmp_path / "drop").mkdir()
    cfg = load_config(study_yaml(tmp_path))
    summary = run_intake(tmp_path / "drop", "site1", tmp_path / "bids", cfg,
                         StudyKey(KEY.encode()), as_of=today())
    assert summary.series == 0 and summary.empty_folders == 1


def test_unknown_source_is_a_clear_error(tmp_path):
    cfg = load_config(study_yaml(tmp_path))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run_intake(tmp_path / "nope", "site1", tmp_path / "bids", cfg, StudyKey(KEY.encode()))
