"""Acceptance on the small virtual trial, computed from the pipeline's outputs alone and
compared with the generator's ground truth (which the pipeline never reads)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.pipeline.acceptance import (
    PLANTED_AGE_SLOPE,
    PLANTED_DX_EFFECT,
    brain_mask_dice,
    hippocampal_effects,
    load_tables,
    load_truth,
    scanner_auc,
    thickness_effects,
    tissue_dice,
)

pytestmark = pytest.mark.xdist_group("pipeline")


@pytest.fixture(scope="module")
def truth(small_study):
    return load_truth(small_study["trial"])


@pytest.fixture(scope="module")
def tables(small_study):
    return load_tables(small_study["out"])


def test_run_prints_where_the_outputs_are(small_study):
    for what in ("biomarker tables:", "reports:", "audit trail:"):
        assert what in small_study["stdout"]


def test_the_study_was_run_by_the_installed_wheel(small_study):
    """Issue 17: the run that every acceptance test reads was made from DICOM to the
    harmonized table by trialprep installed from its wheel, outside the checkout: its
    Snakefile, rules and configuration came from that environment's site-packages."""
    from tests.wheel import REPO
    from trialprep.audit import study_audit

    (started, *_) = [e for e in study_audit(small_study["bids"]).latest("run")
                     if e["data"]["event"] == "started"]
    command = started["data"]["command"]
    snakefile = command[command.index("-s") + 1]
    venv = small_study["python"].parent.parent
    assert snakefile.startswith(str(venv)) and "site-packages" in snakefile
    assert not snakefile.startswith(str(REPO))
    desc = json.loads((small_study["bids"] / "derivatives" / "trialprep" /
                       "dataset_description.json").read_text())
    assert desc["EnvironmentLockSHA256"] == started["data"]["lock_sha256"] != "unknown"


def test_hippocampal_volume_tracks_the_planted_truth(small_study, truth, tables):
    rows = tables["raw"].merge(truth, on=["participant_id", "session_id"])
    assert len(rows) >= 0.8 * len(truth)
    measured = rows["Left_Hippocampus_mm3"] + rows["Right_Hippocampus_mm3"]
    planted = rows["hippocampus_left_mm3"] + rows["hippocampus_right_mm3"]
    r = np.corrcoef(measured, planted)[0, 1]
    assert r >= 0.9, r
    assert np.corrcoef(rows["TIV_mm3"], rows["tiv_mm3"])[0, 1] >= 0.9


def test_tissue_segmentation_dice_against_the_truth(small_study, truth):
    """Issue 3: Dice of CSF, GM and WM at least 0.85, averaged over the trial's sessions
    (every scanner and epoch, the planted off-protocol 3 mm-slice series included)."""
    dice = tissue_dice(small_study["trial"], small_study["bids"], truth)
    assert len(dice) >= 0.8 * len(truth)
    mean = dice[["CSF", "GM", "WM"]].mean()
    assert (mean >= 0.85).all(), dice.groupby("site").mean(numeric_only=True).round(3)
    assert (dice[["GM", "WM"]] >= 0.8).all().all() and (dice["CSF"] >= 0.7).all(), dice


def test_brain_mask_matches_the_intracranial_truth(small_study, truth):
    """Issue 16: on realistic heads (scalp, skull, face, neck, their own poses) the brain
    mask's Dice against the truth is at least 0.95."""
    dice = brain_mask_dice(small_study["trial"], small_study["bids"], truth)
    assert len(dice) >= 0.8 * len(truth)
    assert dice["dice"].mean() >= 0.95, dice.round(3)
    assert (dice["dice"] >= 0.93).all(), dice.round(3)


def test_site_prediction_auc_before_and_after(tables):
    """Short form of issue 5's criterion (>= 0.9 before, <= chance + 0.1 after; asserted on
    the default demo trial by tests/pipeline/test_demo_acceptance.py, marker ``demo``). The
    small trial has 3 participants per site, so a fold trains the classifier on 2: the
    scanners are recognised less well than on the demo trial (0.93 there); the after
    criterion is the same."""
    auc = scanner_auc(tables, folds=3)
    assert auc["before"] >= 0.6, auc
    assert auc["after"] <= 0.6 and auc["before"] - auc["after"] >= 0.15, auc
    assert auc["after_table"] <= 0.6, auc
    # The table's own diagnostic uses absolute volumes, where head size dominates with 12
    # participants (about 0.6 before and after here; the full criterion on it is asserted on
    # the demo trial). It is cross-validated with ComBat inside the folds, and shows the leak
    # of cross-validating the harmonized table as a whole.
    diag = tables["diagnostics"]
    assert diag["site_auc_after_in_sample"] < 0.5 < diag["site_auc_after"] <= 0.7, diag


def test_age_slope_and_diagnosis_effect_recovered_after_harmonization(tables, truth):
    """Short form (issue 5 asks 10 % on the demo trial; see test_demo_acceptance.py): with
    12 participants the regression's own sampling error is about 8 % of the slope, and the
    planted volumes themselves give a slope 3-8 % below the planted one on this sample."""
    age_slope, dx_effect = hippocampal_effects(tables["harm"], truth)
    assert age_slope == pytest.approx(PLANTED_AGE_SLOPE, rel=0.25)
    assert dx_effect == pytest.approx(PLANTED_DX_EFFECT, rel=0.15)


def test_planted_cortical_thinning_is_recovered(tables, truth, small_study):
    """Short form (issue 19 asks 20 % on the demo trial; see test_demo_acceptance.py): with
    12 participants (6 with AD) the regression's own sampling error is a few tenths of
    the planted effects."""
    planted = json.loads((small_study["trial"] / "truth" / "truth.json").read_text())
    thinning = planted["planted"]["cortical_thinning"]
    age_slope, dx_effect = thickness_effects(tables["harm"], truth, thinning)
    assert age_slope == pytest.approx(thinning["age_slope_relative_per_year"], rel=0.5)
    assert dx_effect == pytest.approx(thinning["dx_effect_relative"], rel=0.35)


def test_software_upgrade_site_is_split_into_two_epochs(small_study, tables):
    truth = json.loads((small_study["trial"] / "truth" / "truth.json").read_text())
    upgraded = truth["planted"]["software_upgrade"]["site"]
    epochs = tables["harm"].groupby("site", observed=True)["epoch"].nunique()
    assert epochs[upgraded] == 2
    assert (epochs.drop(upgraded) == 1).all()


def test_table_rows_carry_provenance_and_a_dictionary(tables, small_study):
    harm, dictionary = tables["harm"], tables["dict"]
    assert harm["pipeline_version"].nunique() == 1
    assert harm["config_sha256"].str.fullmatch(r"[0-9a-f]{64}").all()
    assert harm["anat_source_sha256"].str.fullmatch(r"[0-9a-f]{64}").all()
    for col in harm.columns:
        assert col in dictionary, col
    assert dictionary["Left_Hippocampus_mm3"]["Units"] == "mm^3"
    assert dictionary["Left_Hippocampus_mm3"]["Stage"] == "anat"
    assert dictionary["anat_qc_verdict"]["Stage"] == "anat"
    pd.testing.assert_frame_equal(tables["tsv"][["participant_id", "session_id"]],
                                  harm[["participant_id", "session_id"]])
    model = small_study["out"] / "tables" / "biomarkers_harmonized.combat.npz"
    from trialprep.harmonization.model import load_any

    loaded = load_any(model)  # participants have two visits: longitudinal ComBat
    assert loaded.provenance["config_sha256"] == harm["config_sha256"].iloc[0]
    assert loaded.provenance["harmonization"]["model"] == "longitudinal"
    assert dictionary["_table"]["harmonization"]["model"] == "longitudinal"


def test_planted_problems_appear_in_site_report_and_dashboard(small_study):
    truth = json.loads((small_study["trial"] / "truth" / "truth.json").read_text())
    reports = small_study["out"] / "reports"
    dashboard = (reports / "index.html").read_text()
    off = truth["planted"]["off_protocol"]
    missing = truth["planted"]["missing_visit"]
    lyon = (reports / "sites" / f"{off['site']}.html").read_text()
    assert "deviant" in lyon and ("SliceThickness" in lyon or "VoxelSize" in lyon)
    assert "deviant" in dashboard
    munich = (reports / "sites" / f"{missing['site']}.html").read_text()
    assert "missing" in munich and "missing" in dashboard
    upgrade = truth["planted"]["software_upgrade"]["site"]
    site = (reports / "sites" / f"{upgrade}.html").read_text()
    assert f"{upgrade}-e1" in site and f"{upgrade}-e2" in site


def test_prov_export_links_every_table_row_to_its_dicom_series(small_study, tables, truth):
    from prov.model import ProvDocument

    path = small_study["out"] / "provenance" / "study.prov.json"
    doc = ProvDocument.deserialize(source=str(path), format="json")
    derived = {}  # entity -> what it was derived from
    for rec in doc.get_records():
        if rec.get_type().localpart == "Derivation":
            attrs = dict(rec.formal_attributes)
            gen = str(attrs[next(k for k in attrs if k.localpart == "generatedEntity")])
            used = str(attrs[next(k for k in attrs if k.localpart == "usedEntity")])
            derived.setdefault(gen, set()).add(used)
    series = pd.read_csv(small_study["bids"] / "derivatives" / "intake" / "series.tsv",
                         sep="\t", dtype=str)
    uid = {f: r.series for r in series.itertuples() for f in str(r.bids_files).split(";")}
    table = "table:biomarkers_harmonized.parquet"
    assert len(derived[table]) == len(tables["harm"])
    for r in tables["harm"].itertuples():
        row = f"row:anat-{r.participant_id}_{r.session_id}"
        assert row in derived[table]
        (t1w,) = derived[row]
        assert t1w == "bids:" + r.anat_source.removeprefix("bids::")
        assert derived[t1w] == {f"series:{uid[r.anat_source.removeprefix('bids::')]}"}
    text = path.read_text()
    for name in truth["patient_id"]:  # no PHI in the provenance graph
        assert name not in text


def test_raw_and_every_derivative_dataset_pass_the_bids_validator(small_study):
    """Issue 17: the raw dataset, the anatomical derivatives and intake's records, each
    validated as a dataset of its own: no error."""
    from tests.validator import bids_errors, datasets_of_study

    datasets = datasets_of_study(small_study["bids"])
    assert {p.name for p in datasets[1:]} >= {"trialprep", "intake"}
    for dataset in datasets:
        errors = bids_errors(dataset)
        assert errors == [], (dataset, errors[:5])
    desc = json.loads((datasets[0] / "derivatives" / "trialprep" / "dataset_description.json")
                      .read_text())
    assert desc["BIDSVersion"] == "1.10.0" and desc["DatasetType"] == "derivative"
    preproc = next((datasets[0] / "derivatives" / "trialprep").rglob("*_desc-preproc_T1w.json"))
    assert json.loads(preproc.read_text())["SkullStripped"] is False
