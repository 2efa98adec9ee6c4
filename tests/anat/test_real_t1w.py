"""The real human T1w in the fixtures (Siemens XA30 enhanced DICOM, 2 mm, head and neck)
end to end: intake, `trialprep anat`, the QC gates, the table and the session report
(issue 16: the stage must hold on real heads, not only on the virtual trial's).

Beside it, a constructed failure: the same file with its voxel size misstated by 20 %
(PixelSpacing, SliceThickness and frame positions scaled), so that every volume reads 1.73
times too large: TIV about 2.9 L and hippocampi of 9-10 mL, the numbers of a brain mask
that followed the scalp. It must be reported as failed with its reason and stay out of the
table."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pydicom
import pytest
import yaml
from pydicom.uid import generate_uid

from tests.conftest import SHARED
from tests.intake.helpers import KEY

FIXTURE = SHARED / "fixtures" / "dicom" / "siemens" / "t1w_tfl_xa30_enhanced" / "dicom"

pytestmark = pytest.mark.xdist_group("real_t1w")


def trialprep(*args: str, cwd) -> str:
    env = dict(os.environ, TRIALPREP_STUDY_KEY=KEY)
    proc = subprocess.run([sys.executable, "-m", "trialprep.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def misstated_voxel_size(dest, factor: float = 1.2):
    """The fixture with PixelSpacing, SliceThickness and the frames' spacing times
    ``factor`` (a header that lies about the voxel size); new UIDs and patient."""
    (src,) = FIXTURE.rglob("*.dcm")
    ds = pydicom.dcmread(src)
    frames = ds.PerFrameFunctionalGroupsSequence
    first = np.array(frames[0].PlanePositionSequence[0].ImagePositionPatient, float)
    for frame in frames:
        pm = frame.PixelMeasuresSequence[0]
        pm.PixelSpacing = [f"{float(v) * factor:g}" for v in pm.PixelSpacing]
        pm.SliceThickness = f"{float(pm.SliceThickness) * factor:g}"
        pos = frame.PlanePositionSequence[0]
        at = first + factor * (np.array(pos.ImagePositionPatient, float) - first)
        pos.ImagePositionPatient = [f"{v:.4f}" for v in at]
    for tag in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        setattr(ds, tag, generate_uid(entropy_srcs=[tag, "misstated"]))
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientID = "MISSTATED01"
    dest.mkdir(parents=True)
    ds.save_as(dest / "misstated.dcm")
    return dest


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("real_t1w")
    scaled = misstated_voxel_size(root / "drops" / "scaled")
    (root / "study.yaml").write_text(yaml.safe_dump({
        "study": {"name": "real fixture", "id": "RF"},
        "key": {"env": "TRIALPREP_STUDY_KEY"},
        "sites": {"siemens": {"source": str(FIXTURE)}, "scaled": {"source": str(scaled)}},
        # no clinical file: the covariates the headers give
        "harmonization": {"covariates": ["age", "sex"], "categorical": ["sex"]}}))
    trialprep("intake", str(FIXTURE), "--site", "siemens", "--bids", "bids", "--config",
              "study.yaml", "--visit", "01", cwd=root)
    subs = {p.name.removeprefix("sub-") for p in (root / "bids").glob("sub-*")}
    trialprep("intake", str(scaled), "--site", "scaled", "--bids", "bids", "--config",
              "study.yaml", "--visit", "01", cwd=root)
    (sub,) = subs
    (bad,) = {p.name.removeprefix("sub-") for p in (root / "bids").glob("sub-*")} - subs
    out = trialprep("anat", "bids", "--participant-label", sub, "--session-label", "01",
                    "--config", "study.yaml", "--work", "work", cwd=root)
    bad_out = trialprep("anat", "bids", "--participant-label", bad, "--session-label", "01",
                        "--config", "study.yaml", "--work", "work", cwd=root)
    trialprep("anat", "bids", "--config", "study.yaml", "--collect",
              "tables/anat_sessions.tsv", cwd=root)
    trialprep("qc", "gate", "bids", "--config", "study.yaml", cwd=root)
    table_out = trialprep("table", "bids", "--config", "study.yaml", "--out", "tables",
                          cwd=root)
    trialprep("report", "bids", "--config", "study.yaml", "--tables", "tables", "--out",
              "reports", cwd=root)
    return {"root": root, "sub": sub, "bad": bad, "anat_out": out, "bad_out": bad_out,
            "table_out": table_out}


def test_real_head_gives_plausible_volumes(study):
    row = pd.read_csv(study["root"] / "bids" / "derivatives" / "trialprep" / f"sub-{study['sub']}"
                      / "ses-01" / "anat" / f"sub-{study['sub']}_ses-01_desc-biomarkers_morph.tsv",
                      sep="\t", keep_default_na=False).iloc[0]
    assert row["status"] == "ok", row["reason"]
    assert 1.1e6 <= row["TIV_mm3"] <= 2.0e6
    assert 0.35 <= row["GM_mm3"] / row["TIV_mm3"] <= 0.55
    for side in ("Left", "Right"):
        assert 2000 <= row[f"{side}_Hippocampus_mm3"] <= 7000, side


def test_extraction_and_template_agree_and_the_gates_see_a_plausible_head(study):
    root, sub = study["root"], study["sub"]
    iqms = json.loads((root / "bids" / "derivatives" / "trialprep" / f"sub-{sub}" / "ses-01"
                       / "anat" / f"sub-{sub}_ses-01_desc-iqms_T1w.json").read_text())
    assert iqms["template_dice"] >= 0.9
    verdicts = pd.read_csv(root / "bids" / "derivatives" / "qc" / "image_verdicts.tsv",
                           sep="\t", keep_default_na=False)
    (v,) = verdicts[verdicts["participant_id"] == f"sub-{sub}"].itertuples()
    # off the virtual trial's locked protocol (it is another sequence): a warning, not a
    # failure; no anatomical plausibility rule fires
    assert v.verdict == "warn", v.rules_fired
    assert "protocol deviation" in v.rules_fired
    for metric in ("TIV_L", "GM_fraction", "WM_fraction", "CSF_fraction", "template_dice"):
        assert metric not in v.rules_fired


def test_the_session_reaches_the_table_and_its_report_shows_the_brain_mask(study):
    root, sub = study["root"], study["sub"]
    table = pd.read_parquet(root / "tables" / "biomarkers_unharmonized.parquet")
    assert list(table["participant_id"]) == [f"sub-{sub}"]
    # one session cannot be harmonized: said, and no harmonized table is written
    assert "not harmonized" in study["table_out"]
    assert not (root / "tables" / "biomarkers_harmonized.parquet").exists()
    (page,) = (root / "reports" / "sessions").glob(f"sub-{sub}_ses-01*.html")
    html = page.read_text()
    assert "Brain mask on the whole head" in html and "<svg" in html
    assert "Not harmonized" in (root / "reports" / "harmonization.html").read_text()


def test_a_head_measured_1_7_times_too_large_fails_with_its_reason_and_stays_out(study):
    root, bad = study["root"], study["bad"]
    row = pd.read_csv(root / "bids" / "derivatives" / "trialprep" / f"sub-{bad}" / "ses-01"
                      / "anat" / f"sub-{bad}_ses-01_desc-biomarkers_morph.tsv", sep="\t",
                      keep_default_na=False).iloc[0]
    assert row["status"] == "failed"
    assert "brain extraction failed: the brain mask holds 2." in row["reason"], row["reason"]
    assert "outside 0.85-2.40 L" in row["reason"]
    assert row["reason"] in study["bad_out"]  # said on the terminal too
    verdicts = pd.read_csv(root / "bids" / "derivatives" / "qc" / "image_verdicts.tsv",
                           sep="\t", keep_default_na=False)
    (v,) = verdicts[verdicts["participant_id"] == f"sub-{bad}"].itertuples()
    assert v.verdict == "fail" and "processing failed: brain extraction failed" in v.rules_fired
    table = pd.read_parquet(root / "tables" / "biomarkers_unharmonized.parquet")
    assert f"sub-{bad}" not in set(table["participant_id"])
    excluded = pd.read_csv(root / "tables" / "excluded_sessions.tsv", sep="\t")
    (why,) = excluded.loc[excluded["participant_id"] == f"sub-{bad}", "why"]
    assert "brain extraction failed" in why
