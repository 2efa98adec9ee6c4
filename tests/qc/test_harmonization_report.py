"""The harmonization report renders for a harmonized study and for one that is not."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from qc_reports.render import _env, render_harmonization
from trialprep.config import load_config


def _tables(tmp_path, harmonized: bool):
    tables = tmp_path / "tables"
    tables.mkdir()
    rng = np.random.default_rng(0)
    epochs = np.repeat(["boston-0", "lyon-0", "osaka-1"], 6)
    raw = pd.DataFrame({"epoch": epochs, "age": rng.uniform(55, 85, epochs.size),
                        "GM_mm3": rng.normal(6e5, 3e4, epochs.size)})
    raw.to_parquet(tables / "biomarkers_unharmonized.parquet")
    if not harmonized:
        diag = {"harmonized": False, "reason": "no scanner epoch has 2 sessions"}
    else:
        harm = raw.assign(GM_mm3=raw["GM_mm3"] - raw.groupby("epoch")["GM_mm3"].transform(
            "mean") + raw["GM_mm3"].mean())
        harm.to_parquet(tables / "biomarkers_harmonized.parquet")
        diag = {"features": ["GM_mm3"], "site_auc_before": 0.91, "site_auc_after": 0.52,
                "covariate_effects_before": {"age": {"GM_mm3": -900.0}},
                "covariate_effects_after": {"age": {"GM_mm3": -880.0}},
                "covariate_effects_before_se": {"age": {"GM_mm3": 120.0}}}
    (tables / "harmonization_diagnostics.json").write_text(json.dumps(diag))
    return tables


def test_a_harmonized_study_gets_its_auc_figures_and_effects(tmp_path):
    page = render_harmonization(_env(), _tables(tmp_path, True), load_config(), tmp_path)
    html = page.read_text()
    assert 'id="auc"' in html and "0.91" in html and "0.52" in html
    assert "<svg" in html and "GM_mm3" in html
    assert "Not harmonized" not in html


def test_a_study_that_was_not_harmonized_says_why(tmp_path):
    page = render_harmonization(_env(), _tables(tmp_path, False), load_config(), tmp_path)
    html = page.read_text()
    assert "Not harmonized" in html and "no scanner epoch has 2 sessions" in html
