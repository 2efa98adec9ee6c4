"""scikit-learn estimator inside Pipeline/CV, and the before/after diagnostics."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.model_selection import KFold, cross_val_score
from sklearn.pipeline import make_pipeline

from tests.conftest import simulate_sites
from trialprep.harmonization import harmonize
from trialprep.harmonization.diagnostics import (
    batch_variance_explained,
    combat_in_folds,
    covariate_effects,
    site_prediction_auc,
    summarize,
)
from trialprep.harmonization.estimator import ComBat


def test_estimator_equals_functional_api():
    X, batch, cov, _ = simulate_sites(seed=31)
    est = ComBat(batch=batch, covariates=cov, categorical=["dx"]).fit(X)
    ref, _ = harmonize(X, batch, cov, categorical=["dx"])
    np.testing.assert_allclose(est.transform(X).to_numpy(), ref, rtol=1e-12)


def test_estimator_in_pipeline_cross_validation():
    X, batch, cov, _ = simulate_sites(n_per_site=(40, 40, 40), seed=32)
    y = cov["age"].to_numpy()
    pipe = make_pipeline(ComBat(batch=batch, covariates=cov[["dx"]], categorical=["dx"]),
                         Ridge(alpha=1.0))
    scores = cross_val_score(pipe, X, y, cv=KFold(3, shuffle=True, random_state=0), scoring="r2")
    assert scores.shape == (3,) and np.all(np.isfinite(scores))


def test_diagnostics_show_site_removed_and_biology_kept():
    X, batch, cov, truth = simulate_sites(n_per_site=(50, 50, 50), n_features=10, seed=33,
                                          age_effect=0.05, dx_effect=1.0)
    H, _ = harmonize(X, batch, cov, categorical=["dx"])
    assert site_prediction_auc(X, batch) > 0.95
    assert site_prediction_auc(H, batch) < 0.65
    r2_before, r2_after = batch_variance_explained(X, batch), batch_variance_explained(H, batch)
    assert np.all(r2_after < r2_before) and r2_after.max() < 0.05
    before, before_se = covariate_effects(X, cov, ["dx"], batch=batch)
    after, after_se = covariate_effects(H, cov, ["dx"])
    # the covariate effects survive harmonization (sites scale them, so not bit-equal)
    for term in ("age", "dx_1"):
        rel = ((after[term] - before[term]) / before[term]).abs()
        assert rel.max() < 0.25, (term, rel.max())
        assert ((after[term] - before[term]).abs() / before_se[term]).max() < 3
    # standard errors are OLS's (statsmodels)
    import statsmodels.api as sm

    design = sm.add_constant(np.column_stack([
        cov["age"], cov["dx"] == 1, *(batch == b for b in sorted(set(batch))[1:])]).astype(float))
    ols = sm.OLS(X.iloc[:, 0].to_numpy(), design).fit()
    assert before_se["age"].iloc[0] == pytest.approx(ols.bse[1], rel=1e-9)
    assert before_se["dx_1"].iloc[0] == pytest.approx(ols.bse[2], rel=1e-9)
    assert (after_se > 0).all().all()


def test_site_auc_after_is_cross_validated_with_combat_fitted_inside_the_folds():
    """Harmonizing everyone and then cross-validating leaks: each held-out sample sits
    opposite the rest of its site, and the AUC falls well below chance. Fitting ComBat on
    each training fold and applying it to the held-out fold gives the honest value (chance
    when the site effect is removed); ``summarize`` reports that one, and the leaky one."""
    X, batch, cov, _ = simulate_sites(n_per_site=(12, 12, 12), n_features=30, seed=34)
    H, _ = harmonize(X, batch, cov, categorical=["dx"])
    leaky = site_prediction_auc(H, batch, repeats=5)
    combat = combat_in_folds(X, batch, cov, categorical=["dx"])
    honest = site_prediction_auc(X, batch, harmonizer=combat, repeats=5)
    # repeats average the AUC over random splits (seeds 0..4)
    assert honest == pytest.approx(np.mean([site_prediction_auc(
        X, batch, harmonizer=combat, seed=s) for s in range(5)]))
    assert leaky < 0.3, leaky
    assert 0.3 < honest < 0.65, honest
    d = summarize(X.to_numpy(), H, batch, cov, ["dx"], settings={})
    assert d["site_auc_before"] > 0.95
    assert d["site_auc_after"] == honest and d["site_auc_after_in_sample"] == leaky
    # a model fitted elsewhere: the plain cross-validation is the right one
    assert summarize(X.to_numpy(), H, batch)["site_auc_after"] == leaky


def test_a_fold_that_leaves_a_covariate_confounded_is_fitted_without_it():
    """Few participants per site: a training fold in which each site holds one sex cannot
    protect sex (ConfoundedError from the whole fit); the fold's model leaves sex out and
    the rest of the split still counts, instead of the whole diagnostic failing."""
    import pandas as pd

    from trialprep.harmonization.design import ConfoundedError

    X, batch, cov, _ = simulate_sites(n_per_site=(6, 6, 6), n_features=10, seed=35)
    batch = np.asarray(batch)
    sex = np.where(batch == batch[0], "F", "M")
    sex[np.flatnonzero(batch == batch[-1])[0]] = "F"  # one woman at the last site
    cov = pd.DataFrame({"age": np.asarray(cov["age"]), "sex": sex})
    train = np.flatnonzero(~((batch == batch[-1]) & (sex == "F")))  # without her
    with pytest.raises(ConfoundedError) as err:
        harmonize(X.to_numpy()[train], batch[train], cov.iloc[train], categorical=["sex"])
    assert err.value.covariates == ["sex"]
    run = combat_in_folds(X, batch, cov, categorical=["sex"])
    test = np.setdiff1d(np.arange(len(batch)), train)
    h_train, h_test = run(train, test)
    ref, model = harmonize(X.to_numpy()[train], batch[train], cov[["age"]].iloc[train])
    np.testing.assert_allclose(h_train, ref, rtol=1e-10)
    assert h_test.shape == (len(test), X.shape[1])
    assert 0 <= site_prediction_auc(X, batch, harmonizer=run, repeats=3) <= 1
