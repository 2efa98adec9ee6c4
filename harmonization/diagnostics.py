"""Does harmonization remove the site and keep the biology? Three diagnostics."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd


def site_prediction_auc(X, batch, folds: int = 5, seed: int = 0, groups=None,
                        harmonizer: Callable | None = None, repeats: int = 1) -> float:
    """Cross-validated AUC of predicting batch from the features (one-vs-rest macro average
    for more than two batches). 0.5 is chance: after harmonization it should be near it.

    With repeated sessions give ``groups`` (the participant of each row): folds then keep a
    participant's sessions together, so the classifier cannot recognise the person instead
    of the scanner.

    With ``harmonizer`` (see :func:`combat_in_folds`), ``X`` is the unharmonized data and each
    fold is harmonized by a model fitted on its training rows only. Cross-validating data
    that were harmonized as a whole leaks: every held-out participant sits opposite the
    mean of the rest of its site, and the AUC falls below chance (anti-learning).

    With few participants per batch one split of them into folds gives a noisy AUC:
    ``repeats`` > 1 averages it over that many random splits (seeds ``seed``, ``seed + 1``...);
    a split whose training fold the ``harmonizer`` cannot fit (e.g. a covariate confounded
    with batch within it) is left out, and the error is raised only if every split fails.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if repeats > 1:
        aucs, error = [], None
        for r in range(repeats):
            try:
                aucs.append(site_prediction_auc(X, batch, folds, seed + r, groups, harmonizer))
            except ValueError as exc:
                error = exc
        if not aucs:
            raise error
        return float(np.mean(aucs))
    X = np.asarray(X, dtype=float)
    y = np.array([str(b) for b in batch])
    classes, counts = np.unique(y, return_counts=True)
    k = int(min(folds, counts.min()))
    if k < 2:
        raise ValueError("site-prediction AUC needs at least 2 samples per batch")
    if groups is None:
        splits = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(X, y)
    else:
        groups = np.asarray(groups)
        per_batch = pd.Series(groups).groupby(y).nunique().min()
        k = int(min(k, per_batch))
        if k < 2:
            raise ValueError("site-prediction AUC needs at least 2 participants per batch")
        splits = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed).split(
            X, y, groups)
    proba = np.zeros((y.size, classes.size))
    for train, test in splits:
        X_train, X_test = harmonizer(train, test) if harmonizer else (X[train], X[test])
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
        clf.fit(X_train, y[train])
        proba[np.ix_(test, np.searchsorted(classes, clf.classes_))] = clf.predict_proba(X_test)
    if classes.size == 2:
        return float(roc_auc_score(y == classes[1], proba[:, 1]))
    return float(roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=classes))


def combat_in_folds(X, batch, covariates: pd.DataFrame | None = None,
                    **settings) -> Callable[[np.ndarray, np.ndarray], tuple]:
    """A ``harmonizer`` for :func:`site_prediction_auc`: ComBat (``core.fit`` settings)
    fitted on a fold's training rows, applied to them and to its held-out rows. A covariate
    that a fold's training rows leave fully determined by batch (every participant of each
    site one sex, with few per site) cannot be protected in that fold: it is left out of
    that fold's model, as a study with those sessions alone would have to."""
    from trialprep.harmonization import core
    from trialprep.harmonization.design import ConfoundedError

    X = np.asarray(X, dtype=float)
    batch = np.asarray([str(b) for b in batch])
    cov = None if covariates is None else covariates.reset_index(drop=True)
    settings = dict(settings)

    def run(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c, kw = cov, dict(settings)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. constant features within a fold
            while True:
                try:
                    h, model = core.harmonize(X[train], batch[train],
                                              None if c is None else c.iloc[train], **kw)
                    break
                except ConfoundedError as exc:
                    if c is None or not set(exc.covariates) & set(c.columns):
                        raise
                    c = c.drop(columns=exc.covariates)
                    kw["categorical"] = [k for k in kw.get("categorical", ()) or ()
                                         if k in c.columns]
                    kw["smooth"] = [k for k in kw.get("smooth", ()) or () if k in c.columns]
                    if c.shape[1] == 0:
                        c = None
            return h, core.apply(model, X[test], batch[test],
                                 None if c is None else c.iloc[test])

    return run


def longitudinal_in_folds(X, batch, data: pd.DataFrame, **settings) -> Callable[
        [np.ndarray, np.ndarray], tuple]:
    """A ``harmonizer`` for :func:`site_prediction_auc` with longitudinal ComBat
    (``longitudinal.fit`` settings: subject, time, formula...) fitted on a fold's training
    rows; the held-out participants' random effects come from their own visits. A fold
    whose training rows leave a variable of the formula fully determined by batch is fitted
    without the effects that hold it (see :func:`combat_in_folds`)."""
    from trialprep.harmonization import longitudinal
    from trialprep.harmonization.design import ConfoundedError
    from trialprep.harmonization.formula import parse_formula

    X = np.asarray(X, dtype=float)
    batch = np.asarray([str(b) for b in batch])
    data = data.reset_index(drop=True)

    def run(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        kw = dict(settings)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            while True:
                try:
                    h, model = longitudinal.harmonize(X[train], batch[train],
                                                      data.iloc[train], **kw)
                    break
                except ConfoundedError as exc:
                    formula = kw.get("formula") or kw.get("time", "time")
                    kept = [e for e in parse_formula(formula)
                            if not set(e) & set(exc.covariates)]
                    if not kept or len(kept) == len(parse_formula(formula)):
                        raise
                    kw["formula"] = " + ".join(":".join(e) for e in kept)
            return h, longitudinal.apply(model, X[test], batch[test], data.iloc[test],
                                         subject=settings["subject"])

    return run


def batch_variance_explained(X, batch) -> np.ndarray:
    """Per feature, the share of variance explained by batch (one-way ANOVA R^2)."""
    X = np.asarray(X, dtype=float)
    y = np.array([str(b) for b in batch])
    total = ((X - X.mean(axis=0)) ** 2).sum(axis=0)
    between = np.zeros(X.shape[1])
    for b in np.unique(y):
        rows = X[y == b]
        between += rows.shape[0] * (rows.mean(axis=0) - X.mean(axis=0)) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, between / total, 0.0)


def covariate_effects(X, covariates: pd.DataFrame, categorical: Sequence[str] = (),
                      batch=None, features: Sequence[str] | None = None
                      ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """OLS coefficients of each covariate on each feature and their standard errors
    (two features x terms frames).

    Give ``batch`` to estimate them with batch as a nuisance factor (the right model before
    harmonization); after harmonization the same coefficients should come out without it.
    """
    X = np.asarray(X, dtype=float)
    cov = pd.get_dummies(covariates.reset_index(drop=True), columns=list(categorical),
                         drop_first=True, dtype=float)
    parts = [np.ones((X.shape[0], 1)), cov.to_numpy(dtype=float)]
    if batch is not None:
        parts.append(pd.get_dummies(pd.Series([str(b) for b in batch]), drop_first=True,
                                    dtype=float).to_numpy())
    design = np.column_stack(parts)
    beta, *_ = np.linalg.lstsq(design, X, rcond=None)
    dof = max(design.shape[0] - np.linalg.matrix_rank(design), 1)
    sigma2 = ((X - design @ beta) ** 2).sum(axis=0) / dof
    unscaled = np.diag(np.linalg.pinv(design.T @ design))
    se = np.sqrt(np.outer(unscaled, sigma2))
    names = list(features) if features is not None else [f"f{i}" for i in range(X.shape[1])]
    terms = slice(1, 1 + cov.shape[1])
    return (pd.DataFrame(beta[terms].T, index=names, columns=list(cov.columns)),
            pd.DataFrame(se[terms].T, index=names, columns=list(cov.columns)))


def summarize(before, after, batch, covariates: pd.DataFrame | None = None,
              categorical: Sequence[str] = (), features: Sequence[str] | None = None,
              seed: int = 0, groups=None, settings: dict | None = None,
              repeats: int = 5, in_folds: Callable | None = None) -> dict:
    """Before/after diagnostics as a JSON-ready dict.

    Give the ComBat ``settings`` (``core.fit`` keywords) when ``after`` was fitted on these
    same samples: the AUC after is then cross-validated with ComBat fitted inside each fold
    (``site_auc_after``), and the leaky AUC of the harmonized data as a whole is kept as
    ``site_auc_after_in_sample`` (it falls below chance; see :func:`site_prediction_auc`).
    ``in_folds`` replaces that in-fold ComBat by another harmonizer (e.g.
    :func:`longitudinal_in_folds`). Each AUC is the mean over ``repeats`` random splits
    into participant-grouped folds. Covariate effects come with their standard errors."""
    try:
        aucs = {"site_auc_before": site_prediction_auc(before, batch, seed=seed, groups=groups,
                                                       repeats=repeats),
                "site_auc_after": site_prediction_auc(after, batch, seed=seed, groups=groups,
                                                      repeats=repeats)}
    except ValueError as exc:  # too few participants per batch: the table is still valid
        aucs = {"site_auc_before": None, "site_auc_after": None, "site_auc_note": str(exc)}
    if (settings is not None or in_folds is not None) and aucs["site_auc_before"] is not None:
        aucs["site_auc_after_in_sample"] = aucs["site_auc_after"]
        harmonizer = in_folds or combat_in_folds(before, batch, covariates,
                                                 categorical=categorical, **settings)
        try:
            aucs["site_auc_after"] = site_prediction_auc(
                before, batch, seed=seed, groups=groups, repeats=repeats,
                harmonizer=harmonizer)
        except ValueError as exc:  # a training fold ComBat cannot fit (e.g. a lone sample)
            aucs["site_auc_after"] = None
            aucs["site_auc_note"] = f"ComBat could not be fitted within the folds: {exc}"
    out = {
        **aucs,
        "batch_r2_before": batch_variance_explained(before, batch).tolist(),
        "batch_r2_after": batch_variance_explained(after, batch).tolist(),
        "features": list(features) if features is not None else None,
    }
    if covariates is not None and covariates.shape[1]:
        b, b_se = covariate_effects(before, covariates, categorical, batch=batch,
                                    features=features)
        a, a_se = covariate_effects(after, covariates, categorical, features=features)
        out["covariate_effects_before"], out["covariate_effects_before_se"] = (
            b.to_dict(), b_se.to_dict())
        out["covariate_effects_after"], out["covariate_effects_after_se"] = (
            a.to_dict(), a_se.to_dict())
    return out
