"""Equivalence with neuroCombat's golden outputs (../shared/reference/combat)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.conftest import SHARED
from trialprep.harmonization import harmonize

BATCH = [1, 1, 1, 1, 1, 2, 2, 2, 2, 2]
GENDER = [1, 2, 1, 2, 1, 2, 1, 2, 1, 2]


def _grid(shared_root):
    return sorted((shared_root / "reference" / "combat").glob("testdata_combat_*_python.csv"))


def test_reference_grid_is_complete(shared_dir):
    # 2 (param) x 2 (eb) x 2 (mean-only) x 2 (ref) x 2 (covariate) = 32 modes (plus aliases)
    assert len(_grid(shared_dir)) >= 32


@pytest.mark.parametrize("mode_file", _grid(SHARED),
                         ids=lambda p: p.stem.replace("testdata_combat_", ""))
def test_matches_neurocombat_golden_output(mode_file, shared_dir):
    data = pd.read_csv(shared_dir / "reference" / "combat" / "testdata.csv").to_numpy().T
    tokens = set(mode_file.stem.replace("testdata_combat_", "").split("_"))
    cov = pd.DataFrame({"gender": GENDER}) if "adjusted" in tokens else None
    out, model = harmonize(
        data, BATCH, cov, categorical=["gender"] if cov is not None else [],
        parametric="parametric" in tokens, eb_="noeb" not in tokens,
        mean_only="meanonly" in tokens, ref_batch=1 if "batchref" in tokens else None)
    expected = pd.read_csv(mode_file, header=None).to_numpy().T
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-8)
    # and the data did change (the reference is not the input)
    assert not np.allclose(out, data)
