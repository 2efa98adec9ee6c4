"""Which harmonization the study table gets, fitted on which sessions, applied to all.

``harmonization.model``: ``longitudinal`` (longitudinal ComBat, a random intercept per
participant), ``cross_sectional`` (ComBat, or CovBat with ``covbat: true``), or ``auto``:
longitudinal when participants have repeated visits among the fitting sessions.
``harmonization.fit_on``: ``all``, ``baseline`` (each participant's first session) or
``{column, values}`` (e.g. controls only); the model is applied to every session. A
covariate that is constant among the fitting sessions (dx when fitting on controls) cannot
be protected by the model and is left out of it, which the record says.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from trialprep.harmonization.design import HarmonizationError


@dataclass
class TableHarmonization:
    """The harmonized values and what produced them."""

    values: np.ndarray          # sessions x features (NaN where a session could not be)
    model: object               # ComBatModel | CovBatModel | LongitudinalModel
    record: dict                # for the table's provenance and dictionary
    covariates: list[str]       # the covariates the model protects
    fitted: np.ndarray          # bool per session: in the fitting set
    unapplied: dict[int, str] = field(default_factory=dict)  # row -> why not harmonized


def fitting_sessions(fit_on, cov: pd.DataFrame) -> np.ndarray:
    """Boolean mask of the sessions the model is fitted on."""
    if fit_on in (None, "all"):
        return np.ones(len(cov), bool)
    if fit_on == "baseline":
        first = cov.groupby("participant_id")["time"].transform("min")
        return (cov["time"] == first).to_numpy()
    column, values = fit_on["column"], [str(v) for v in fit_on["values"]]
    if column not in cov.columns:
        raise HarmonizationError(f"harmonization.fit_on: column {column!r} is not a "
                                 "covariate of the sessions")
    mask = cov[column].astype(str).isin(values).to_numpy()
    if not mask.any():
        raise HarmonizationError(f"harmonization.fit_on: no session has {column} in {values}")
    return mask


def choose_model(kind: str, participants: pd.Series, batch: np.ndarray | None = None
                 ) -> tuple[str, str]:
    """``longitudinal`` or ``cross_sectional`` for the fitting sessions' participants, and
    why. ``auto`` takes the longitudinal model when participants have repeated visits and
    every batch holds at least two participants: with one, that participant's random
    intercept and the batch effect are the same unknown and the mixed model has no
    solution."""
    if kind != "auto":
        return kind, "as configured (harmonization.model)"
    if not participants.duplicated().any():
        return "cross_sectional", "no participant has repeated visits"
    if batch is not None:
        per_batch = pd.Series(participants.to_numpy()).groupby(np.asarray(batch)).nunique()
        if (per_batch < 2).any():
            alone = ", ".join(sorted(map(str, per_batch.index[per_batch < 2])))
            return "cross_sectional", (f"batch(es) {alone} hold one participant each: a "
                                       "subject's random effect cannot be told from the "
                                       "batch effect")
    return "longitudinal", "participants have repeated visits"


def harmonize_table(values: np.ndarray, features: list[str], batch: np.ndarray,
                    cov: pd.DataFrame, h: dict, mean_only: bool) -> TableHarmonization:
    """Fit the configured model on the fitting sessions and apply it to all of them."""
    fit = fitting_sessions(h.get("fit_on", "all"), cov)
    kind, why = choose_model(h.get("model", "auto"), cov.loc[fit, "participant_id"],
                             batch[fit])
    names = [c for c in h["covariates"]
             if cov.loc[fit, c].astype(str).nunique() > 1]  # constant in the fit: not a term
    dropped = sorted(set(h["covariates"]) - set(names))
    categorical = [c for c in h["categorical"] if c in names]
    record = {"model": kind, "model_reason": why, "fit_on": h.get("fit_on", "all"),
              "fitted_sessions":
              int(fit.sum()), "covariates": names,
              "covariates_left_out": {c: "constant among the fitting sessions"
                                      for c in dropped}}
    # Sessions of a scanner epoch without fitting sessions cannot be harmonized.
    seen = set(batch[fit])
    unapplied = {i: "its scanner epoch has no session in the fitting set "
                    f"(harmonization.fit_on: {record['fit_on']})"
                 for i in np.flatnonzero(~np.isin(batch, list(seen)))}
    ok = np.array([i not in unapplied for i in range(len(batch))])
    X = pd.DataFrame(values, columns=features)
    out = np.full(values.shape, np.nan)
    if kind == "longitudinal":
        from trialprep.harmonization import longitudinal

        formula = h.get("formula") or " + ".join(["time", *names])
        settings = dict(subject="participant_id", time="time", formula=formula,
                        categorical=categorical, random_slope=h.get("random_slope", False),
                        sigma=h.get("sigma", "reml"))
        model = longitudinal.fit(X[fit], batch[fit], cov[fit], **settings)
        out[ok] = longitudinal.apply(model, X[ok], batch[ok], cov[ok],
                                     subject="participant_id")
        record.update(formula=formula, random="intercept + slope" if settings["random_slope"]
                      else "intercept", sigma=settings["sigma"],
                      method="longitudinal ComBat (Beer et al. 2020)")
        record["in_folds"] = settings
    else:
        from trialprep.harmonization import core

        covars = cov[names] if names else None
        settings = dict(smooth=[s for s in h["smooth"] if s in names],
                        parametric=h["parametric"], eb_=h["eb"], mean_only=mean_only,
                        ref_batch=h["ref_batch"])
        if h.get("covbat"):
            from trialprep.harmonization import covbat

            _, model = covbat.harmonize(X[fit], batch[fit], None if covars is None else
                                        covars[fit], categorical=categorical, **settings)
            out[ok] = covbat.apply(model, X[ok], batch[ok],
                                   None if covars is None else covars[ok])
            record["method"] = "CovBat (Chen et al. 2022) after ComBat"
        else:
            model = core.fit(X[fit], batch[fit], None if covars is None else covars[fit],
                             categorical=categorical, **settings)
            out[ok] = core.apply(model, X[ok], batch[ok],
                                 None if covars is None else covars[ok])
            record["method"] = "ComBat (Johnson et al. 2007; Fortin et al. 2018)"
        record.update(settings={k: v for k, v in settings.items()}, categorical=categorical)
    bad = ok & ~np.isfinite(out).all(axis=1) & np.isfinite(values).all(axis=1)
    if bad.any():  # never a table of NaN in place of numbers
        raise HarmonizationError(
            f"{record['method']} gave non-finite values for {int(bad.sum())} of "
            f"{int(ok.sum())} session(s) ({record['model_reason']}): the model cannot be "
            "estimated from these sessions")
    return TableHarmonization(out, model, record, names, fit, unapplied)
