"""Federated ComBat: the pooled model from per-site aggregates, no row leaves a site.

ComBat's estimates depend on the data only through per-batch sums (see :mod:`.estimate`):
the count, the sums of the covariate columns and of the features, their cross-products and
the features' sums of squares. Each site computes those for its own batches
(:func:`site_summary`, ``trialprep harmonize TABLE --site-summary``), a coordinator adds them
up into the same least-squares system and per-batch statistics the pooled fit uses
(:func:`combine`), and each site applies the model to its own rows. The result equals the
pooled fit (Chen et al. 2022, "d-ComBat", Hum Brain Mapp 43:1305, without its iterations:
here the sufficient statistics make the pooled solution exact in one round).

Categorical covariates are summarized as one indicator per level, so sites need not agree
on the levels beforehand; spline (smooth) covariates need pooled quantiles for their knots
and are not supported. Sums are taken around each site's own feature means (shifted sums),
so the combination keeps full precision for features with large means.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from trialprep.harmonization.design import (
    CovariateTerm,
    HarmonizationError,
    _natural_key,
    factorize_as_str,
)
from trialprep.harmonization.estimate import BatchStatistics, model_from_statistics
from trialprep.harmonization.model import ComBatModel

FORMAT = "trialprep-combat-site-summary/1"


def _indicator_columns(covariates: pd.DataFrame | None,
                       categorical: Sequence[str]) -> tuple[list[dict], np.ndarray]:
    """(column descriptions, n x c matrix): one column per continuous covariate, one
    indicator per observed level of each categorical covariate."""
    if covariates is None or covariates.shape[1] == 0:
        return [], np.zeros((0 if covariates is None else len(covariates), 0))
    cols, blocks = [], []
    for name in covariates.columns:
        values = covariates[name].reset_index(drop=True)
        if name in categorical:
            if values.isna().any():
                raise HarmonizationError(f"categorical covariate {name!r} has missing values")
            codes, levels = factorize_as_str(values)
            for i, level in enumerate(levels):
                cols.append({"name": str(name), "level": level})
                blocks.append((codes == i).astype(float))
        else:
            x = pd.to_numeric(values, errors="coerce").to_numpy(float)
            if not np.isfinite(x).all():
                raise HarmonizationError(f"continuous covariate {name!r} has missing or "
                                         "non-numeric values")
            cols.append({"name": str(name), "level": None})
            blocks.append(x)
    return cols, np.column_stack(blocks)


def site_summary(X, batch, covariates: pd.DataFrame | None = None,
                 categorical: Sequence[str] = ()) -> dict:
    """A site's ComBat aggregates per batch (JSON-ready): counts, sums, cross-products.
    Holds no row and no identifier: every array is per feature or per covariate column."""
    from trialprep.harmonization.core import as_data_matrix

    Y, features = as_data_matrix(X)
    cov = None if covariates is None else pd.DataFrame(covariates).reset_index(drop=True)
    columns, C = _indicator_columns(cov, categorical)
    codes, names = factorize_as_str(batch)
    if len(codes) != Y.shape[0]:
        raise HarmonizationError(f"{len(codes)} batch labels for {Y.shape[0]} samples")
    shift = Y.mean(axis=0)  # sums around the site's means keep precision
    Ys = Y - shift
    batches = {}
    for i, name in enumerate(names):
        rows = codes == i
        Yb, Cb = Ys[rows], C[rows]
        batches[name] = {"n": int(rows.sum()), "sum_c": Cb.sum(axis=0).tolist(),
                         "cc": (Cb.T @ Cb).tolist(), "sum_y": Yb.sum(axis=0).tolist(),
                         "cy": (Cb.T @ Yb).tolist(), "yy": np.einsum("ij,ij->j", Yb, Yb).tolist()}
    return {"format": FORMAT, "features": features, "shift": shift.tolist(),
            "covariates": list(dict.fromkeys(c["name"] for c in columns)),
            "columns": columns, "categorical": list(categorical), "batches": batches}


def _global_terms(summaries: list[dict]) -> list[CovariateTerm]:
    """The covariate encoding of the pooled fit: levels are the union over sites (sorted,
    the first is the reference), as the pooled fit would find them."""
    order, levels, kinds = [], {}, {}
    for s in summaries:
        for col in s["columns"]:
            name = col["name"]
            kind = "continuous" if col["level"] is None else "categorical"
            if name not in kinds:
                order.append(name)
                kinds[name] = kind
            elif kinds[name] != kind:
                raise HarmonizationError(f"covariate {name!r} is categorical at one site and "
                                         "continuous at another")
            if col["level"] is not None:
                levels.setdefault(name, set()).add(col["level"])
    return [CovariateTerm(n, kinds[n], levels=sorted(levels.get(n, ()), key=_natural_key))
            for n in order]


def _encoder(summary: dict, terms: list[CovariateTerm]) -> np.ndarray:
    """Matrix mapping a site's indicator columns to the pooled design's columns."""
    index = {(c["name"], c["level"]): i for i, c in enumerate(summary["columns"])}
    rows = []
    for t in terms:
        for lvl in (t.levels[1:] if t.kind == "categorical" else [None]):
            vec = np.zeros(len(summary["columns"]))
            if (t.name, lvl) in index:
                vec[index[(t.name, lvl)]] = 1.0
            elif lvl is None:
                raise HarmonizationError(f"a site summary lacks covariate {t.name!r}")
            rows.append(vec)
    return np.array(rows).reshape(len(rows), len(summary["columns"]))


def combine(summaries: list[dict], *, ref_batch=None, parametric: bool = True,
            eb_: bool = True, mean_only: bool = False) -> ComBatModel:
    """The pooled ComBat model from site summaries (see the module docstring)."""
    if not summaries:
        raise HarmonizationError("no site summaries to combine")
    for s in summaries:
        if s.get("format") != FORMAT:
            raise HarmonizationError("not a trialprep ComBat site summary")
    features = summaries[0]["features"]
    if any(s["features"] != features for s in summaries):
        raise HarmonizationError("site summaries have different features")
    if len({tuple(s["covariates"]) for s in summaries}) > 1:
        raise HarmonizationError("site summaries name different covariates")
    terms = _global_terms(summaries)
    stats = []  # (label, n, sum_c, cc, sum_y, cy, yy) in the pooled coordinates
    shift = np.asarray(summaries[0]["shift"])  # one common origin for every site
    for s in summaries:
        E = _encoder(s, terms)
        delta = np.asarray(s["shift"]) - shift  # the site's sums re-expressed around `shift`
        for label, b in s["batches"].items():
            n = b["n"]
            sum_c, cc = E @ np.asarray(b["sum_c"]), E @ np.asarray(b["cc"]) @ E.T
            sum_y0, cy0 = np.asarray(b["sum_y"]), np.asarray(b["cy"]).reshape(-1, len(features))
            sum_y = sum_y0 + n * delta
            cy = E @ cy0 + np.outer(E @ np.asarray(b["sum_c"]), delta)
            yy = np.asarray(b["yy"]) + 2 * delta * sum_y0 + n * delta**2
            stats.append((str(label), n, sum_c, cc, sum_y, cy, yy))
    labels = [s[0] for s in stats]
    if len(set(labels)) != len(labels):
        raise HarmonizationError("a batch appears in more than one site summary: each batch "
                                 "must be summarized by one site")
    order = sorted(range(len(stats)), key=lambda i: _natural_key(labels[i]))
    stats = [stats[i] for i in order]
    levels = [s[0] for s in stats]
    counts = np.array([s[1] for s in stats])
    if len(levels) < 2:
        raise HarmonizationError("only one batch: there is no batch effect to estimate")
    if counts.min() < 2:
        raise HarmonizationError("every batch needs at least 2 samples")
    ref = None
    if ref_batch is not None:
        if str(ref_batch) not in levels:
            raise HarmonizationError(f"reference batch {ref_batch!r} not among {levels}")
        ref = levels.index(str(ref_batch))
    nb, q, p = len(levels), sum(len(t.column_names) for t in terms), len(features)
    DtD, DtY = np.zeros((nb + q, nb + q)), np.zeros((nb + q, p))
    for b, (_, n, sum_c, cc, sum_y, cy, _) in enumerate(stats):
        a = np.zeros(nb)
        a[b] = 1.0
        if ref is not None:
            a[ref] = 1.0
        DtD[:nb, :nb] += n * np.outer(a, a)
        DtD[:nb, nb:] += np.outer(a, sum_c)
        DtD[nb:, :nb] += np.outer(sum_c, a)
        DtD[nb:, nb:] += cc
        DtY[:nb] += np.outer(a, sum_y)
        DtY[nb:] += cy
    if np.linalg.matrix_rank(DtD) < DtD.shape[0]:
        raise HarmonizationError("covariates are confounded with batch or collinear")
    B = np.linalg.solve(DtD, DtY)
    beta = B[nb:]
    mean_z, css_z = np.empty((nb, p)), np.empty((nb, p))
    for b, (_, n, sum_c, cc, sum_y, cy, yy) in enumerate(stats):
        s_z = sum_y - sum_c @ beta
        ss_z = yy - 2 * np.einsum("qp,qp->p", beta, cy) + np.einsum("qp,qr,rp->p", beta, cc,
                                                                     beta)
        mean_z[b] = s_z / n
        css_z[b] = np.maximum(ss_z - s_z**2 / n, 0.0)
    # back to the data's origin: the intercept is the batch rows (the reference's, with one)
    if ref is None:
        B[:nb] += shift
    else:
        B[ref] += shift
    mean_z += shift
    constant = np.zeros(p, bool)  # no data here: zero pooled variance is passed through
    model = model_from_statistics(
        BatchStatistics(levels, counts, ref, terms, B, mean_z, css_z, constant), features,
        parametric=parametric, eb_=eb_, mean_only=mean_only)
    model.provenance["federated"] = {"sites": len(summaries), "batches": levels}
    return model
