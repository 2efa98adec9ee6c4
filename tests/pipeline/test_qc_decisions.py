"""A session failing a gate is absent from the table and listed with its reason; a
person's override to pass brings it back on the next run, recorded in the audit trail."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
import yaml

from tests.pipeline.conftest import trialprep_run
from trialprep.audit import study_audit

pytestmark = pytest.mark.xdist_group("pipeline")


def test_gate_failure_excludes_and_override_restores(small_study):
    out, bids = small_study["out"], small_study["bids"]
    verdicts = pd.read_csv(bids / "derivatives" / "qc" / "image_verdicts.tsv", sep="\t")
    table = pd.read_parquet(out / "tables" / "biomarkers_harmonized.parquet")
    in_table = verdicts[verdicts["participant_id"].isin(table["participant_id"])
                        & verdicts["session_id"].isin(table["session_id"])
                        & (verdicts["status"] == "ok")]
    target = in_table.sort_values("snr_wm").iloc[0]
    # Tighten the study's gates so exactly the lowest-SNR image fails.
    rules = yaml.safe_load(small_study["qc"].read_text())
    rules["anat"]["absolute"].append({"metric": "snr_wm", "min": float(target["snr_wm"]) * 1.0001,
                                       "verdict": "fail", "why": "acceptance-test gate"})
    small_study["qc"].write_text(yaml.safe_dump(rules))
    trialprep_run(small_study["trial"], out, small_study["config"],
                  small_study["python"])

    def in_table_now():
        t = pd.read_parquet(out / "tables" / "biomarkers_harmonized.parquet")
        return ((t["participant_id"] == target["participant_id"])
                & (t["session_id"] == target["session_id"])).any()

    assert not in_table_now()
    excluded = pd.read_csv(out / "tables" / "excluded_sessions.tsv", sep="\t")
    row = excluded[excluded["image"] == target["image"]].iloc[0]
    assert "QC gate fail" in row["why"] and "acceptance-test gate" in row["why"]
    dashboard = (out / "reports" / "index.html").read_text()
    assert target["image"] in dashboard and "acceptance-test gate" in dashboard

    proc = subprocess.run([sys.executable, "-m", "trialprep.cli", "qc", "override",
                           target["image"], "--verdict", "pass", "--reason",
                           "SNR acceptable on visual review", "--by", "Dr. Reviewer",
                           "--bids", str(bids)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    trialprep_run(small_study["trial"], out, small_study["config"],
                  small_study["python"])
    assert in_table_now()
    audit = study_audit(bids)
    assert audit.verify() > 0
    override = audit.latest("override")[-1]
    assert override["actor"] == "Dr. Reviewer"
    assert override["data"] == {"image": target["image"], "verdict": "pass",
                                "reason": "SNR acceptable on visual review"}
    assert target["image"] in audit.latest("gate")[-1]["data"]["overridden"]
    assert audit.latest("table")[-1]["seq"] > override["seq"]
