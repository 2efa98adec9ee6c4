"""Fit on one set, apply to another; nonlinear covariates; save/load with provenance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.conftest import simulate_sites
from trialprep.harmonization import ComBatModel, apply, fit, harmonize


def test_apply_to_training_data_reproduces_harmonize():
    X, batch, cov, _ = simulate_sites(seed=21)
    out, model = harmonize(X, batch, cov, categorical=["dx"])
    np.testing.assert_allclose(apply(model, X, batch, cov), out, rtol=1e-12)
    # per-sample: applying to a subset gives the same rows
    sub = np.arange(0, len(X), 3)
    np.testing.assert_allclose(apply(model, X.iloc[sub], batch.iloc[sub], cov.iloc[sub]),
                               out[sub], rtol=1e-12)


def test_apply_removes_site_effect_from_new_samples():
    X, batch, cov, _ = simulate_sites(n_per_site=(60, 60, 60), seed=22)
    train = np.arange(len(X)) % 2 == 0
    model = fit(X[train], batch[train], cov[train], categorical=["dx"])
    new = apply(model, X[~train], batch[~train], cov[~train])
    site_means_before = X[~train].groupby(batch[~train].to_numpy()).mean()
    site_means_after = pd.DataFrame(new).groupby(batch[~train].to_numpy()).mean()
    assert site_means_after.std().mean() < 0.35 * site_means_before.std().mean()


def test_smooth_age_term_captures_nonlinear_effect():
    # Sites differ in age range and the feature depends on age quadratically: a linear age
    # term leaves curvature that ComBat then misreads as site effect; a spline does not.
    rng = np.random.default_rng(23)
    ages = [rng.uniform(40, 60, 50), rng.uniform(55, 75, 50), rng.uniform(70, 90, 50)]
    batch = np.repeat(["a", "b", "c"], 50)
    age = np.concatenate(ages)
    truth = 0.02 * (age - 65) ** 2
    site_shift = np.repeat([0.0, 1.0, -1.0], 50)
    y = truth + site_shift + rng.normal(0, 0.3, 150)
    X = np.column_stack([y, y + rng.normal(0, 0.3, 150)])
    cov = pd.DataFrame({"age": age})
    lin, _ = harmonize(X, batch, cov)
    spl, model = harmonize(X, batch, cov, smooth=["age"])
    err_lin = np.abs(lin[:, 0] - truth - (lin[:, 0] - truth).mean()).mean()
    err_spl = np.abs(spl[:, 0] - truth - (spl[:, 0] - truth).mean()).mean()
    assert err_spl < 0.7 * err_lin
    assert [t.kind for t in model.terms] == ["smooth"]


def test_save_load_roundtrip_with_provenance(tmp_path):
    X, batch, cov, _ = simulate_sites(seed=24)
    model = fit(X, batch, cov, categorical=["dx"], smooth=["age"], parametric=False)
    path = model.save(tmp_path / "m.npz")
    loaded = ComBatModel.load(path)
    np.testing.assert_array_equal(apply(loaded, X, batch, cov), apply(model, X, batch, cov))
    prov = loaded.provenance
    assert loaded.features == list(X.columns)
    assert loaded.batches == ["site0", "site1", "site2"]
    assert loaded.settings["parametric"] is False
    assert len(prov["training_sha256"]) == 64 and prov["n_samples"] == len(X)
    assert prov["trialprep"] and prov["packages"]["numpy"] == np.__version__
    # the checksum identifies the training data
    other = fit(X * 1.01, batch, cov, categorical=["dx"], smooth=["age"], parametric=False)
    assert other.provenance["training_sha256"] != prov["training_sha256"]


def test_load_refuses_foreign_file(tmp_path):
    np.savez(tmp_path / "x.npz", meta=np.array('{"format": "other"}'))
    with pytest.raises(ValueError, match="not a trialprep ComBat model"):
        ComBatModel.load(tmp_path / "x.npz")
