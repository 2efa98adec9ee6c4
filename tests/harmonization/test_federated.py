"""Federated ComBat: five sites' summaries give the pooled fit; the summaries hold aggregates
only; the command line runs the whole exchange."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.conftest import simulate_sites
from trialprep.cli import main
from trialprep.harmonization import core, federated

ARRAYS = ("grand_mean", "beta_cov", "var_pooled", "gamma_hat", "delta_hat", "gamma_star",
          "delta_star")


def _five_sites():
    X, batch, cov, _ = simulate_sites(n_per_site=(30, 45, 25, 60, 40), n_features=15, seed=3)
    X = X.to_numpy() + 1e4  # volume-like magnitudes: sums around each site's mean keep precision
    cov = cov.assign(sex=np.where(np.arange(len(cov)) % 3 == 0, "M", "F"))
    return X, batch.to_numpy(), cov


@pytest.mark.parametrize("settings", [{}, {"ref_batch": "site2"}, {"mean_only": True},
                                      {"parametric": False}, {"eb_": False}])
def test_federated_equals_pooled(settings):
    X, batch, cov = _five_sites()
    pooled_out, pooled = core.harmonize(X, batch, cov, categorical=["dx", "sex"], **settings)
    sites = sorted(set(batch))
    summaries = [json.loads(json.dumps(federated.site_summary(
        X[batch == s], batch[batch == s], cov[batch == s], categorical=["dx", "sex"])))
        for s in sites]
    model = federated.combine(summaries[::-1], **settings)  # order does not matter
    assert model.batches == pooled.batches
    for name in ARRAYS:
        np.testing.assert_allclose(getattr(model, name), getattr(pooled, name), rtol=0,
                                   atol=1e-8, err_msg=name)
    for s in sites:  # each site applies the model to its own rows
        rows = batch == s
        np.testing.assert_allclose(core.apply(model, X[rows], batch[rows], cov[rows]),
                                   pooled_out[rows], rtol=0, atol=1e-8)


def test_a_summary_holds_aggregates_only():
    X, batch, cov = _five_sites()
    rows = batch == "site1"
    ids = [f"sub-{i:04d}" for i in range(int(rows.sum()))]
    frame = pd.DataFrame(X[rows]).assign(participant_id=ids)
    summary = federated.site_summary(X[rows], batch[rows], cov[rows], categorical=["dx", "sex"])
    text = json.dumps(summary)
    assert not any(i in text for i in ids) and "participant" not in text
    n, p = int(rows.sum()), X.shape[1]
    q = len(summary["columns"])

    def sizes(obj):
        if isinstance(obj, dict):
            for v in obj.values():
                yield from sizes(v)
        elif isinstance(obj, list) and obj and isinstance(obj[0], list | float | int):
            yield len(obj)
            for v in obj:
                yield from sizes(v)

    assert set(sizes(summary)) <= {p, q}, "every array is per feature or covariate column"
    assert n not in {p, q} and summary["batches"]["site1"]["n"] == n
    # no sample can be recovered: the values a row contributes are summed away
    assert not np.isin(np.round(frame.iloc[:, :p].to_numpy(), 6),
                       np.round(np.asarray(summary["batches"]["site1"]["sum_y"]), 6)).any()


def test_combine_refuses_inconsistent_summaries():
    X, batch, cov = _five_sites()
    a = federated.site_summary(X[batch == "site0"], batch[batch == "site0"], cov[batch == "site0"],
                               categorical=["dx", "sex"])
    b = federated.site_summary(X[batch == "site1"][:, :5], batch[batch == "site1"],
                               cov[batch == "site1"], categorical=["dx", "sex"])
    with pytest.raises(ValueError, match="different features"):
        federated.combine([a, b])
    with pytest.raises(ValueError, match="more than one site"):
        federated.combine([a, a])


def test_cli_federated_round(tmp_path):
    X, batch, cov = _five_sites()
    df = pd.concat([pd.DataFrame({"participant_id": [f"p{i}" for i in range(len(batch))],
                                  "site": batch}), cov.reset_index(drop=True),
                    pd.DataFrame(X, columns=[f"roi{j}" for j in range(X.shape[1])])], axis=1)
    common = ["--batch", "site", "--covariates", "age,dx,sex", "--categorical", "dx,sex"]
    summaries = []
    for s in sorted(set(batch)):
        path = tmp_path / f"{s}.parquet"
        df[df["site"] == s].to_parquet(path, index=False)
        summaries.append(tmp_path / f"{s}.json")
        assert main(["harmonize", str(path), *common, "--site-summary", str(summaries[-1])]) == 0
    model = tmp_path / "model.npz"
    assert main(["harmonize", "--combine", *map(str, summaries), "--model-out", str(model)]) == 0
    whole = tmp_path / "all.parquet"
    df.to_parquet(whole, index=False)
    assert main(["harmonize", str(whole), *common, "--out", str(tmp_path / "pooled.parquet")]) == 0
    pooled = pd.read_parquet(tmp_path / "pooled.parquet")
    for s in sorted(set(batch)):
        out = tmp_path / f"{s}_h.parquet"
        assert main(["harmonize", str(tmp_path / f"{s}.parquet"), "--batch", "site", "--apply",
                     str(model), "--out", str(out)]) == 0
        mine = pd.read_parquet(out)
        theirs = pooled[pooled["site"] == s]
        feats = [c for c in mine.columns if c.startswith("roi")]
        np.testing.assert_allclose(mine[feats].to_numpy(), theirs[feats].to_numpy(), atol=1e-8)
