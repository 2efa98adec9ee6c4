"""Degenerate inputs have defined behaviour: pass-through or a clear, specific error."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.conftest import simulate_sites
from trialprep.harmonization import HarmonizationError, apply, fit, harmonize


def test_zero_variance_feature_passes_through_unchanged():
    X, batch, cov, _ = simulate_sites(seed=3)
    X = X.copy()
    X["const"] = 7.25
    out, model = harmonize(X, batch, cov, categorical=["dx"])
    np.testing.assert_array_equal(out[:, -1], 7.25)
    assert not model.active[-1]
    # the other features are harmonized exactly as without the constant column
    ref, _ = harmonize(X.drop(columns="const"), batch, cov, categorical=["dx"])
    np.testing.assert_allclose(out[:, :-1], ref, rtol=1e-12)


def test_feature_fully_explained_by_batch_passes_through_with_warning():
    X, batch, _, _ = simulate_sites(seed=4)
    X = X.copy()
    X["sitecode"] = batch.map({"site0": 1.0, "site1": 2.0, "site2": 3.0})
    with pytest.warns(UserWarning, match="zero residual variance"):
        out, _ = harmonize(X, batch)
    np.testing.assert_array_equal(out[:, -1], X["sitecode"].to_numpy())


def test_nan_values_are_refused_with_location():
    X, batch, _, _ = simulate_sites(seed=5)
    X = X.copy()
    X.iloc[4, 2] = np.nan
    with pytest.raises(HarmonizationError, match=r"missing or non-finite.*sample 4.*'roi2'"):
        fit(X, batch)


def test_batch_of_one_sample_is_named():
    X, batch, _, _ = simulate_sites(seed=6)
    batch = batch.copy()
    batch.iloc[0] = "lonely"
    with pytest.raises(HarmonizationError, match=r"\['lonely'\] have a single sample"):
        fit(X, batch)


def test_single_batch_is_refused():
    X, _, _, _ = simulate_sites(seed=7)
    with pytest.raises(HarmonizationError, match="only one batch"):
        fit(X, ["A"] * len(X))


def test_covariate_confounded_with_batch_is_refused():
    X, batch, cov, _ = simulate_sites(seed=8)
    cov = cov.copy()
    cov["scanner"] = batch.map({"site0": "a", "site1": "b", "site2": "b"}).to_numpy()
    with pytest.raises(HarmonizationError, match=r"\['scanner'\] are confounded with batch"):
        fit(X, batch, cov, categorical=["dx", "scanner"])


def test_non_numeric_features_are_named():
    X, batch, _, _ = simulate_sites(seed=9)
    X = X.copy()
    X["note"] = "abc"
    with pytest.raises(HarmonizationError, match=r"non-numeric feature column\(s\) \['note'\]"):
        fit(X, batch)


def test_non_numeric_continuous_covariate_is_named():
    X, batch, cov, _ = simulate_sites(seed=10)
    cov = cov.copy().astype({"age": object})
    cov.iloc[3, 0] = "old"
    with pytest.raises(HarmonizationError, match=r"'age' has 1 non-numeric.*'old'"):
        fit(X, batch, cov, categorical=["dx"])


def test_unseen_batch_in_apply_is_named():
    X, batch, cov, _ = simulate_sites(seed=11)
    model = fit(X, batch, cov, categorical=["dx"])
    new_batch = batch.copy()
    new_batch.iloc[:3] = "site9"
    with pytest.raises(HarmonizationError, match=r"\['site9'\] were not seen"):
        apply(model, X, new_batch, cov)


def test_unseen_category_in_apply_is_named():
    X, batch, cov, _ = simulate_sites(seed=12)
    model = fit(X, batch, cov, categorical=["dx"])
    cov2 = cov.copy()
    cov2["dx"] = 5
    with pytest.raises(HarmonizationError, match=r"'dx' has level\(s\) \['5'\] not seen"):
        apply(model, X, batch, cov2)


def test_missing_reference_batch_is_named():
    X, batch, _, _ = simulate_sites(seed=13)
    with pytest.raises(HarmonizationError, match="reference batch 'nowhere'"):
        fit(X, batch, ref_batch="nowhere")


def test_all_constant_data_is_refused():
    with pytest.raises(HarmonizationError, match="nothing to harmonize"):
        fit(np.ones((6, 3)), ["a", "a", "a", "b", "b", "b"])


def test_inputs_are_not_modified():
    X, batch, cov, _ = simulate_sites(seed=14)
    X0, cov0 = X.copy(), cov.copy()
    harmonize(X, batch, cov, categorical=["dx"], smooth=["age"])
    pd.testing.assert_frame_equal(X, X0)
    pd.testing.assert_frame_equal(cov, cov0)


def test_a_failed_fit_leaves_no_thread_behind():
    """The training-data checksum runs in a thread beside the fit; a fit that fails (here on
    an inf found in the batch statistics) shuts it down instead of leaving it idle."""
    import threading
    import time

    X, batch, _, _ = simulate_sites(seed=5)
    X = X.copy()
    X.iloc[3, 1] = np.inf
    before = set(threading.enumerate())
    with pytest.raises(HarmonizationError, match="non-finite") as info:
        fit(X, batch)
    # ``info`` keeps the traceback, and with it the fit's frame, alive (as a caller that
    # reports the error does), so garbage collection cannot be what ends the thread.
    deadline = time.monotonic() + 10
    while set(threading.enumerate()) - before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not set(threading.enumerate()) - before
    assert info.traceback


def test_a_single_feature_is_harmonized_with_its_own_batch_estimates():
    """Empirical Bayes pools each batch's estimates across features: with one feature there
    is nothing to pool, and shrinking towards a prior from one value gave NaN for every
    session. One feature is harmonized with its per-batch estimates (as eb=False), and the
    model says so; the longitudinal model likewise."""
    from trialprep.harmonization import core, longitudinal

    rng = np.random.default_rng(0)
    batch = np.repeat(["a", "b"], 8)
    X = pd.DataFrame({"f": rng.normal(size=16) + (batch == "b") * 3.0})
    model = core.fit(X, batch, None)
    out = core.apply(model, X, batch)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, core.apply(core.fit(X, batch, None, eb_=False), X, batch))
    assert "not applied" in model.provenance["empirical_bayes"]
    assert abs(out[batch == "a"].mean() - out[batch == "b"].mean()) < 1e-6
    cov = pd.DataFrame({"participant_id": np.repeat(np.arange(8), 2),
                        "time": np.tile([0.0, 1.0], 8)})
    lm = longitudinal.fit(X, batch, cov, subject="participant_id", time="time")
    assert np.isfinite(longitudinal.apply(lm, X, batch, cov, subject="participant_id")).all()
