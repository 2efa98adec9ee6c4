"""QC gate rules on constructed sessions: which rules fire, epochs, drift, decisions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trialprep.config import load_config
from trialprep.workflows.qc import gates


@pytest.fixture(scope="module")
def rules():
    return load_config(None).qc


def sessions(n_per_site=12, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for site in ("a", "b"):
        for i in range(n_per_site):
            upgraded = site == "b" and i >= n_per_site // 2
            rows.append({
                "participant_id": f"sub-{site}{i}", "session_id": "ses-01",
                "image": f"sub-{site}{i}_ses-01_T1w.nii.gz", "site": site, "status": "ok",
                "reason": "", "intake_verdict": "compliant", "deviations": "",
                "manufacturer": "GE", "model": "Premier",
                "software_version": "DV30" if upgraded else "DV29",
                "acq_time": f"2024-{1 + i:02d}-01T10:00:00",
                "snr_wm": rng.normal(20, 1) * (0.6 if upgraded else 1.0),
                "cnr": rng.normal(3, 0.1), "cjv": rng.normal(0.4, 0.02),
                "efc": rng.normal(0.5, 0.01), "fber": rng.normal(100, 5),
                "wm2max": rng.normal(0.85, 0.01), "inu_range": rng.normal(0.1, 0.01),
                "reg_correlation": rng.normal(0.93, 0.005),
                "TIV_L": rng.normal(1.5, 0.1), "GM_fraction": rng.normal(0.45, 0.02),
                "WM_fraction": rng.normal(0.36, 0.02), "CSF_fraction": rng.normal(0.19, 0.02),
                "template_dice": rng.normal(0.95, 0.005)})
    return pd.DataFrame(rows)


def test_clean_sessions_pass(rules):
    out = gates.evaluate_images(sessions().query("site == 'a'").reset_index(drop=True), rules)
    assert (out["verdict_auto"] == "pass").all(), out["rules_fired"].tolist()


def test_absolute_thresholds_fire_with_their_reason(rules):
    df = sessions()
    df.loc[0, "snr_wm"] = 2.0       # below the fail threshold 4
    df.loc[1, "inu_range"] = 0.9    # above the warn threshold 0.6
    out = gates.evaluate_images(df, rules.copy() | {"anat": {
        **rules["anat"], "robust_z": {**rules["anat"]["robust_z"], "scopes": []}}})
    assert out.loc[0, "verdict_auto"] == "fail"
    assert "WM SNR too low: snr_wm 2 < 4" in out.loc[0, "rules_fired"]
    assert out.loc[1, "verdict_auto"] == "warn"
    assert "inu_range 0.9 > 0.6" in out.loc[1, "rules_fired"]


def test_physiologically_implausible_anatomy_fails(rules):
    """A brain mask that took the scalp: TIV 2.9 L, hippocampi and GM inflated (issue 16)."""
    df = sessions()
    df.loc[0, ["TIV_L", "GM_fraction"]] = [2.9, 0.45]
    df.loc[1, ["TIV_L", "GM_fraction", "WM_fraction"]] = [1.5, 0.68, 0.2]
    df.loc[2, "CSF_fraction"] = 0.01
    df.loc[3, "template_dice"] = 0.86
    no_z = rules.copy() | {"anat": {**rules["anat"], "robust_z": {
        **rules["anat"]["robust_z"], "scopes": []}}}
    out = gates.evaluate_images(df, no_z)
    assert out.loc[0, "verdict_auto"] == "fail"
    assert "TIV outside the adult range: TIV_L 2.9 > 2.2" in out.loc[0, "rules_fired"]
    assert out.loc[1, "verdict_auto"] == "fail"
    assert "GM_fraction 0.68 > 0.6" in out.loc[1, "rules_fired"]
    assert "WM_fraction 0.2 < 0.22" in out.loc[1, "rules_fired"]
    assert out.loc[2, "verdict_auto"] == "fail" and "CSF_fraction" in out.loc[2, "rules_fired"]
    assert out.loc[3, "verdict_auto"] == "warn" and "template_dice" in out.loc[3, "rules_fired"]
    assert (out.loc[4:, "verdict_auto"] == "pass").all()


def test_robust_z_outlier_against_its_site(rules):
    df = sessions()
    df.loc[2, "fber"] = 1000.0  # far outside site a's distribution (median 100, MAD ~5)
    out = gates.evaluate_images(df, rules)
    assert out.loc[2, "verdict_auto"] == "fail"
    assert "fber outlier in site a" in out.loc[2, "rules_fired"]


def test_processing_failure_and_protocol_deviation(rules):
    df = sessions()
    df.loc[3, ["status", "reason"]] = ["failed", "T1w is empty"]
    df.loc[4, ["intake_verdict", "deviations"]] = ["deviant", "SliceThickness 3 mm"]
    out = gates.evaluate_images(df, rules)
    assert out.loc[3, "verdict_auto"] == "fail" and "T1w is empty" in out.loc[3, "rules_fired"]
    assert out.loc[4, "verdict_auto"] == "warn"
    assert "protocol deviation: SliceThickness 3 mm" in out.loc[4, "rules_fired"]


def test_epochs_split_a_software_upgrade_and_drift_is_flagged(rules):
    df = gates.assign_epochs(sessions())
    assert sorted(df["epoch"].unique()) == ["a-e1", "b-e1", "b-e2"]
    assert (df.loc[df["software_version"] == "DV30", "epoch"] == "b-e2").all()
    df["verdict"] = "pass"
    drift = gates.detect_drift(df, rules)
    snr = drift[(drift["site"] == "b") & (drift["metric"] == "snr_wm")].iloc[0]
    assert snr["epoch_before"] == "b-e1" and snr["epoch_after"] == "b-e2" and snr["flagged"]
    assert not drift[drift["metric"] == "cnr"]["flagged"].any()


def test_latest_human_decision_wins(tmp_path, rules):
    from trialprep.audit import AuditLog

    log = AuditLog(tmp_path / "audit.jsonl")
    img = "sub-a0_ses-01_T1w.nii.gz"
    log.append("override", {"image": img, "verdict": "fail", "reason": "motion"}, actor="X")
    log.append("rating", {"image": f"bids::sub-a0/ses-01/anat/{img}", "verdict": "pass",
                          "reason": "fine on review"}, actor="Y")
    out = gates.apply_decisions(gates.evaluate_images(sessions(), rules),
                                gates.latest_decisions(log))
    row = out[out["image"] == img].iloc[0]
    assert row["verdict"] == "pass" and row["decided_by"].startswith("Y (")
    assert row["decision_reason"] == "fine on review"
