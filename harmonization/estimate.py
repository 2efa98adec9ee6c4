"""ComBat's estimates from per-batch statistics: standardization, batch effects, shrinkage.

Everything ComBat estimates follows exactly from the least-squares coefficients of the
design and, per batch, the mean and centred sum of squares of ``Z = Y - C beta`` (the data
minus the protected covariates' effects). :func:`model_from_statistics` turns those into a
:class:`ComBatModel`; the pooled fit (``core.fit``) computes them in one pass over the data,
federated ComBat (``federated.combine``) from the sites' aggregates.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from trialprep import __version__
from trialprep.harmonization import eb
from trialprep.harmonization.design import CovariateTerm, HarmonizationError
from trialprep.harmonization.model import ComBatModel
from trialprep.provenance import package_versions, utc_now


@dataclass
class BatchStatistics:
    """What ComBat's estimates need, for ``nb`` batches, ``q`` covariate columns, ``p``
    features."""

    levels: list[str]
    counts: np.ndarray         # (nb,)
    ref: int | None            # reference batch index
    terms: list[CovariateTerm]
    B: np.ndarray              # (nb + q, p) least-squares coefficients of the design
    mean_z: np.ndarray         # (nb, p) per-batch mean of Y - C beta_cov
    css_z: np.ndarray          # (nb, p) per-batch centred sum of squares of it
    constant: np.ndarray       # (p,) features constant in the data


def batch_design(idx: np.ndarray, n_batch: int, ref: int | None) -> np.ndarray:
    D = np.zeros((idx.size, n_batch))
    D[np.arange(idx.size), idx] = 1.0
    if ref is not None:
        D[:, ref] = 1.0  # reference batch acts as intercept (as neuroCombat/sva)
    return D


def pooled_variance(B: np.ndarray, counts: np.ndarray, mean_z: np.ndarray, css_z: np.ndarray,
                    ref: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(pooled residual variance, grand mean) per feature: around the design's fit, over
    all samples (or the reference batch's)."""
    nb = counts.size
    if ref is not None:
        var = (css_z[ref] + counts[ref] * (mean_z[ref] - B[ref]) ** 2) / counts[ref]
        return var, B[ref]
    var = (css_z + counts[:, None] * (mean_z - B[:nb]) ** 2).sum(axis=0) / counts.sum()
    return var, (counts / counts.sum()) @ B[:nb]


def parallel(func, items) -> list:
    """Run ``func`` over ``items`` on up to 4 threads (NumPy releases the GIL)."""
    workers = min(4, os.cpu_count() or 1, max(1, len(items)))
    if workers == 1:
        return [func(i) for i in items]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(func, items))


def model_from_statistics(stats: BatchStatistics, features: list[str], *,
                          parametric: bool = True, eb_: bool = True, mean_only: bool = False,
                          n_knots: int = 5) -> ComBatModel:
    """ComBat's location/scale model (sva/neuroCombat's estimators) from ``stats``."""
    levels, counts, ref, B = stats.levels, stats.counts, stats.ref, stats.B
    nb, p = counts.size, B.shape[1]
    var_pooled, grand_mean = pooled_variance(B, counts, stats.mean_z, stats.css_z, ref)
    beta_cov = B[nb:]
    # Constant features, and features fully explained by the design, pass through unchanged.
    constant = stats.constant
    degenerate = ~constant & (np.sqrt(var_pooled) <= 1e-12 * np.abs(grand_mean))
    if degenerate.any():
        warnings.warn(
            f"{int(degenerate.sum())} feature(s) fully explained by batch and covariates (zero "
            "residual variance) are passed through unchanged", stacklevel=3)
    active = ~constant & ~degenerate & (var_pooled > 0)
    if not active.any():
        raise HarmonizationError("no feature varies: nothing to harmonize")
    act = np.flatnonzero(active)
    pa = act.size
    grand_mean, beta_cov, var_pooled = grand_mean[act], beta_cov[:, act], var_pooled[act]
    sd = np.sqrt(var_pooled)
    mean_b = (stats.mean_z[:, act] - grand_mean) / sd  # per-batch mean of standardized data
    css_b = stats.css_z[:, act] / var_pooled

    # Batch-design row of each batch; Bd' s summed from the batch means.
    rows_design = batch_design(np.arange(nb), nb, ref)
    Bd_s = rows_design.T @ (counts[:, None] * mean_b)
    gamma_hat = np.linalg.solve(rows_design.T @ (counts[:, None] * rows_design), Bd_s)
    if mean_only:
        delta_hat = np.ones((nb, pa))
    else:
        delta_hat = css_b / (counts[:, None] - 1)
        delta_hat[delta_hat == 0] = 1.0  # as sva/neuroCombat
    gamma_bar = gamma_hat.mean(axis=1)
    t2 = gamma_hat.var(axis=1, ddof=1)

    gamma_star = np.empty_like(gamma_hat)
    delta_star = np.empty_like(delta_hat)
    iterations = [0] * nb

    def estimate(b: int) -> None:
        if b == ref:
            return  # the reference batch is not adjusted (set below)
        if not eb_ or pa < 2:  # one feature: no prior across features to shrink towards
            gamma_star[b], delta_star[b] = gamma_hat[b], delta_hat[b]
        elif parametric:
            if mean_only:
                gamma_star[b] = eb.parametric_mean_only(gamma_hat[b], gamma_bar[b], t2[b])
                delta_star[b] = 1.0
            else:
                a, bb = eb.inverse_gamma_prior(delta_hat[b])
                gamma_star[b], delta_star[b], iterations[b] = eb.parametric(
                    int(counts[b]), mean_b[b], css_b[b], gamma_hat[b], delta_hat[b],
                    gamma_bar[b], t2[b], a, bb)
        else:
            gamma_star[b], delta_star[b] = eb.nonparametric(
                int(counts[b]), mean_b[b], css_b[b], gamma_hat[b], delta_hat[b])

    parallel(estimate, range(nb))
    if ref is not None:
        gamma_star[ref], delta_star[ref] = 0.0, 1.0

    provenance = {
        "created": utc_now(), "trialprep": __version__,
        "packages": package_versions(("numpy", "scipy", "pandas")),
        "n_samples": int(counts.sum()), "n_features": p,
    }
    if eb_ and pa < 2:
        provenance["empirical_bayes"] = ("not applied: a single feature has no prior across "
                                         "features (per-batch estimates used as they are)")
    return ComBatModel(
        provenance=provenance, features=features, active=active, batches=levels,
        ref_batch=levels[ref] if ref is not None else None, terms=stats.terms,
        n_per_batch=counts.tolist(), grand_mean=grand_mean,
        beta_cov=beta_cov, var_pooled=var_pooled, gamma_hat=gamma_hat, delta_hat=delta_hat,
        gamma_star=gamma_star, delta_star=delta_star,
        settings={"parametric": parametric, "eb": eb_, "mean_only": mean_only,
                  "n_knots": n_knots, "eb_iterations": iterations},
    )
