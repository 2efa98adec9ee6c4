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
    once, _ = harmonize(X, batch)
    twice, _ = harmonize(once, batch)
    first_move = np.abs(once - X).mean()
    second_move = np.abs(twice - once).mean()
    assert second_move < 0.1 * first_move
    assert second_move < 0.1 * once.std(axis=0).mean()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), sizes=sizes, p=st.integers(5, 40))
def test_without_batch_effect_data_barely_move(seed, sizes, p):
    X, batch = _make(seed, sizes, p, effect=False)
    out, _ = harmonize(X, batch)
    # Only sampling noise of batch means/variances is removed: far less than the spread.
    assert np.abs(out - X).mean() < 0.3 * X.std(axis=0).mean()
    with_effect, _ = _make(seed, sizes, p, effect=True)
    moved, _ = harmonize(with_effect, batch)
    assert np.abs(out - X).mean() < np.abs(moved - with_effect).mean()
