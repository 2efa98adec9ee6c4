"""scikit-learn estimator over the ComBat core.

Batch and covariates are given to the constructor as pandas objects indexed like the
samples; ``fit``/``transform`` look up the rows of ``X`` by its index, so the estimator
works inside ``Pipeline`` and cross-validation (where only ``X`` travels).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from trialprep.harmonization import core
from trialprep.harmonization.design import HarmonizationError


class ComBat(TransformerMixin, BaseEstimator):
    """ComBat harmonization as a transformer.

    Parameters
    ----------
    batch : pd.Series of batch labels indexed like the samples of ``X`` (or a sequence with
        one label per row when ``X`` is an array used as a whole).
    covariates : pd.DataFrame of protected covariates indexed like ``X``.
    categorical, smooth : covariate columns to one-hot encode / fit with a natural spline.
    parametric, eb, mean_only, ref_batch, n_knots : see :func:`trialprep.harmonization.fit`.
    covbat : also harmonize the covariance (CovBat, :mod:`trialprep.harmonization.covbat`):
        the leading principal components of the residuals explaining ``covbat_variance``
        of their variance (or ``covbat_components`` of them).
    """

    def __init__(self, batch=None, covariates=None, categorical=(), smooth=(),
                 parametric=True, eb=True, mean_only=False, ref_batch=None, n_knots=5,
                 covbat=False, covbat_variance=0.95, covbat_components=None):
        self.batch = batch
        self.covariates = covariates
        self.categorical = categorical
        self.smooth = smooth
        self.parametric = parametric
        self.eb = eb
        self.mean_only = mean_only
        self.ref_batch = ref_batch
        self.n_knots = n_knots
        self.covbat = covbat
        self.covbat_variance = covbat_variance
        self.covbat_components = covbat_components

    def _rows(self, X):
        if self.batch is None:
            raise HarmonizationError("ComBat needs `batch`")
        if isinstance(X, pd.DataFrame) and isinstance(self.batch, pd.Series):
            missing = X.index.difference(self.batch.index)
            if len(missing):
                raise HarmonizationError(f"no batch label for sample(s) {list(missing[:5])}")
            batch = self.batch.loc[X.index].to_numpy()
            cov = None if self.covariates is None else self.covariates.loc[X.index]
            return batch, cov
        batch = np.asarray(self.batch, dtype=object)
        if len(batch) != len(X):
            raise HarmonizationError(
                "X has no index to look batches up by: pass X as a DataFrame and batch as a "
                "Series indexed like it (needed inside cross-validation)")
        return batch, self.covariates

    def fit(self, X, y=None):
        batch, cov = self._rows(X)
        settings = dict(categorical=self.categorical, smooth=self.smooth, n_knots=self.n_knots,
                        parametric=self.parametric, eb_=self.eb, mean_only=self.mean_only,
                        ref_batch=self.ref_batch)
        if self.covbat:
            from trialprep.harmonization import covbat

            self.model_ = covbat.harmonize(X, batch, cov, variance=self.covbat_variance,
                                           n_components=self.covbat_components,
                                           **settings)[1]
        else:
            self.model_ = core.fit(X, batch, cov, **settings)
        self.n_features_in_ = len(self.model_.features)
        return self

    def transform(self, X):
        check_is_fitted(self, "model_")
        batch, cov = self._rows(X)
        if self.covbat:
            from trialprep.harmonization import covbat

            out = covbat.apply(self.model_, X, batch, cov)
        else:
            out = core.apply(self.model_, X, batch, cov)
        if isinstance(X, pd.DataFrame):
            return pd.DataFrame(out, index=X.index, columns=X.columns)
        return out


class LongitudinalComBat(ComBat):
    """Longitudinal ComBat (:mod:`trialprep.harmonization.longitudinal`) as a transformer.

    ``covariates`` (indexed like ``X``) holds the ``subject`` and ``time`` columns and every
    variable of ``formula`` (default: ``time``). ``transform`` harmonizes visits of known
    batches: known subjects with their fitted random effects, new ones with effects
    predicted from their own visits.
    """

    def __init__(self, batch=None, covariates=None, subject="subject", time="time",
                 formula=None, categorical=(), random_slope=False, sigma="reml", niter=30):
        self.batch = batch
        self.covariates = covariates
        self.subject = subject
        self.time = time
        self.formula = formula
        self.categorical = categorical
        self.random_slope = random_slope
        self.sigma = sigma
        self.niter = niter

    def fit(self, X, y=None):
        from trialprep.harmonization import longitudinal

        batch, cov = self._rows(X)
        if cov is None:
            raise HarmonizationError("LongitudinalComBat needs `covariates` with the subject "
                                     "and time columns")
        self.model_ = longitudinal.fit(X, batch, cov, subject=self.subject, time=self.time,
                                       formula=self.formula, categorical=self.categorical,
                                       random_slope=self.random_slope, sigma=self.sigma,
                                       niter=self.niter)
        self.n_features_in_ = len(self.model_.features)
        return self

    def transform(self, X):
        from trialprep.harmonization import longitudinal

        check_is_fitted(self, "model_")
        batch, cov = self._rows(X)
        out = longitudinal.apply(self.model_, X, batch, cov, subject=self.subject)
        if isinstance(X, pd.DataFrame):
            return pd.DataFrame(out, index=X.index, columns=X.columns)
        return out
