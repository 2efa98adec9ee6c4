"""The small virtual trial through `trialprep run` (Snakemake): a valid BIDS dataset in
which every planted problem is found."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from tests.validator import bids_errors
from trialprep.keys import StudyKey

pytestmark = pytest.mark.xdist_group("demo")


@pytest.fixture(scope="module")
def trial(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    trial, out = root / "trial", root / "out"
    env = {k: v for k, v in os.environ.items() if k != "TRIALPREP_STUDY_KEY"}
    cli = [sys.executable, "-m", "trialprep.cli"]
    subprocess.run([*cli, "demo", str(trial), "--size", "tiny", "--seed", "3"], check=True,
                   env=env, capture_output=True)
    # Intake only (the Snakemake target), the later stages are tested in tests/pipeline.
    proc = subprocess.run([*cli, "run", "--trial", str(trial), "--out", str(out), "--cores",
                           "2", "--", "intake_complete"], env=env, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    truth = json.loads((trial / "truth" / "truth.json").read_text())
    key = StudyKey((trial / "secrets" / "study.key").read_text().strip().encode())
    return {"trial": trial, "out": out, "bids": out / "bids", "truth": truth, "key": key,
            "log": proc.stdout + proc.stderr}


def _records(trial, name):
    return pd.read_csv(trial["bids"] / "derivatives" / "intake" / f"{name}.tsv", sep="\t",
                       dtype=str, keep_default_na=False)


def test_run_prints_where_outputs_are(trial):
    assert "BIDS dataset:" in trial["log"] and str(trial["bids"].resolve()) in trial["log"]


def test_demo_bids_passes_the_validator(trial):
    assert bids_errors(trial["bids"]) == []


def test_every_input_file_has_exactly_one_outcome(trial):
    manifest = _records(trial, "manifest")
    n_files = sum(1 for p in (trial["trial"] / "drops").rglob("*") if p.is_file())
    files = manifest[manifest["reason"] != "empty folder"]
    assert len(files) == n_files
    assert files["source_id"].is_unique
    assert set(files["outcome"]) <= {"converted", "quarantined", "ignored"}
    assert (files.loc[files["outcome"] != "converted", "reason"] != "").all()


def test_planted_problems_are_reported(trial):
    planted, key = trial["truth"]["planted"], trial["key"]
    manifest, comp = _records(trial, "manifest"), _records(trial, "completeness")
    corrupt = manifest[manifest["reason"].str.startswith("truncated")]
    assert len(corrupt) == 1 and corrupt.iloc[0]["site"] == "boston"
    assert (manifest["reason"] == "not a DICOM file").sum() == 1
    off = planted["off_protocol"]
    row = comp[(comp["subject"] == key.label("subject", off["site"], off["patient_id"]))
               & (comp["visit"] == off["visit"])].iloc[0]
    assert row["status"] == "deviant" and "VoxelSize is [2, 2, 3]" in row["detail"]
    miss = planted["missing_visit"]
    row = comp[(comp["subject"] == key.label("subject", miss["site"], miss["patient_id"]))
               & (comp["visit"] == miss["visit"])].iloc[0]
    assert row["status"] == "missing"
    assert set(comp["status"]) == {"received", "deviant", "missing"}
    assert (comp["status"] == "received").sum() == len(comp) - 2


def test_software_upgrade_is_visible_per_session(trial):
    part = pd.read_csv(trial["bids"] / "participants.tsv", sep="\t")
    for pid in part.loc[part["site"] == "osaka", "participant_id"]:
        ses = pd.read_csv(trial["bids"] / pid / f"{pid}_sessions.tsv", sep="\t")
        assert list(ses["software_version"]) == ["syngo MR E11", "syngo MR XA50"]


def test_participants_carry_clinical_data_and_pseudonyms(trial):
    part = pd.read_csv(trial["bids"] / "participants.tsv", sep="\t")
    truth = pd.read_csv(trial["trial"] / "truth" / "participants.tsv", sep="\t")
    merged = part.merge(truth, left_on="participant_id",
                        right_on=truth["subject"].radd("sub-"))
    assert len(merged) == len(truth)
    assert (merged["dx_x"] == merged["dx_y"]).all()
    assert np.allclose(merged["age_x"], merged["age_y"], atol=1.0)


def test_converted_t1w_aligns_with_the_truth_labels(trial):
    sessions = pd.read_csv(trial["trial"] / "truth" / "sessions.tsv", sep="\t")
    row = sessions.iloc[0]
    subject = trial["key"].label("subject", row["site"], row["patient_id"])
    (t1,) = (trial["bids"] / f"sub-{subject}" / f"ses-{row['visit']:02d}" / "anat").glob(
        "*_T1w.nii.gz")
    img, lab = nib.load(t1), nib.load(trial["trial"] / row["labels"])
    # dcm2niix's affine maps voxels to the same world positions as the generator's grid
    assert np.allclose(np.abs(np.linalg.det(img.affine[:3, :3])),
                       np.abs(np.linalg.det(lab.affine[:3, :3])))
    from nilearn.image import resample_to_img
    labels = np.asarray(resample_to_img(lab, img, interpolation="nearest",
                                        force_resample=True, copy_header=True).dataobj)
    data = np.asarray(img.dataobj, float)
    wm, gm, csf = (data[labels == k].mean() for k in (3, 2, 1))
    assert wm > gm > csf  # T1w contrast where the truth says so


def test_rerun_is_idempotent_and_originals_untouched(trial, tmp_path):
    drops = trial["trial"] / "drops"
    before = {p: p.stat().st_mtime_ns for p in drops.rglob("*") if p.is_file()}
    files_before = sorted(p.relative_to(trial["bids"]) for p in trial["bids"].rglob("*.nii.gz"))
    part_before = (trial["bids"] / "participants.tsv").read_text()
    tables = {p: (p.stat().st_ino, p.read_text())
              for pattern in ("sub-*/*_sessions.tsv", "sub-*/ses-*/*_scans.tsv")
              for p in trial["bids"].glob(pattern)}
    osaka = set(pd.read_csv(trial["bids"] / "participants.tsv", sep="\t").query(
        "site == 'osaka'")["participant_id"])
    env = {k: v for k, v in os.environ.items() if k != "TRIALPREP_STUDY_KEY"}
    subprocess.run([sys.executable, "-m", "trialprep.cli", "intake", str(drops / "osaka"),
                    "--site", "osaka", "--bids", str(trial["bids"]), "--config",
                    str(trial["trial"] / "study.yaml")], check=True, env=env,
                   capture_output=True)
    files_after = sorted(p.relative_to(trial["bids"]) for p in trial["bids"].rglob("*.nii.gz"))
    assert files_after == files_before
    assert (trial["bids"] / "participants.tsv").read_text() == part_before
    # Same per-subject tables; only the drop's own subjects' files were written again.
    assert {p: p.read_text() for p in tables} == {p: t for p, (_, t) in tables.items()}
    rewritten = {p.relative_to(trial["bids"]).parts[0] for p, (ino, _) in tables.items()
                 if p.stat().st_ino != ino}
    assert rewritten == osaka
    manifest = _records(trial, "manifest")
    assert manifest.duplicated(["site", "source_id"]).sum() == 0
    assert {p: p.stat().st_mtime_ns for p in drops.rglob("*") if p.is_file()} == before
