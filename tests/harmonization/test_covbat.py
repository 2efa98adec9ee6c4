"""CovBat against the authors' R implementation (tests/harmonization/reference/covbat), its
fit/apply, save/load, the estimator and the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trialprep.cli import main
from trialprep.harmonization import core, covbat
from trialprep.harmonization.estimator import ComBat

REF = Path(__file__).parent / "reference" / "covbat"
MODES = {  # reference file: our settings for the same arguments (see the README there)
    "default": {},
    "npc3_nostd_scoreeb": dict(n_components=3, standardize=False, score_eb=True),
    "pct80_noeb": dict(variance=0.80, eb_=False),
    "nonparametric": dict(parametric=False, score_eb=True, score_parametric=False),
}
COMPONENTS = {"default": 9, "npc3_nostd_scoreeb": 3, "pct80_noeb": 7, "nonparametric": 9}


def _data():
    d = pd.read_csv(REF / "data.csv")
    return d, [c for c in d.columns if c.startswith("f")]


@pytest.mark.parametrize("mode", sorted(MODES))
def test_matches_the_authors_covbat(mode):
    d, feats = _data()
    out, model = covbat.harmonize(d[feats], d["batch"], d[["age", "sex"]],
                                  categorical=["sex"], **MODES[mode])
    ref = pd.read_csv(REF / f"covbat_{mode}.csv")
    err = np.abs(out - ref[feats].to_numpy()) / d[feats].std().to_numpy()
    assert err.max() < 1e-6, err.max()
    assert model.settings["n_components"] == COMPONENTS[mode]


def _covariance_spread(X: np.ndarray, batch: np.ndarray) -> float:
    """How far the batches' correlation matrices lie from the pooled one (Frobenius)."""
    pooled = np.corrcoef(X, rowvar=False)
    return float(np.mean([np.linalg.norm(np.corrcoef(X[batch == b], rowvar=False) - pooled)
                          for b in np.unique(batch)]))


def test_covbat_removes_what_combat_leaves_in_the_covariance(tmp_path):
    d, feats = _data()
    X, batch, cov = d[feats].to_numpy(), d["batch"].to_numpy(), d[["age", "sex"]]
    combat_out, _ = core.harmonize(X, batch, cov, categorical=["sex"])
    out, model = covbat.harmonize(X, batch, cov, categorical=["sex"])
    # (about 1.4 of what is left is sampling noise of 40-55 samples per batch)
    assert _covariance_spread(out, batch) < 0.75 * _covariance_spread(combat_out, batch)
    np.testing.assert_allclose(covbat.apply(model, X, batch, cov), out, atol=1e-10)
    model.save(tmp_path / "m.npz")
    loaded = covbat.CovBatModel.load(tmp_path / "m.npz")
    np.testing.assert_allclose(covbat.apply(loaded, X[::3], batch[::3], cov.iloc[::3]),
                               out[::3], atol=1e-10)


def test_estimator_and_cli(tmp_path):
    d, feats = _data()
    d.index = [f"s{i}" for i in range(len(d))]
    est = ComBat(batch=d["batch"], covariates=d[["age", "sex"]], categorical=["sex"],
                 covbat=True, covbat_components=3)
    out = est.fit_transform(d[feats])
    ref, _ = covbat.harmonize(d[feats], d["batch"], d[["age", "sex"]], categorical=["sex"],
                              n_components=3)
    np.testing.assert_allclose(out.to_numpy(), ref, atol=1e-10)
    path = tmp_path / "t.parquet"
    d.to_parquet(path, index=False)
    rc = main(["harmonize", str(path), "--batch", "batch", "--covariates", "age,sex",
               "--categorical", "sex", "--covbat", "--out", str(tmp_path / "h.parquet")])
    assert rc == 0
    default = pd.read_csv(REF / "covbat_default.csv")
    got = pd.read_parquet(tmp_path / "h.parquet")
    assert np.abs(got[feats].to_numpy() - default[feats].to_numpy()).max() < 1e-6
    rc = main(["harmonize", str(path), "--batch", "batch", "--apply",
               str(tmp_path / "h.combat.npz"), "--out", str(tmp_path / "a.parquet")])
    assert rc == 0
    np.testing.assert_allclose(pd.read_parquet(tmp_path / "a.parquet")[feats], got[feats],
                               atol=1e-9)
