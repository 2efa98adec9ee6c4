"""Design matrices for ComBat: batch indicators plus encoded protected covariates.

Covariates are encoded once at fit time (categorical levels, spline knots) and the same
encoding is replayed on new data, so a fitted model applies to samples it has never seen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd


class HarmonizationError(ValueError):
    """Input that ComBat cannot harmonize correctly; the message says what and why."""


class ConfoundedError(HarmonizationError):
    """Covariates fully determined by batch: ``covariates`` names them."""

    def __init__(self, message: str, covariates: list[str]):
        super().__init__(message)
        self.covariates = covariates


def natural_spline_basis(x: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Natural cubic spline basis without intercept (Hastie, Tibshirani & Friedman 2009, eq. 5.4).

    With K knots it has K-1 columns: ``x`` and K-2 truncated-cubic terms that are linear
    beyond the boundary knots, so predictions extrapolate linearly outside the training range.
    """
    x = np.asarray(x, dtype=float)
    k = np.asarray(knots, dtype=float)
    K = k.size
    scale = (k[-1] - k[0]) or 1.0
    xs, ks = (x - k[0]) / scale, (k - k[0]) / scale  # conditioning

    def d(j: int) -> np.ndarray:
        return (np.clip(xs - ks[j], 0, None) ** 3 - np.clip(xs - ks[-1], 0, None) ** 3) / (
            ks[-1] - ks[j]
        )

    cols = [xs]
    d_last = d(K - 2)
    for j in range(K - 2):
        cols.append(d(j) - d_last)
    return np.column_stack(cols)


@dataclass
class CovariateTerm:
    """How one protected covariate enters the design."""

    name: str
    kind: str  # "categorical" | "continuous" | "smooth"
    levels: list = field(default_factory=list)  # categorical: all levels, first is reference
    knots: list = field(default_factory=list)  # smooth: natural spline knots

    @property
    def column_names(self) -> list[str]:
        if self.kind == "categorical":
            return [f"{self.name}[{lvl}]" for lvl in self.levels[1:]]
        if self.kind == "smooth":
            return [f"{self.name}:ns{i}" for i in range(len(self.knots) - 1)]
        return [self.name]

    def encode(self, values: pd.Series) -> np.ndarray:
        if self.kind == "categorical":
            codes, names = factorize_as_str(values)
            known = [str(lv) for lv in self.levels]
            unknown = sorted(set(names) - set(known))
            if unknown:
                raise HarmonizationError(
                    f"covariate {self.name!r} has level(s) {unknown} not seen when the model "
                    f"was fitted (known: {known})"
                )
            level = np.array([known.index(nm) for nm in names], dtype=int)[codes]
            return (level[:, None] == np.arange(1, len(known))).astype(float)
        x = _numeric(values, self.name)
        if self.kind == "smooth":
            return natural_spline_basis(x, np.asarray(self.knots))
        return x[:, None]

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "levels": [str(v) for v in self.levels],
                "knots": [float(v) for v in self.knots]}

    @classmethod
    def from_dict(cls, d: Mapping) -> CovariateTerm:
        return cls(d["name"], d["kind"], list(d.get("levels", [])), list(d.get("knots", [])))


def factorize_as_str(values) -> tuple[np.ndarray, list[str]]:
    """(code of each value, its distinct values as strings): values compare as strings.
    Missing values are kept as a value of their own (``nan``/``None``), for callers to refuse."""
    codes, uniques = pd.factorize(np.asarray(values, dtype=object).ravel(),
                                  use_na_sentinel=False)
    return codes, [str(u) for u in uniques]


def _numeric(values: pd.Series, name: str) -> np.ndarray:
    x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(x)
    if bad.any():
        raise HarmonizationError(
            f"continuous covariate {name!r} has {int(bad.sum())} non-numeric or missing "
            f"value(s), e.g. {values[bad].iloc[0]!r} at row {int(np.flatnonzero(bad)[0])}"
        )
    return x


def build_terms(
    covariates: pd.DataFrame | None,
    categorical: Sequence[str] = (),
    smooth: Sequence[str] = (),
    n_knots: int = 5,
) -> list[CovariateTerm]:
    """Decide each covariate's encoding from training data."""
    if covariates is None or covariates.shape[1] == 0:
        if categorical or smooth:
            raise HarmonizationError("categorical/smooth covariates named but no covariates given")
        return []
    missing = [c for c in [*categorical, *smooth] if c not in covariates.columns]
    if missing:
        raise HarmonizationError(f"covariate(s) {missing} not found among {list(covariates)}")
    terms = []
    for name in covariates.columns:
        col = covariates[name]
        if name in categorical:
            if col.isna().any():
                raise HarmonizationError(f"categorical covariate {name!r} has missing values")
            levels = sorted(set(factorize_as_str(col)[1]), key=_natural_key)
            terms.append(CovariateTerm(str(name), "categorical", levels=levels))
        elif name in smooth:
            x = _numeric(col, name)
            knots = np.unique(np.quantile(x, np.linspace(0, 1, n_knots)))
            if knots.size < 3:
                raise HarmonizationError(
                    f"smooth covariate {name!r} has too few distinct values for a spline"
                )
            terms.append(CovariateTerm(str(name), "smooth", knots=knots.tolist()))
        else:
            _numeric(col, name)
            terms.append(CovariateTerm(str(name), "continuous"))
    return terms


def _natural_key(s: str) -> tuple:
    try:
        return (0, float(s), s)
    except ValueError:
        return (1, 0.0, s)


def covariate_matrix(terms: Sequence[CovariateTerm], covariates: pd.DataFrame | None,
                     n: int) -> np.ndarray:
    """Encode covariates for ``n`` samples with fitted terms (n x q)."""
    if not terms:
        return np.zeros((n, 0))
    if covariates is None:
        raise HarmonizationError(f"model needs covariates {[t.name for t in terms]}")
    absent = [t.name for t in terms if t.name not in covariates.columns]
    if absent:
        raise HarmonizationError(f"covariate column(s) {absent} missing from the new data")
    if len(covariates) != n:
        raise HarmonizationError(f"covariates have {len(covariates)} rows, data has {n}")
    return np.column_stack([t.encode(covariates[t.name].reset_index(drop=True)) for t in terms])


def check_not_confounded(batch_design: np.ndarray, terms: Sequence[CovariateTerm],
                         cov: np.ndarray) -> None:
    """Raise if a covariate is (a linear combination of) batch, or covariates are collinear.

    Harmonizing then would remove biology along with the batch effect, or silently split an
    unidentifiable effect; ComBat cannot tell the two apart, so we refuse.
    """
    full = np.column_stack([batch_design, cov])
    if np.linalg.matrix_rank(full) == full.shape[1]:
        return
    base_rank = np.linalg.matrix_rank(batch_design)
    culprits = []
    start = 0
    for t in terms:
        width = len(t.column_names)
        block = cov[:, start:start + width]
        start += width
        if np.linalg.matrix_rank(np.column_stack([batch_design, block])) < base_rank + width:
            culprits.append(t.name)
    if culprits:
        raise ConfoundedError(
            f"covariate(s) {culprits} are confounded with batch (fully determined by it): "
            "their effect cannot be separated from the scanner effect; drop them or "
            "re-define batches", culprits)
    raise HarmonizationError(
        f"covariates {[t.name for t in terms]} are collinear with each other; drop one"
    )
