"""Property tests (Hypothesis) of the ComBat core."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from trialprep.harmonization import harmonize

sizes = st.lists(st.integers(min_value=8, max_value=30), min_size=2, max_size=4)


def _make(seed, sizes, p, effect):
    rng = np.random.default_rng(seed)
    batch = np.repeat(np.arange(len(sizes)), sizes).astype(str)
    X = rng.normal(10, 2, (batch.size, p))
    if effect:
        for b in range(len(sizes)):
            rows = batch == str(b)
            X[rows] = (X[rows] - 10) * rng.uniform(0.5, 2, p) + 10 + rng.normal(0, 3, p)
    return X, batch


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), sizes=sizes, p=st.integers(5, 40),
       parametric=st.booleans())
def test_permuting_samples_permutes_outputs(seed, sizes, p, parametric):
    X, batch = _make(seed, sizes, p, effect=True)
    perm = np.random.default_rng(seed + 1).permutation(batch.size)
    out, _ = harmonize(X, batch, parametric=parametric)
    out_p, _ = harmonize(X[perm], batch[perm], parametric=parametric)
    np.testing.assert_allclose(out_p, out[perm], rtol=1e-9, atol=1e-9)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), sizes=sizes, p=st.integers(5, 40))
def test_harmonizing_twice_changes_little(seed, sizes, p):
    X, batch = _make(seed, sizes, p, effect=True)
    # Without shrinkage the second pass finds no batch effect left; it only rescales
    # deviations by sqrt((n - k) / n), because ComBat pools variance over n samples but
    # estimates batch variances with n_b - 1 (as sva and neuroCombat do).
    n, k = batch.size, len(sizes)
    once, _ = harmonize(X, batch, eb_=False)
    twice, _ = harmonize(once, batch, eb_=False)
    centre = once.mean(axis=0)
    np.testing.assert_allclose(twice - centre, (once - centre) * np.sqrt((n - k) / n),
                               atol=1e-9 * np.abs(X).max())
    # With EB shrinkage small batches keep part of their effect after one pass, so the
    # second pass still moves the data, but much less than the first.
    once, _ = harmonize(X, batch)
    twice, _ = harmonize(once, batch)
    assert np.abs(twice - once).mean() < 0.5 * np.abs(once - X).mean()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), sizes=sizes, p=st.integers(5, 40))
def test_without_batch_effect_data_barely_move(seed, sizes, p):
    X, batch = _make(seed, sizes, p, effect=False)
    out, _ = harmonize(X, batch)
    # Only the sampling noise of batch means and variances is removed, which is of the order
    # of sd / sqrt(batch size): well under the spread of the data.
    noise_scale = X.std(axis=0).mean() / np.sqrt(min(sizes))
    assert np.abs(out - X).mean() < 1.5 * noise_scale
    with_effect, _ = _make(seed, sizes, p, effect=True)
    moved, _ = harmonize(with_effect, batch)
    assert np.abs(out - X).mean() < np.abs(moved - with_effect).mean()
