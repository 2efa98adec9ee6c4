"""ComBat's numerical core: ``fit`` a model on arrays, ``apply`` it to any samples.

Arrays are samples x features. Batch labels are any hashable values (compared as strings).
The model reproduces neuroCombat/sva ComBat on its training data in every mode (parametric /
non-parametric EB, no EB, mean-only, reference batch, protected covariates) and adds
nonlinear (natural spline) covariate terms and application to new samples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from trialprep.harmonization.design import (
    HarmonizationError,
    _natural_key,
    build_terms,
    check_not_confounded,
    covariate_matrix,
    factorize_as_str,
)
from trialprep.harmonization.estimate import (
    BatchStatistics,
    batch_design,
    model_from_statistics,
    parallel,
    pooled_variance,
)
from trialprep.harmonization.model import ComBatModel
from trialprep.provenance import sha256_array, sha256_json


def as_data_matrix(X, name: str = "data", check_finite: bool = True
                   ) -> tuple[np.ndarray, list[str]]:
    """Validate a samples x features table and return (float64 array, feature names).
    ``check_finite=False`` leaves the NaN/inf check to the caller (see :func:`require_finite`)."""
    if isinstance(X, pd.DataFrame):
        non_numeric = [str(c) for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])
                       or pd.api.types.is_bool_dtype(X[c])]
        if non_numeric:
            raise HarmonizationError(
                f"{name} has non-numeric feature column(s) {non_numeric[:5]}"
                f"{' ...' if len(non_numeric) > 5 else ''}; pass them as covariates or drop them"
            )
        features = [str(c) for c in X.columns]
        arr = X.to_numpy(dtype=float)
    else:
        try:
            arr = np.asarray(X, dtype=float)
        except (TypeError, ValueError) as exc:
            raise HarmonizationError(f"{name} is not numeric: {exc}") from None
        if arr.ndim != 2:
            raise HarmonizationError(f"{name} must be 2-D (samples x features), got {arr.ndim}-D")
        features = [f"f{i}" for i in range(arr.shape[1])]
    if check_finite:
        require_finite(arr, features, name)
    return arr, features


def require_finite(arr: np.ndarray, features: list[str], name: str = "data") -> None:
    """Raise, naming the first offending sample and feature, if ``arr`` has NaN or inf."""
    bad = ~np.isfinite(arr)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise HarmonizationError(
            f"{name} has {int(bad.sum())} missing or non-finite value(s) in "
            f"{int(bad.any(axis=0).sum())} feature(s) (first: sample {i}, feature "
            f"{features[j]!r}); impute or drop them before harmonizing"
        )


def _as_frame(covariates, n: int) -> pd.DataFrame | None:
    if covariates is None:
        return None
    df = pd.DataFrame(covariates).reset_index(drop=True)
    if len(df) != n:
        raise HarmonizationError(f"covariates have {len(df)} rows, data has {n}")
    return df


def _batch_index(batch, levels: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    codes, names = factorize_as_str(batch)
    if any(b in ("nan", "None", "") for b in names):
        raise HarmonizationError("batch labels contain missing values")
    if levels is None:
        levels = sorted(set(names), key=_natural_key)
    unseen = sorted(set(names) - set(levels))
    if unseen:
        raise HarmonizationError(
            f"batch(es) {unseen} were not seen when the model was fitted "
            f"(known: {levels}); ComBat cannot estimate an effect for an unseen batch"
        )
    lookup = {b: i for i, b in enumerate(levels)}
    return np.array([lookup[b] for b in names], dtype=int)[codes], levels


def _blas_single_threaded():
    """ComBat parallelises over batches in threads of its own (and hashes in another), so
    the BLAS library's threads would only compete with them: one BLAS thread while we run."""
    return threadpool_limits(limits=1, user_api="blas")


def fit(X, batch, covariates=None, **kwargs) -> ComBatModel:
    """Estimate ComBat's location/scale batch effects (see :func:`_fit` for parameters)."""
    with _blas_single_threaded():
        model, _, _, _, seal = _fit(X, batch, covariates, **kwargs)
        seal()
    return model


def _fit(
    X, batch, covariates=None, *, categorical: Sequence[str] = (), smooth: Sequence[str] = (),
    n_knots: int = 5, parametric: bool = True, eb_: bool = True, mean_only: bool = False,
    ref_batch=None,
) -> tuple[ComBatModel, np.ndarray, np.ndarray, np.ndarray, Callable[[], None]]:
    """Estimate ComBat's location/scale batch effects.

    Parameters
    ----------
    X : samples x features array or DataFrame (numeric, finite).
    batch : one label per sample.
    covariates : DataFrame (or mapping) of protected covariates, one row per sample.
        Columns named in ``categorical`` are one-hot encoded, those in ``smooth`` get a
        natural cubic spline with ``n_knots`` knots at quantiles; others are linear.
    parametric, eb_, mean_only, ref_batch : ComBat's modes (``eb_=False`` uses the batch
        estimates without shrinkage; ``ref_batch`` leaves that batch unchanged and maps the
        others onto it).

    Returns
    -------
    (ComBatModel, applied to data with :func:`apply`; the validated data, batch indices
    and covariate matrix, so :func:`harmonize` need not validate twice; and ``seal``, to be
    called before the model leaves: it waits for the training-data checksum, computed in a
    thread alongside the fit and the adjustment, and writes the provenance)
    """
    Y, features = as_data_matrix(X, check_finite=False)  # NaN/inf show up in the statistics
    n, p = Y.shape
    idx, levels = _batch_index(batch)
    if idx.size != n:
        raise HarmonizationError(f"{idx.size} batch labels for {n} samples")
    counts = np.bincount(idx, minlength=len(levels))
    if len(levels) < 2:
        raise HarmonizationError(
            f"only one batch ({levels[0]!r}): there is no batch effect to estimate")
    small = [lv for lv, c in zip(levels, counts, strict=True) if c < 2]
    if small:
        raise HarmonizationError(
            f"batch(es) {small} have a single sample; ComBat needs at least 2 per batch to "
            "estimate a scale effect (merge or drop them)")
    ref = None
    if ref_batch is not None:
        if str(ref_batch) not in levels:
            raise HarmonizationError(f"reference batch {ref_batch!r} not among batches {levels}")
        ref = levels.index(str(ref_batch))

    cov_df = _as_frame(covariates, n)
    terms = build_terms(cov_df, categorical, smooth, n_knots)
    C = covariate_matrix(terms, cov_df, n)
    check_not_confounded(batch_design(idx, len(levels), None), terms, C)
    design = np.column_stack([batch_design(idx, len(levels), ref), C])

    # The training-data checksum (provenance) is computed alongside the fit (see ``seal``).
    hasher = ThreadPoolExecutor(1)
    data_hash = hasher.submit(sha256_array, Y)
    try:
        # Location/scale standardisation: one least-squares fit for all features.
        nb = len(levels)
        B = np.linalg.solve(design.T @ design, design.T @ Y)
        beta_cov = B[nb:]
        members = [np.flatnonzero(idx == b) for b in range(nb)]
        # One pass over the data: per-batch mean and centred sum of squares of Z = Y - C beta.
        # Everything else (pooled variance, standardized batch effects) follows exactly from them.
        mean_z = np.empty((nb, p))
        css_z = np.empty((nb, p))

        def batch_stats(b: int) -> None:
            # Row chunks small enough to stay in cache; chunk means and centred sums of squares
            # are merged exactly (Chan, Golub & LeVeque 1983).
            mean, m2, seen = np.zeros(p), np.zeros(p), 0
            for rows in _row_chunks(members[b], p):
                Zc = Y[rows] - C[rows] @ beta_cov if C.shape[1] else Y[rows].copy()
                m_c = Zc.mean(axis=0)
                Zc -= m_c
                n_c = Zc.shape[0]
                delta = m_c - mean
                total = seen + n_c
                mean += delta * (n_c / total)
                m2 += np.einsum("ij,ij->j", Zc, Zc) + delta * delta * (seen * n_c / total)
                seen = total
            mean_z[b], css_z[b] = mean, m2

        parallel(batch_stats, range(nb))
        if not (np.isfinite(css_z).all() and np.isfinite(mean_z).all()):
            require_finite(Y, features)  # NaN/inf propagate into the statistics: name them
        constant = _constant_features(Y, B, counts, mean_z, css_z, ref)
        stats = BatchStatistics(levels=levels, counts=counts, ref=ref, terms=terms, B=B,
                                mean_z=mean_z, css_z=css_z, constant=constant)
        model = model_from_statistics(stats, features, parametric=parametric, eb_=eb_,
                                      mean_only=mean_only, n_knots=n_knots)
        provenance = model.provenance
    except BaseException:  # no checksum thread left behind
        hasher.shutdown(wait=False, cancel_futures=True)
        raise

    def seal() -> None:
        hasher.shutdown()  # waits for the checksum
        provenance["training_sha256"] = sha256_json({
            "data": data_hash.result(), "batch": [levels[i] for i in idx],
            "covariates": None if cov_df is None else sha256_array(
                pd.util.hash_pandas_object(cov_df, index=False).to_numpy())})

    return model, Y, idx, C, seal


def _constant_features(Y: np.ndarray, B: np.ndarray, counts: np.ndarray, mean_z: np.ndarray,
                       css_z: np.ndarray, ref: int | None) -> np.ndarray:
    """Features constant in the data (exactly). Only features whose pooled variance is ~0 can
    be: only those are compared value by value."""
    var_pooled, grand_mean = pooled_variance(B, counts, mean_z, css_z, ref)
    tiny = np.flatnonzero(np.sqrt(var_pooled) <= 1e-12 * np.abs(grand_mean) + 1e-300)
    constant = np.zeros(Y.shape[1], bool)
    constant[tiny] = (Y[:, tiny] == Y[0, tiny]).all(axis=0)
    return constant


def apply(model: ComBatModel, X, batch, covariates=None) -> np.ndarray:
    """Remove the fitted batch effects from samples of known batches (samples x features).

    Constant features seen at fit time pass through unchanged; samples of the reference
    batch are returned unchanged.
    """
    Y, features = as_data_matrix(X, "new data")
    n, p = Y.shape
    if p != len(model.features):
        raise HarmonizationError(f"model has {len(model.features)} features, data has {p}")
    if isinstance(X, pd.DataFrame) and features != model.features:
        missing = sorted(set(model.features) - set(features))
        raise HarmonizationError(
            f"feature columns differ from the model's (missing: {missing[:5]})" if missing
            else "feature columns are in a different order than the model's")
    idx, levels = _batch_index(batch, model.batches)
    if idx.size != n:
        raise HarmonizationError(f"{idx.size} batch labels for {n} samples")
    C = covariate_matrix(model.terms, _as_frame(covariates, n), n)
    with _blas_single_threaded():
        return _adjust(model, Y, idx, C)


def _adjust(model: ComBatModel, Y: np.ndarray, idx: np.ndarray, C: np.ndarray) -> np.ndarray:
    """Remove the batch effects from validated data (batch indices in model order)."""
    n, p = Y.shape
    levels = model.batches
    ref = levels.index(model.ref_batch) if model.ref_batch is not None else None
    # Per batch the adjustment is affine in Y: out = k Y + (1 - k) stand_mean - k sd G,
    # with k = 1/sqrt(delta*) and G the batch's shift. Inactive features get k = 1 and no
    # offset (exact pass-through). Batches are independent: done in parallel threads.
    act = model.active
    sd = np.sqrt(model.var_pooled)
    G = batch_design(np.arange(len(levels)), len(levels), ref) @ model.gamma_star
    beta = np.zeros((C.shape[1], p))
    beta[:, act] = model.beta_cov
    out = np.empty_like(Y)
    ones_c = np.column_stack([np.ones(n), C])

    def adjust(b: int) -> None:
        members = np.flatnonzero(idx == b)
        if b == ref:
            out[members] = Y[members]
            return
        k = np.ones(p)
        k[act] = 1.0 / np.sqrt(model.delta_star[b])
        offset = np.zeros(p)
        offset[act] = model.grand_mean * (1 - k[act]) - k[act] * sd * G[b]
        additive = np.vstack([offset, beta * (1 - k)])  # [1, C] @ additive: per sample
        for rows in _row_chunks(members, p):
            contiguous = isinstance(rows, slice)  # then a view of out, written in place
            target = out[rows] if contiguous else np.empty((rows.size, p))
            np.multiply(Y[rows], k, out=target)
            target += ones_c[rows] @ additive
            if not contiguous:
                out[rows] = target

    parallel(adjust, [b for b in range(len(levels)) if (idx == b).any()])
    return out


def _row_selector(rows: np.ndarray) -> slice | np.ndarray:
    """A slice (a view, no copy) when the rows are contiguous, else the index array."""
    if rows.size and rows[-1] - rows[0] + 1 == rows.size:
        return slice(int(rows[0]), int(rows[-1]) + 1)
    return rows


def _row_chunks(rows: np.ndarray, p: int, target_bytes: int = 1 << 20):
    """Contiguous runs become slices (views); chunks of about ``target_bytes``."""
    step = max(8, target_bytes // (8 * max(p, 1)))
    for start in range(0, rows.size, step):
        yield _row_selector(rows[start:start + step])


def harmonize(X, batch, covariates=None, **kwargs) -> tuple[np.ndarray, ComBatModel]:
    """Fit on ``X`` and return (harmonized X, model): ComBat in one call."""
    with _blas_single_threaded():
        model, Y, idx, C, seal = _fit(X, batch, covariates, **kwargs)
        out = _adjust(model, Y, idx, C)
        seal()
    return out, model
