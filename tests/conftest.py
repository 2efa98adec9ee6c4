"""Shared test fixtures: paths to ../shared and small simulated data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    assert SHARED.is_dir(), f"../shared is missing beside the repository ({SHARED})"
    return SHARED


def simulate_sites(n_per_site=(30, 40, 35), n_features=20, seed=0, batch_effect=True,
                   age_effect=0.05, dx_effect=1.0):
    """Features with a known age slope and diagnosis effect plus additive and multiplicative
    site effects. Returns (X DataFrame, batch Series, covariates DataFrame, truth dict)."""
    rng = np.random.default_rng(seed)
    rows = []
    for s, n in enumerate(n_per_site):
        age = rng.uniform(55, 85, n)
        dx = rng.integers(0, 2, n)
        base = rng.normal(0, 1, (n, n_features)) + age_effect * (age[:, None] - 70)
        base += dx_effect * dx[:, None]
        if batch_effect:
            shift = rng.normal(0, 2, n_features) * (s + 1) / 2
            scale = rng.uniform(0.5, 2.0, n_features)
            base = base * scale + shift
        for i in range(n):
            rows.append((f"site{s}", age[i], int(dx[i]), *base[i]))
    cols = ["site", "age", "dx"] + [f"roi{j}" for j in range(n_features)]
    df = pd.DataFrame(rows, columns=cols)
    df.index = [f"sub{i:03d}" for i in range(len(df))]
    X = df[[f"roi{j}" for j in range(n_features)]]
    return X, df["site"], df[["age", "dx"]], {"age_slope": age_effect, "dx_effect": dx_effect}


# Property tests draw the same examples on every CI run (reproducible failures).
from hypothesis import settings as _hyp_settings  # noqa: E402

_hyp_settings.register_profile("ci", derandomize=True, deadline=None)
if __import__("os").environ.get("CI"):
    _hyp_settings.load_profile("ci")
