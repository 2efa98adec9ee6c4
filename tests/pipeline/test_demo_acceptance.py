"""Issue 5's criteria at full strength on the default demo trial (what `make demo` builds:
4 sites x 5 participants x 2 visits, seed 7), computed from the run's tables alone.

About 22 minutes on 2 cores, so behind the ``demo`` marker (`make test-demo`); CI runs the
short form on the small trial (tests/pipeline/test_acceptance.py)."""

from __future__ import annotations

import json

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
from tests.pipeline.conftest import trialprep_run
from trialprep.virtual_trial.generate import generate_trial

pytestmark = [pytest.mark.demo, pytest.mark.xdist_group("demo")]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    generate_trial(root / "trial", "default", seed=7, workers=2)
    proc = trialprep_run(root / "trial", root / "study", root / "trial" / "study.yaml")
    return {"tables": load_tables(root / "study"), "truth": load_truth(root / "trial"),
            "stdout": proc.stdout, "trial": root / "trial", "bids": root / "study" / "bids"}


def test_scanner_prediction_auc_at_least_090_before_and_at_most_060_after(demo):
    auc = scanner_auc(demo["tables"], folds=5)
    assert auc["before"] >= 0.9, auc
    assert auc["after"] <= 0.6 and auc["after_table"] <= 0.6, auc
    # issue 20: the longitudinal model (the table's default here) removes the epochs,
    # the upgraded site's included, as well as cross-sectional ComBat: the table's
    # criterion, and no further above chance than it. (Cross-sectional ComBat in the folds
    # lands below chance on this trial, 0.3-0.4: with 4 participants of a batch in a
    # training fold, held-out ones are anti-learned. Below chance is not better removal,
    # so the comparison is with chance when it lies there.)
    assert auc["after_longitudinal"] <= 0.6, auc
    assert auc["after_longitudinal"] <= max(auc["after"], 0.5) + 0.05, auc
    diag = demo["tables"]["diagnostics"]
    assert diag["site_auc_after"] <= 0.6, diag


def test_tissue_dice_at_least_085(demo):
    """Issue 3 on the demo trial: CSF, GM and WM Dice at least 0.85 (mean over sessions)."""
    dice = tissue_dice(demo["trial"], demo["bids"], demo["truth"])
    assert len(dice) >= 0.9 * len(demo["truth"])
    mean = dice[["CSF", "GM", "WM"]].mean()
    assert (mean >= 0.85).all(), dice.groupby("site").mean(numeric_only=True).round(3)


def test_brain_mask_dice_at_least_095(demo):
    """Issue 16 on the demo trial's realistic heads: brain-mask Dice at least 0.95."""
    dice = brain_mask_dice(demo["trial"], demo["bids"], demo["truth"])
    assert len(dice) >= 0.9 * len(demo["truth"])
    assert dice["dice"].mean() >= 0.95 and (dice["dice"] >= 0.93).all(), dice.round(3)


def test_hippocampal_volume_r_at_least_090(demo):
    rows = demo["tables"]["raw"].merge(demo["truth"], on=["participant_id", "session_id"])
    measured = rows["Left_Hippocampus_mm3"] + rows["Right_Hippocampus_mm3"]
    planted = rows["hippocampus_left_mm3"] + rows["hippocampus_right_mm3"]
    assert measured.corr(planted) >= 0.9


def test_age_slope_and_diagnosis_effect_within_10_percent(demo):
    age_slope, dx_effect = hippocampal_effects(demo["tables"]["harm"], demo["truth"])
    assert age_slope == pytest.approx(PLANTED_AGE_SLOPE, rel=0.10)
    assert dx_effect == pytest.approx(PLANTED_DX_EFFECT, rel=0.10)


def test_planted_cortical_thinning_within_20_percent(demo):
    planted = json.loads((demo["trial"] / "truth" / "truth.json").read_text())
    thinning = planted["planted"]["cortical_thinning"]
    age_slope, dx_effect = thickness_effects(demo["tables"]["harm"], demo["truth"], thinning)
    assert age_slope == pytest.approx(thinning["age_slope_relative_per_year"], rel=0.20)
    assert dx_effect == pytest.approx(thinning["dx_effect_relative"], rel=0.20)


def test_upgraded_site_has_two_epochs(demo):
    epochs = demo["tables"]["harm"].groupby("site", observed=True)["epoch"].nunique()
    assert epochs["osaka"] == 2 and (epochs.drop("osaka") == 1).all()


def test_raw_and_every_derivative_dataset_pass_the_bids_validator(demo):
    """Issue 17 on the demo: the raw dataset and each derivative dataset, 0 errors."""
    from tests.validator import bids_errors, datasets_of_study

    for dataset in datasets_of_study(demo["bids"]):
        errors = bids_errors(dataset)
        assert errors == [], (dataset, errors[:5])
