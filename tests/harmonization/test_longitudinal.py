"""Longitudinal ComBat against the R package longCombat (../shared/reference/longcombat) and
its mixed models against statsmodels; apply, save/load, estimator and CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.conftest import SHARED
from trialprep.cli import main
from trialprep.harmonization import longitudinal
from trialprep.harmonization.estimator import LongitudinalComBat
from trialprep.harmonization.mixed import fit_reml

REF = SHARED / "reference" / "longcombat"
CASES = {  # prefix: (data, formula, random slope, sigma) as in the reference's README
    "d1_reml_ri": ("d1", "time + age + sex + dx*time", False, "reml"),
    "d1_msr_ri": ("d1", "time + age + sex + dx*time", False, "msr"),
    "d1_reml_rs": ("d1", "time + age + sex + dx*time", True, "reml"),
    "d2_reml_ri": ("d2", "time + sex", False, "reml"),
}


def _data(name: str) -> tuple[pd.DataFrame, list[str]]:
    d = pd.read_csv(REF / f"{name}.csv")
    return d, [c for c in d.columns if c.startswith("f")]


@pytest.mark.parametrize("prefix", sorted(CASES))
def test_matches_longcombat(prefix):
    name, formula, slope, sigma = CASES[prefix]
    d, feats = _data(name)
    out, model = longitudinal.harmonize(d[feats], d["batch"], d, subject="subid", time="time",
                                        formula=formula, random_slope=slope, sigma=sigma)
    ref = pd.read_csv(REF / f"{prefix}_data_combat.csv")
    sd = d[feats].std().to_numpy()
    err = np.abs(out - ref[[f"{f}.combat" for f in feats]].to_numpy()) / sd
    assert err.max() < 1e-4, err.max()
    for stem, ours in (("gammahat", model.gamma_hat), ("delta2hat", model.delta_hat),
                       ("gammastarhat", model.gamma_star), ("delta2starhat", model.delta_star)):
        theirs = pd.read_csv(REF / f"{prefix}_{stem}.csv", index_col=0)
        assert list(theirs.index) == model.batches
        np.testing.assert_allclose(ours, theirs[feats].to_numpy(), atol=1e-5, err_msg=stem)


def _design(d: pd.DataFrame) -> np.ndarray:
    return np.column_stack([np.ones(len(d)), d["time"], d["age"], d["sex"] == "M",
                            d["dx"] == "CN", d["time"] * (d["dx"] == "CN")]).astype(float)


@pytest.mark.parametrize("slope", [False, True])
def test_mixed_models_match_statsmodels(slope):
    """REML fixed effects and residual SD against statsmodels' MixedLM (another REML code;
    its optimizers disagree among themselves by up to 1e-3, so its best of two is used)."""
    import warnings

    import statsmodels.api as sm

    d, feats = _data("d1")
    X = _design(d)
    Z = np.column_stack([np.ones(len(d)), d["time"]]) if slope else np.ones((len(d), 1))
    _, fits = fit_reml(X, Z, d["subid"], d[feats].to_numpy())
    for f, fit in zip(feats, fits, strict=True):
        model = sm.MixedLM(d[f].to_numpy(), X, groups=d["subid"], exog_re=Z)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            runs = [model.fit(reml=True, method=m) for m in (["powell", "lbfgs"], ["bfgs"])]
        res = max(runs, key=lambda r: r.llf)
        assert fit.sigma == pytest.approx(np.sqrt(res.scale), rel=1e-4), f
        np.testing.assert_allclose(fit.beta, res.fe_params, rtol=1e-4, atol=2e-5, err_msg=f)


def test_apply_reproduces_the_fit_and_handles_new_subjects(tmp_path):
    d, feats = _data("d1")
    kw = dict(subject="subid", time="time", formula="time + age + sex + dx*time")
    out, model = longitudinal.harmonize(d[feats], d["batch"], d, **kw)
    again = longitudinal.apply(model, d[feats], d["batch"], d, subject="subid")
    np.testing.assert_allclose(again, out, atol=1e-10)
    model.save(tmp_path / "m.npz")
    loaded = longitudinal.LongitudinalModel.load(tmp_path / "m.npz")
    np.testing.assert_allclose(longitudinal.apply(loaded, d[feats], d["batch"], d,
                                                  subject="subid"), out, atol=1e-10)
    # a subject the model has not seen gets random effects predicted from its own visits,
    # which (given the fitted variance components) is exactly what the fit gives a subject:
    # the same visits under new subject labels come out the same
    renamed = d.assign(subid="new-" + d["subid"])
    np.testing.assert_allclose(longitudinal.apply(model, d[feats], d["batch"], renamed,
                                                  subject="subid"), out, atol=1e-8)
    held = d["subid"].isin(sorted(d["subid"].unique())[:8])
    _, part = longitudinal.harmonize(d.loc[~held, feats], d.loc[~held, "batch"], d[~held],
                                     **kw)
    assert np.isfinite(longitudinal.apply(part, d.loc[held, feats], d.loc[held, "batch"],
                                          d[held], subject="subid")).all()


def test_refuses_what_it_cannot_estimate():
    d, feats = _data("d2")
    one_visit = d.groupby("subid").head(1)
    with pytest.raises(ValueError, match="single visit"):
        longitudinal.fit(one_visit[feats], one_visit["batch"], one_visit, subject="subid",
                         time="time")
    with pytest.raises(ValueError, match="not seen"):
        _, model = longitudinal.harmonize(d[feats], d["batch"], d, subject="subid",
                                          time="time")
        longitudinal.apply(model, d[feats], ["Z"] * len(d), d, subject="subid")


def test_a_variable_that_batch_determines_is_named_and_dropped_in_folds():
    """sex made a property of the batch: the fit names it (ConfoundedError); the in-fold
    harmonizer then fits without the effects that hold sex."""
    from trialprep.harmonization.design import ConfoundedError
    from trialprep.harmonization.diagnostics import longitudinal_in_folds

    d, feats = _data("d1")
    d = d.assign(sex=np.where(d["batch"] == sorted(d["batch"].unique())[0], "F", "M"))
    kw = dict(subject="subid", time="time", formula="time + age + sex*time")
    with pytest.raises(ConfoundedError) as err:
        longitudinal.fit(d[feats], d["batch"], d, **kw)
    assert err.value.covariates == ["sex"]
    rows = np.arange(len(d))
    h, _ = longitudinal_in_folds(d[feats], d["batch"], d, **kw)(rows, rows[:5])
    ref, _ = longitudinal.harmonize(d[feats], d["batch"], d, subject="subid", time="time",
                                    formula="time + age")
    np.testing.assert_allclose(h, ref, atol=1e-10)


def test_estimator_in_a_pipeline():
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    d, feats = _data("d2")
    d.index = [f"v{i}" for i in range(len(d))]
    est = LongitudinalComBat(batch=d["batch"], covariates=d, subject="subid", time="time",
                             formula="time + sex")
    pipe = make_pipeline(est, StandardScaler())
    out = pipe.fit_transform(d[feats])
    direct, _ = longitudinal.harmonize(d[feats], d["batch"], d, subject="subid", time="time",
                                       formula="time + sex")
    np.testing.assert_allclose(StandardScaler().fit_transform(direct), out, atol=1e-9)


def test_cli_longitudinal(tmp_path):
    d, feats = _data("d2")
    path = tmp_path / "d2.parquet"
    d.to_parquet(path)
    out = tmp_path / "h.parquet"
    rc = main(["harmonize", str(path), "--batch", "batch", "--covariates", "sex",
               "--features", ",".join(feats), "--longitudinal", "--subject", "subid",
               "--time", "time", "--out", str(out)])
    assert rc == 0
    ref = pd.read_csv(REF / "d2_reml_ri_data_combat.csv")
    got = pd.read_parquet(out)
    assert list(got.columns) == list(d.columns)
    err = np.abs(got[feats].to_numpy() - ref[[f"{f}.combat" for f in feats]].to_numpy())
    assert (err / d[feats].std().to_numpy()).max() < 1e-4
    rc = main(["harmonize", str(path), "--batch", "batch", "--apply",
               str(out.with_suffix(".combat.npz")), "--out", str(tmp_path / "a.parquet")])
    assert rc == 0
    np.testing.assert_allclose(pd.read_parquet(tmp_path / "a.parquet")[feats], got[feats],
                               atol=1e-9)
