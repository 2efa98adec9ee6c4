"""Longitudinal ComBat (Beer et al. 2020, NeuroImage 220:117129): fit and apply on arrays.

Each feature gets a linear mixed model ``y = X beta + batch + Z b + e`` with fixed effects
from a formula (covariates, time, interactions), batch as a fixed factor and a per-subject
random intercept (optionally a random slope in time), fitted by REML (:mod:`.mixed`). The
batch effects are centred (sum over visits zero), the data standardized by the residual SD
(REML estimate, or the mean squared residual, ``sigma="msr"``), and the batches' location and
scale shrunk by empirical Bayes across features exactly as the R package longCombat does
(``niter`` fixed iterations of the lagged updates). Harmonized data keep the fixed effects,
the subject's random effects and the residual, with the batch's location and scale removed.

``apply`` harmonizes new visits of known subjects (their random effects from the fit) and of
new subjects (their random effects predicted from their own visits) in known batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from trialprep import __version__
from trialprep.harmonization import eb
from trialprep.harmonization.design import ConfoundedError, HarmonizationError, factorize_as_str
from trialprep.harmonization.formula import FixedEffects
from trialprep.harmonization.mixed import FeatureFit, blups_for, fit_reml
from trialprep.harmonization.model import load_npz, save_npz
from trialprep.provenance import package_versions, sha256_array, sha256_json, utc_now

FORMAT = "trialprep-longitudinal-combat-model/1"
_ARRAYS = ("beta", "theta", "sigma", "blups", "batch_effects", "gamma_hat", "delta_hat",
           "gamma_star", "delta_star")


@dataclass
class LongitudinalModel:
    """A fitted longitudinal ComBat model (arrays are features-last)."""

    features: list[str]
    batches: list[str]
    fixed: FixedEffects
    time: str
    random_slope: bool
    subjects: list[str]
    beta: np.ndarray           # (1 + p + batches - 1, F): intercept, fixed, batch contrasts
    theta: np.ndarray          # (F, k) relative covariance factors (lme4's theta)
    sigma: np.ndarray          # (F,) residual SD used to standardize
    blups: np.ndarray          # (S, q, F) subjects' random effects
    batch_effects: np.ndarray  # (B, F) centred batch effects (sum over visits zero)
    gamma_hat: np.ndarray      # (B, F) per-batch mean of the standardized data
    delta_hat: np.ndarray      # (B, F) per-batch variance of the standardized data
    gamma_star: np.ndarray     # (B, F) empirical Bayes estimates
    delta_star: np.ndarray
    n_per_batch: list[int]
    settings: dict
    provenance: dict = field(default_factory=dict)

    def save(self, path: str | Path) -> Path:
        meta = {"format": FORMAT, "features": self.features, "batches": self.batches,
                "fixed": self.fixed.to_dict(), "time": self.time,
                "random_slope": self.random_slope, "subjects": self.subjects,
                "n_per_batch": self.n_per_batch, "settings": self.settings,
                "provenance": self.provenance}
        return save_npz(path, meta, {k: getattr(self, k) for k in _ARRAYS})

    @classmethod
    def load(cls, path: str | Path) -> LongitudinalModel:
        meta, arrays = load_npz(path)
        if meta.get("format") != FORMAT:
            raise HarmonizationError(f"{path} is not a trialprep longitudinal ComBat model")
        return cls(features=meta["features"], batches=meta["batches"],
                   fixed=FixedEffects.from_dict(meta["fixed"]), time=meta["time"],
                   random_slope=meta["random_slope"], subjects=meta["subjects"],
                   n_per_batch=meta["n_per_batch"], settings=meta["settings"],
                   provenance=meta["provenance"], **{k: arrays[k] for k in _ARRAYS})

    def feature_fits(self) -> list[FeatureFit]:
        return [FeatureFit(self.theta[f], self.beta[:, f], float(self.sigma[f]),
                           self.blups[:, :, f], float("nan")) for f in range(len(self.features))]


def _design(fixed: FixedEffects, data: pd.DataFrame, batch_idx: np.ndarray,
            n_batch: int) -> np.ndarray:
    """[intercept, fixed effects, batch treatment contrasts vs the first batch]."""
    n = len(data)
    contrasts = np.zeros((n, n_batch - 1))
    rows = batch_idx > 0
    contrasts[np.flatnonzero(rows), batch_idx[rows] - 1] = 1.0
    return np.column_stack([np.ones(n), fixed.matrix(data), contrasts])


def _raise_confounded(fixed: FixedEffects, data: pd.DataFrame, batch_idx: np.ndarray,
                      n_batch: int) -> None:
    """The fixed effects and batch are collinear: ConfoundedError naming the variables that
    batch determines, else a plain HarmonizationError."""
    base = _design(FixedEffects(fixed.formula, [], []), data, batch_idx, n_batch)
    rank = np.linalg.matrix_rank(base)
    culprits = []
    for term in fixed.terms:
        block = term.encode(data[term.name].reset_index(drop=True))
        if np.linalg.matrix_rank(np.column_stack([base, block])) < rank + block.shape[1]:
            culprits.append(term.name)
    if culprits:
        raise ConfoundedError(f"the fixed effects ({fixed.formula}): {culprits} confounded "
                              "with batch (fully determined by it)", culprits)
    raise HarmonizationError(f"the fixed effects ({fixed.formula}) and batch are "
                             "collinear")


def _random_design(data: pd.DataFrame, time: str, slope: bool) -> np.ndarray:
    t = pd.to_numeric(data[time], errors="coerce").to_numpy(float)
    if not np.isfinite(t).all():
        raise HarmonizationError(f"time column {time!r} has missing or non-numeric values")
    return np.column_stack([np.ones(len(t)), t]) if slope else np.ones((len(t), 1))


def _batches(batch, levels: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    codes, names = factorize_as_str(batch)
    if any(b in ("nan", "None", "") for b in names):
        raise HarmonizationError("batch labels contain missing values")
    levels = levels or sorted(set(names))  # R's factor order
    unseen = sorted(set(names) - set(levels))
    if unseen:
        raise HarmonizationError(f"batch(es) {unseen} were not seen when the model was fitted "
                                 f"(known: {levels})")
    lookup = {b: i for i, b in enumerate(levels)}
    return np.array([lookup[b] for b in names], dtype=int)[codes], levels


def longcombat_eb(n: np.ndarray, gamma_hat: np.ndarray, delta_hat: np.ndarray,
                  niter: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """longCombat's empirical Bayes: per batch, normal and inverse-gamma priors across
    features by the method of moments, then :func:`eb.parametric_lagged`."""
    if gamma_hat.shape[1] < 2:  # one feature: no prior across features to shrink towards
        return gamma_hat.copy(), delta_hat.copy()
    gamma_star, delta_star = np.empty_like(gamma_hat), np.empty_like(delta_hat)
    for i in range(gamma_hat.shape[0]):
        a, b = eb.inverse_gamma_prior(delta_hat[i])
        gamma_star[i], delta_star[i] = eb.parametric_lagged(
            float(n[i]), gamma_hat[i], delta_hat[i], gamma_hat[i].mean(),
            gamma_hat[i].var(ddof=1), a, b, niter)
    return gamma_star, delta_star


def fit(X, batch, data: pd.DataFrame, *, subject: str, time: str, formula: str | None = None,
        categorical=(), random_slope: bool = False, sigma: str = "reml",
        niter: int = 30) -> LongitudinalModel:
    """Fit longitudinal ComBat; see the module docstring.

    X : visits x features. batch : one label per visit. data : one row per visit with the
    ``subject`` and ``time`` columns and every variable of ``formula`` (default: ``time``).
    """
    return _fit(X, batch, data, subject=subject, time=time, formula=formula,
                categorical=categorical, random_slope=random_slope, sigma=sigma,
                niter=niter)[0]


def harmonize(X, batch, data: pd.DataFrame, **kwargs) -> tuple[np.ndarray, LongitudinalModel]:
    """Fit on ``X`` and return (harmonized X, model)."""
    model, out = _fit(X, batch, data, **kwargs)
    return out, model


def _fit(X, batch, data: pd.DataFrame, *, subject: str, time: str, formula: str | None = None,
         categorical=(), random_slope: bool = False, sigma: str = "reml",
         niter: int = 30) -> tuple[
             LongitudinalModel, np.ndarray]:
    from trialprep.harmonization.core import as_data_matrix

    Y, features = as_data_matrix(X)
    n = Y.shape[0]
    data = pd.DataFrame(data).reset_index(drop=True)
    if len(data) != n:
        raise HarmonizationError(f"data have {len(data)} rows, X has {n}")
    if sigma not in ("reml", "msr"):
        raise HarmonizationError(f"sigma must be 'reml' or 'msr', not {sigma!r}")
    for col in (subject, time):
        if col not in data.columns:
            raise HarmonizationError(f"column {col!r} not in the data")
    idx, levels = _batches(batch)
    counts = np.bincount(idx, minlength=len(levels))
    if len(levels) < 2:
        raise HarmonizationError("only one batch: there is no batch effect to estimate")
    if counts.min() < 2:
        lone = [lv for lv, c in zip(levels, counts, strict=True) if c < 2]
        raise HarmonizationError(f"batch(es) {lone} have a single visit; longitudinal ComBat "
                                 "needs at least 2 per batch")
    groups = data[subject].astype(str).to_numpy()
    if len(np.unique(groups)) == n:
        raise HarmonizationError("every subject has a single visit: the random effect cannot "
                                 "be estimated (use cross-sectional ComBat)")
    fixed = FixedEffects.fit(formula or time, data, categorical)
    design = _design(fixed, data, idx, len(levels))
    if np.linalg.matrix_rank(design) < design.shape[1]:
        _raise_confounded(fixed, data, idx, len(levels))
    Z = _random_design(data, time, random_slope)
    subject_design, fits = fit_reml(design, Z, groups, Y)

    beta = np.column_stack([f.beta for f in fits])
    blups = np.stack([f.blup for f in fits], axis=-1)                  # (S, q, F)
    predicted = design @ beta + np.einsum("nq,nqf->nf", Z, blups[subject_design.index])
    if sigma == "reml":
        sd = np.array([f.sigma for f in fits])
    else:
        resid = Y - predicted
        sd = np.sqrt(((resid - resid.mean(axis=0)) ** 2).mean(axis=0))
    contrasts = beta[-(len(levels) - 1):]                               # vs the first batch
    first = -(counts[1:] @ contrasts) / n
    batch_effects = np.vstack([first, contrasts + first])               # sum_i n_i g_i = 0
    Zs = (Y - predicted + batch_effects[idx]) / sd
    gamma_hat = np.vstack([Zs[idx == b].mean(axis=0) for b in range(len(levels))])
    delta_hat = np.vstack([Zs[idx == b].var(axis=0, ddof=1) for b in range(len(levels))])
    gamma_star, delta_star = longcombat_eb(counts, gamma_hat, delta_hat, niter)
    out = sd / np.sqrt(delta_star[idx]) * (Zs - gamma_star[idx]) + predicted \
        - batch_effects[idx]
    model = LongitudinalModel(
        features=features, batches=levels, fixed=fixed, time=time,
        random_slope=random_slope, subjects=subject_design.subjects.tolist(), beta=beta,
        theta=np.vstack([f.theta for f in fits]), sigma=sd, blups=blups,
        batch_effects=batch_effects, gamma_hat=gamma_hat, delta_hat=delta_hat,
        gamma_star=gamma_star, delta_star=delta_star, n_per_batch=counts.tolist(),
        settings={"sigma": sigma, "niter": niter, "subject": subject,
                  "formula": fixed.formula, "random": "intercept + slope" if random_slope
                  else "intercept"},
        provenance={"created": utc_now(), "trialprep": __version__,
                    "packages": package_versions(("numpy", "scipy", "pandas")),
                    "n_samples": n, "n_features": len(features), "n_subjects":
                    len(subject_design.subjects),
                    "training_sha256": sha256_json({
                        "data": sha256_array(Y), "batch": [levels[i] for i in idx],
                        "subjects": groups.tolist()})})
    return model, out


def apply(model: LongitudinalModel, X, batch, data: pd.DataFrame, *, subject: str) -> np.ndarray:
    """Harmonize visits (known batches) with a fitted model; see the module docstring."""
    from trialprep.harmonization.core import as_data_matrix

    Y, features = as_data_matrix(X, "new data")
    if Y.shape[1] != len(model.features):
        raise HarmonizationError(f"model has {len(model.features)} features, data has "
                                 f"{Y.shape[1]}")
    if isinstance(X, pd.DataFrame) and features != model.features:
        raise HarmonizationError("feature columns differ from the model's")
    data = pd.DataFrame(data).reset_index(drop=True)
    idx, levels = _batches(batch, model.batches)
    design = _design(model.fixed, data, idx, len(levels))
    Z = _random_design(data, model.time, model.random_slope)
    groups = data[subject].astype(str).to_numpy()
    known = {s: i for i, s in enumerate(model.subjects)}
    effects = np.zeros((len(groups), Z.shape[1], Y.shape[1]))
    is_known = np.array([g in known for g in groups])
    if is_known.any():
        effects[is_known] = model.blups[[known[g] for g in groups[is_known]]]
    if (~is_known).any():  # new subjects: their random effects from their own visits
        new_rows = np.flatnonzero(~is_known)
        labels, blups = blups_for(design[new_rows], Z[new_rows], groups[new_rows],
                                  Y[new_rows], model.feature_fits())
        where = {s: i for i, s in enumerate(labels)}
        effects[new_rows] = blups[[where[g] for g in groups[new_rows]]]
    predicted = design @ model.beta + np.einsum("nq,nqf->nf", Z, effects)
    be = model.batch_effects[idx]
    Zs = (Y - predicted + be) / model.sigma
    return model.sigma / np.sqrt(model.delta_star[idx]) * (Zs - model.gamma_star[idx]) \
        + predicted - be
