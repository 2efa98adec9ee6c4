"""Does harmonization remove the site and keep the biology? Three diagnostics."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def site_prediction_auc(X, batch, folds: int = 5, seed: int = 0, groups=None) -> float:
    """Cross-validated AUC of predicting batch from the features (one-vs-rest macro average
    for more than two batches). 0.5 is chance: after harmonization it should be near it.

    With repeated sessions give ``groups`` (the participant of each row): folds then keep a
    participant's sessions together, so the classifier cannot recognise the person instead
    of the scanner."""
    X = np.asarray(X, dtype=float)
    y = np.array([str(b) for b in batch])
    classes, counts = np.unique(y, return_counts=True)
    k = int(min(folds, counts.min()))
    if k < 2:
        raise ValueError("site-prediction AUC needs at least 2 samples per batch")
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
    if groups is None:
        cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        proba = cross_val_predict(clf, X, y, cv=cv, method="predict_proba")
    else:
        groups = np.asarray(groups)
        per_batch = pd.Series(groups).groupby(y).nunique().min()
        k = int(min(k, per_batch))
        if k < 2:
            raise ValueError("site-prediction AUC needs at least 2 participants per batch")
        cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        proba = cross_val_predict(clf, X, y, cv=cv, groups=groups, method="predict_proba")
    if classes.size == 2:
        return float(roc_auc_score(y == classes[1], proba[:, 1]))
    return float(roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=classes))


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
                      batch=None, features: Sequence[str] | None = None) -> pd.DataFrame:
    """OLS coefficients of each covariate on each feature (features x terms).

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
    names = list(features) if features is not None else [f"f{i}" for i in range(X.shape[1])]
    return pd.DataFrame(beta[1:1 + cov.shape[1]].T, index=names, columns=list(cov.columns))


def summarize(before, after, batch, covariates: pd.DataFrame | None = None,
              categorical: Sequence[str] = (), features: Sequence[str] | None = None,
              seed: int = 0, groups=None) -> dict:
    """Before/after diagnostics as a JSON-ready dict."""
    try:
        aucs = {"site_auc_before": site_prediction_auc(before, batch, seed=seed, groups=groups),
                "site_auc_after": site_prediction_auc(after, batch, seed=seed, groups=groups)}
    except ValueError as exc:  # too few participants per batch: the table is still valid
        aucs = {"site_auc_before": None, "site_auc_after": None, "site_auc_note": str(exc)}
    out = {
        **aucs,
        "batch_r2_before": batch_variance_explained(before, batch).tolist(),
        "batch_r2_after": batch_variance_explained(after, batch).tolist(),
        "features": list(features) if features is not None else None,
    }
    if covariates is not None and covariates.shape[1]:
        b = covariate_effects(before, covariates, categorical, batch=batch, features=features)
        a = covariate_effects(after, covariates, categorical, features=features)
        out["covariate_effects_before"] = b.to_dict()
        out["covariate_effects_after"] = a.to_dict()
    return out
