"""Linear mixed models with a per-subject random intercept (and slope), many features at once.

For each feature ``y = X beta + Z b + e`` with ``b_i ~ N(0, sigma^2 L L')`` per subject and
``e ~ N(0, sigma^2 I)``, fitted by restricted maximum likelihood as lme4 does (Bates et al.
2015, J Stat Softw 67(1), section 3): the profiled REML criterion

    d(theta) = log|I + L'Z'ZL| + log|X'V^-1 X| + (n - p) (1 + log(2 pi r^2 / (n - p)))

with ``V = I + Z L L' Z'`` and ``r^2`` the penalized residual sum of squares, minimized over
the relative covariance factor ``theta`` (the lower triangle of ``L``, diagonal >= 0). The
design is shared by all features, so the per-subject cross-products are computed once and
every evaluation of the criterion covers all features at once (each at its own theta),
costing O(features x subjects x q^2 x p) whatever the number of visits. A random intercept
(one theta) is minimized by a grid and golden-section search, larger random effects by a
projected Newton method; both keep the global optimum of two starts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SubjectDesign:
    """Per-subject cross-products of one design: everything a REML evaluation needs."""

    subjects: np.ndarray   # subject label per group
    index: np.ndarray      # group index of each row
    n: int                 # observations
    p: int                 # fixed-effect columns
    q: int                 # random effects per subject (1: intercept, 2: + slope)
    ZtZ: np.ndarray        # (S, q, q)
    ZtX: np.ndarray        # (S, q, p)
    XtX: np.ndarray        # (p, p)

    @classmethod
    def build(cls, X: np.ndarray, Z: np.ndarray, groups) -> SubjectDesign:
        labels, index = np.unique(np.asarray(groups).astype(str), return_inverse=True)
        S, q, p = labels.size, Z.shape[1], X.shape[1]
        ZtZ = np.zeros((S, q, q))
        ZtX = np.zeros((S, q, p))
        np.add.at(ZtZ, index, Z[:, :, None] * Z[:, None, :])
        np.add.at(ZtX, index, Z[:, :, None] * X[:, None, :])
        return cls(labels, index, X.shape[0], p, q, ZtZ, ZtX, X.T @ X)


def _tril_columnwise(q: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of a q x q lower triangle in column-major order, as lme4 orders theta."""
    cols, rows = np.triu_indices(q)
    return rows, cols


def theta_to_factor(theta: np.ndarray, q: int) -> np.ndarray:
    """The lower-triangular relative covariance factor L from lme4's theta."""
    L = np.zeros((q, q))
    L[_tril_columnwise(q)] = theta
    return L


def _bounds(q: int) -> list[tuple[float | None, None]]:
    rows, cols = _tril_columnwise(q)
    return [(0.0, None) if r == c else (None, None) for r, c in zip(rows, cols, strict=True)]


def _start(q: int) -> np.ndarray:
    rows, cols = _tril_columnwise(q)
    return (rows == cols).astype(float)  # lme4 starts at L = I


@dataclass
class FeatureFit:
    """One feature's REML fit."""

    theta: np.ndarray
    beta: np.ndarray       # (p,)
    sigma: float           # residual SD (REML)
    blup: np.ndarray       # (S, q) conditional modes of the random effects
    deviance: float


def fit_reml(X: np.ndarray, Z: np.ndarray, groups, Y: np.ndarray) -> tuple[
        SubjectDesign, list[FeatureFit]]:
    """REML fits of every column of ``Y`` (n x features) on the fixed design ``X`` and the
    random design ``Z`` (n x q) grouped by ``groups``. A random intercept alone (``Z`` a
    column of ones) takes the vectorized path :func:`_fit_intercepts`."""
    design = SubjectDesign.build(X, Z, groups)
    if design.q == 1 and np.all(Z == 1.0):
        return design, _fit_intercepts(design, X, Y)
    S = design.subjects.size
    Zty = np.zeros((S, design.q, Y.shape[1]))
    np.add.at(Zty, design.index, Z[:, :, None] * Y[:, None, :])
    Xty, yty = X.T @ Y, np.einsum("nf,nf->f", Y, Y)
    fits = []
    step = max(1, 4_000_000 // max(1, S * design.q * (design.p + design.q)))
    for start in range(0, Y.shape[1], step):  # features in chunks that fit in memory
        f = slice(start, start + step)
        fits += _fit_batched(design, Xty[:, f], Zty[:, :, f], yty[f])
    return design, fits


def blups_for(design_X: np.ndarray, Z: np.ndarray, groups, Y: np.ndarray,
              fits: list[FeatureFit]) -> tuple[np.ndarray, np.ndarray]:
    """Conditional modes of the random effects of the subjects in ``groups`` from their own
    rows, given each feature's fitted ``theta`` and ``beta`` (subjects not seen in the fit).
    Returns (subject labels, (S, q, features))."""
    d = SubjectDesign.build(design_X, Z, groups)
    out = np.zeros((d.subjects.size, d.q, Y.shape[1]))
    for f, fit in enumerate(fits):
        L = theta_to_factor(fit.theta, d.q)
        M = np.eye(d.q) + np.einsum("ji,sjk,kl->sil", L, d.ZtZ, L)
        resid = Y[:, f] - design_X @ fit.beta
        Ztr = np.zeros((d.subjects.size, d.q))
        np.add.at(Ztr, d.index, Z * resid[:, None])
        u = np.linalg.solve(M, (Ztr @ L)[..., None])[..., 0]
        out[:, :, f] = u @ L.T
    return d.subjects, out


class _InterceptCriterion:
    """The profiled REML criterion of a random-intercept model for all features at once,
    each at its own theta: with one random effect everything per subject is a scalar
    (M_i = 1 + theta^2 n_i), so one evaluation is a few array products."""

    def __init__(self, design: SubjectDesign, X: np.ndarray, Y: np.ndarray):
        self.d = design
        self.n_i = design.ZtZ[:, 0, 0]                        # (S,) visits per subject
        self.Xs = design.ZtX[:, 0, :]                         # (S, p) subject sums of X
        self.Ys = np.zeros((design.subjects.size, Y.shape[1]))
        np.add.at(self.Ys, design.index, Y)                   # (S, F) subject sums of y
        self.Xty, self.yty = X.T @ Y, np.einsum("nf,nf->f", Y, Y)

    def parts(self, theta: np.ndarray):
        t2 = theta**2                                        # (F,)
        W = t2[None, :] / (1.0 + np.outer(self.n_i, t2))     # (S, F) = theta^2 / M_i
        XVX = self.d.XtX[None] - np.einsum("sp,sf,sq->fpq", self.Xs, W, self.Xs)
        XVy = self.Xty.T - np.einsum("sp,sf->fp", self.Xs, W * self.Ys)
        yVy = self.yty - np.einsum("sf,sf->f", W, self.Ys**2)
        beta = np.linalg.solve(XVX, XVy[..., None])[..., 0]  # (F, p)
        r2 = yVy - np.einsum("fp,fp->f", beta, XVy)
        return W, XVX, beta, r2

    def __call__(self, theta: np.ndarray) -> np.ndarray:
        d = self.d
        _, XVX, _, r2 = self.parts(theta)
        logdet_m = np.log1p(np.outer(self.n_i, theta**2)).sum(axis=0)
        sign, logdet_x = np.linalg.slogdet(XVX)
        dof = d.n - d.p
        with np.errstate(invalid="ignore", divide="ignore"):
            dev = logdet_m + logdet_x + dof * (1 + np.log(2 * np.pi * r2 / dof))
        return np.where((sign > 0) & (r2 > 0), dev, np.inf)


def _fit_intercepts(design: SubjectDesign, X: np.ndarray, Y: np.ndarray,
                    tol: float = 1e-10) -> list[FeatureFit]:
    """Every feature's REML random-intercept fit: the global minimum over theta >= 0 on a
    grid (log-spaced, and 0), then golden-section search within the bracketing grid cell."""
    crit = _InterceptCriterion(design, X, Y)
    F = Y.shape[1]
    grid = np.concatenate([[0.0], np.logspace(-4, 3, 57)])
    values = np.stack([crit(np.full(F, g)) for g in grid])          # (G, F)
    best = np.argmin(values, axis=0)
    lo = grid[np.maximum(best - 1, 0)]
    hi = grid[np.minimum(best + 1, grid.size - 1)]
    golden = (np.sqrt(5) - 1) / 2
    a, b = lo.copy(), hi.copy()
    c, e = b - golden * (b - a), a + golden * (b - a)
    fc, fe = crit(c), crit(e)
    while np.max((b - a) / np.maximum(1.0, np.abs(b))) > tol:
        left = fc <= fe  # the minimum lies in [a, e]
        b = np.where(left, e, b)
        a = np.where(left, a, c)
        e_new = np.where(left, c, a + golden * (b - a))
        c_new = np.where(left, b - golden * (b - a), e)
        fe_new = np.where(left, fc, np.nan)
        fc_new = np.where(left, np.nan, fe)
        need_c, need_e = left, ~left
        if need_c.any():
            fc_new = np.where(need_c, crit(c_new), fc_new)
        if need_e.any():
            fe_new = np.where(need_e, crit(e_new), fe_new)
        c, e, fc, fe = c_new, e_new, fc_new, fe_new
    theta = (a + b) / 2
    on_grid = grid[best]
    theta = np.where(crit(on_grid) < crit(theta), on_grid, theta)  # e.g. theta = 0 itself
    W, _, beta, r2 = crit.parts(theta)
    sigma = np.sqrt(r2 / (design.n - design.p))
    resid_sums = crit.Ys - crit.Xs @ beta.T                     # (S, F): Z'(y - X beta)
    blup = W * resid_sums                                        # b_i = theta^2 / M_i * sum
    dev = crit(theta)
    return [FeatureFit(np.array([theta[f]]), beta[f], float(sigma[f]), blup[:, [f]],
                       float(dev[f])) for f in range(F)]


def _inverse_and_logdet(M: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inverse, log-determinant, determinant sign) of a stack of small SPD matrices; 1x1 and
    2x2 in closed form (the common cases: random intercept, and intercept + slope)."""
    q = M.shape[-1]
    if q == 1:
        det = M[..., 0, 0]
        return 1.0 / M, np.log(np.abs(det)), np.sign(det)
    if q == 2:
        a, b, c, e = M[..., 0, 0], M[..., 0, 1], M[..., 1, 0], M[..., 1, 1]
        det = a * e - b * c
        inv = np.empty_like(M)
        inv[..., 0, 0], inv[..., 0, 1], inv[..., 1, 0], inv[..., 1, 1] = e, -b, -c, a
        inv /= det[..., None, None]
        return inv, np.log(np.abs(det)), np.sign(det)
    sign, logdet = np.linalg.slogdet(M)
    return np.linalg.inv(M), logdet, sign


class _BatchCriterion:
    """The profiled REML criterion of every feature at its own theta (rows of ``Theta``),
    evaluated in one pass of batched small-matrix products (features x subjects)."""

    def __init__(self, design: SubjectDesign, Xty: np.ndarray, Zty: np.ndarray,
                 yty: np.ndarray):
        self.d, self.Xty, self.yty = design, Xty, yty
        self.ZtyT = np.ascontiguousarray(np.moveaxis(Zty, 2, 0))    # (F, S, q)
        self.rows, self.cols = _tril_columnwise(design.q)

    def restricted(self, features: np.ndarray) -> _BatchCriterion:
        """The criterion of some of the features (same design)."""
        out = object.__new__(_BatchCriterion)
        out.d, out.rows, out.cols = self.d, self.rows, self.cols
        out.Xty, out.yty, out.ZtyT = (self.Xty[:, features], self.yty[features],
                                      self.ZtyT[features])
        return out

    def factors(self, Theta: np.ndarray) -> np.ndarray:
        L = np.zeros((Theta.shape[0], self.d.q, self.d.q))
        L[:, self.rows, self.cols] = Theta
        return L

    def solve(self, Theta: np.ndarray):
        d = self.d
        L = self.factors(Theta)[:, None]                            # (F, 1, q, q)
        Lt = np.swapaxes(L, -1, -2)
        M = np.eye(d.q) + Lt @ d.ZtZ[None] @ L                       # (F, S, q, q)
        Kinv, logdet_m, sign_m = _inverse_and_logdet(M)
        P = Lt @ d.ZtX[None]                                         # (F, S, q, p)
        Qy = (Lt @ self.ZtyT[..., None])[..., 0]                     # (F, S, q)
        KP = Kinv @ P
        KQ = (Kinv @ Qy[..., None])[..., 0]
        XVX = d.XtX[None] - (np.swapaxes(P, -1, -2) @ KP).sum(axis=1)
        XVy = self.Xty.T - (np.swapaxes(P, -1, -2) @ KQ[..., None])[..., 0].sum(axis=1)
        yVy = self.yty - (Qy * KQ).sum(axis=(1, 2))
        return L[:, 0], (logdet_m, sign_m), Kinv, P, Qy, XVX, XVy, yVy

    def __call__(self, Theta: np.ndarray) -> np.ndarray:
        d = self.d
        _, (logdet_m, sign_m), _, _, _, XVX, XVy, yVy = self.solve(Theta)
        sign_x, logdet_x = np.linalg.slogdet(XVX)
        beta = np.linalg.solve(XVX, XVy[..., None])[..., 0]
        r2 = yVy - np.einsum("fp,fp->f", beta, XVy)
        dof = d.n - d.p
        with np.errstate(invalid="ignore", divide="ignore"):
            dev = logdet_m.sum(axis=1) + logdet_x + dof * (1 + np.log(2 * np.pi * r2 / dof))
        ok = (sign_m > 0).all(axis=1) & (sign_x > 0) & (r2 > 0)
        return np.where(ok, dev, np.inf)

    def fits(self, Theta: np.ndarray) -> list[FeatureFit]:
        d = self.d
        L, _, Kinv, P, Qy, XVX, XVy, yVy = self.solve(Theta)
        beta = np.linalg.solve(XVX, XVy[..., None])[..., 0]
        r2 = yVy - np.einsum("fp,fp->f", beta, XVy)
        sigma = np.sqrt(r2 / (d.n - d.p))
        u = (Kinv @ (Qy - (P @ beta[:, None, :, None])[..., 0])[..., None])[..., 0]
        b = (L[:, None] @ u[..., None])[..., 0]
        dev = self(Theta)
        return [FeatureFit(Theta[f].copy(), beta[f], float(sigma[f]), b[f], float(dev[f]))
                for f in range(Theta.shape[0])]


def _fit_batched(design: SubjectDesign, Xty: np.ndarray, Zty: np.ndarray,
                 yty: np.ndarray, iterations: int = 100) -> list[FeatureFit]:
    """REML fits of many features with random effects of any dimension, all at once: a
    projected Newton method per feature on central-difference gradients and Hessians in
    which each evaluation moves every feature (k parameters: 1 + 2k + k(k-1)/2 evaluations
    an iteration, whatever the number of features), a Levenberg shift where the Hessian is
    not positive definite, backtracking, and lme4's bounds (diagonal of L >= 0; a parameter
    at its bound stays there while the gradient points out). From lme4's start (L = I) and
    from one near the boundary; each feature keeps the better optimum."""
    crit = _BatchCriterion(design, Xty, Zty, yty)
    bounded = crit.rows == crit.cols
    best_theta, best_dev = None, None
    for scale in (1.0, 0.1):
        Theta = np.tile(_start(design.q) * scale, (Xty.shape[1], 1))
        Theta, dev = _newton(crit, Theta, bounded, iterations)
        if best_theta is None:
            best_theta, best_dev = Theta, dev
        else:
            better = dev < best_dev
            best_theta[better], best_dev[better] = Theta[better], dev[better]
    return crit.fits(best_theta)


def _newton(crit: _BatchCriterion, Theta: np.ndarray, bounded: np.ndarray,
            iterations: int) -> tuple[np.ndarray, np.ndarray]:
    F, k = Theta.shape
    dev = crit(Theta)
    active = np.ones(F, bool)
    for _ in range(iterations):
        if not active.any():
            break
        idx = np.flatnonzero(active)
        T, f0 = Theta[idx], dev[idx]
        sub = crit.restricted(idx)
        h = 1e-4 * (1.0 + np.abs(T))
        plus, minus = np.empty((k, T.shape[0])), np.empty((k, T.shape[0]))
        for j in range(k):
            e = np.zeros(k)
            e[j] = 1.0
            plus[j], minus[j] = sub(T + h * e), sub(T - h * e)
        g = ((plus - minus) / (2 * h.T)).T                           # (A, k)
        H = np.empty((T.shape[0], k, k))
        for i in range(k):
            H[:, i, i] = (plus[i] - 2 * f0 + minus[i]) / h[:, i] ** 2
            for j in range(i + 1, k):
                e = np.zeros(k)
                e[i], e[j] = 1.0, 1.0
                fij = sub(T + h * e)
                H[:, i, j] = H[:, j, i] = (fij - plus[i] - plus[j] + f0) / (h[:, i] * h[:, j])
        # at a bound with the gradient pointing outwards: held there (not in the system)
        held = bounded[None, :] & (T <= 0.0) & (g > 0)
        g = np.where(held, 0.0, g)
        H = np.where(held[:, :, None] | held[:, None, :], 0.0, H)
        H[:, np.arange(k), np.arange(k)] += np.where(held, 1.0, 0.0)
        eig_min = np.linalg.eigvalsh(H)[:, 0]
        shift = np.where(eig_min < 1e-8, 1e-8 - eig_min + 1e-3 * np.abs(H).max(axis=(1, 2)),
                         0.0)
        step = -np.linalg.solve(H + shift[:, None, None] * np.eye(k), g[..., None])[..., 0]
        alpha, accepted = np.ones(T.shape[0]), np.zeros(T.shape[0], bool)
        new_T, new_f = T.copy(), f0.copy()
        for _ in range(30):  # backtracking until the criterion decreases
            trial = T + alpha[:, None] * step
            trial = np.where(bounded[None, :], np.maximum(trial, 0.0), trial)
            ft = sub(trial)
            ok = ~accepted & (ft <= f0)
            new_T[ok], new_f[ok] = trial[ok], ft[ok]
            accepted |= ok
            if accepted.all():
                break
            alpha = np.where(accepted, alpha, alpha / 2)
        moved = np.abs(new_T - T).max(axis=1)
        Theta[idx], dev[idx] = new_T, new_f
        converged = (moved < 1e-10 * (1 + np.abs(T).max(axis=1))) | ~accepted \
            | (f0 - new_f < 1e-12)
        active[idx[converged]] = False
    return Theta, dev
