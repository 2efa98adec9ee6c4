"""Empirical Bayes estimators of ComBat's batch effects (Johnson, Li & Rabinovic 2007).

Each function works on one batch's summary of the standardized data: sample count ``n``,
per-feature mean ``m`` and centred sum of squares ``css``. The residual sum of squares
around any location g is then ``css + n (m - g)^2``, exact and O(features), so no
estimator needs the samples x features matrix. Formulas follow sva/neuroCombat.
"""

from __future__ import annotations

import numpy as np


def inverse_gamma_prior(delta_hat: np.ndarray) -> tuple[float, float]:
    """Method-of-moments hyper-parameters (a, b) of the inverse-gamma prior on variances."""
    m = float(np.mean(delta_hat))
    s2 = float(np.var(delta_hat, ddof=1))
    return (2 * s2 + m**2) / s2, (m * s2 + m**3) / s2


def postmean(g_hat, g_bar, n, d_star, t2):
    return (t2 * n * g_hat + d_star * g_bar) / (t2 * n + d_star)


def postvar(sum2, n, a, b):
    return (0.5 * sum2 + b) / (n / 2.0 + a - 1.0)


def parametric(
    n: int, m: np.ndarray, css: np.ndarray, g_hat: np.ndarray, d_hat: np.ndarray,
    g_bar: float, t2: float, a: float, b: float, conv: float = 1e-4, max_iter: int = 1000,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Iterate the conditional posterior means of (gamma, delta) to convergence.

    Returns (gamma*, delta*, iterations). Stops when the largest relative change of either
    falls below ``conv``, as sva's ``it.sol`` does.
    """
    g_old, d_old = g_hat.copy(), d_hat.copy()
    g_new, d_new = g_old, d_old
    for it in range(1, max_iter + 1):
        g_new = postmean(g_hat, g_bar, n, d_old, t2)
        d_new = postvar(css + n * (m - g_new) ** 2, n, a, b)
        with np.errstate(divide="ignore", invalid="ignore"):
            change = max(np.max(np.abs(g_new - g_old) / g_old),
                         np.max(np.abs(d_new - d_old) / d_old))
        g_old, d_old = g_new, d_new
        if not change > conv:  # also stops on NaN, as sva and neuroCombat do
            return g_new, d_new, it
    return g_new, d_new, max_iter


def parametric_lagged(n: int, g_hat: np.ndarray, d_hat: np.ndarray, g_bar: float, t2: float,
                      a: float, b: float, niter: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """longCombat's variant: ``niter`` fixed iterations in which gamma* is updated from the
    previous delta* and delta* from the previous gamma*, after a first step from the
    estimates (Beer et al. 2020's R code)."""
    css = (n - 1) * d_hat
    g = postmean(g_hat, g_bar, n, d_hat, t2)
    d = postvar(css + n * (g_hat - g) ** 2, n, a, b)
    for _ in range(niter):
        g, d = postmean(g_hat, g_bar, n, d, t2), postvar(css + n * (g_hat - g) ** 2, n, a, b)
    return g, d


def parametric_mean_only(g_hat: np.ndarray, g_bar: float, t2: float) -> np.ndarray:
    """Posterior mean of gamma with unit variance (mean-only ComBat)."""
    return postmean(g_hat, g_bar, 1, 1, t2)


def nonparametric(
    n: int, m: np.ndarray, css: np.ndarray, g_hat: np.ndarray, d_hat: np.ndarray,
    chunk_bytes: int = 1 << 26,
) -> tuple[np.ndarray, np.ndarray]:
    """Non-parametric prior: each feature's (gamma, delta) is the likelihood-weighted mean of
    the other features' estimates.

    The likelihood of feature f's data under feature j's (g_j, d_j) is
    ``(2 pi d_j)^(-n/2) exp(-sum_k (x_fk - g_j)^2 / (2 d_j))``. neuroCombat evaluates it directly
    and underflows to 0/0 = NaN at a few hundred samples per batch; here it is evaluated in log
    space and normalised by its row maximum: the same weights, without underflow. Work is
    chunked over features to bound memory (features^2 terms per batch).
    """
    p = m.size
    log_norm = -0.5 * n * np.log(2 * np.pi * d_hat)
    neg_inv2d = -1.0 / (2 * d_hat)
    gamma_star = np.empty(p)
    delta_star = np.empty(p)
    rows = max(1, int(chunk_bytes // (8 * max(p, 1) * 2)))
    for start in range(0, p, rows):
        stop = min(p, start + rows)
        f = slice(start, stop)
        loglh = np.subtract.outer(m[f], g_hat)  # the only allocation per chunk
        np.square(loglh, out=loglh)
        loglh *= n
        loglh += css[f, None]
        loglh *= neg_inv2d
        loglh += log_norm
        loglh[np.arange(stop - start), np.arange(start, stop)] = -np.inf  # leave f itself out
        loglh -= loglh.max(axis=1, keepdims=True)
        w = np.exp(loglh, out=loglh)
        wsum = w.sum(axis=1)
        gamma_star[f] = (w @ g_hat) / wsum
        delta_star[f] = (w @ d_hat) / wsum
    return gamma_star, delta_star
