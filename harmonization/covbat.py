"""CovBat (Chen et al. 2022, Hum Brain Mapp 43:1564): ComBat, then the covariance.

ComBat removes each batch's location and scale per feature but leaves batch differences in
how features co-vary. CovBat takes the ComBat residuals (harmonized data minus the protected
covariates' fitted means), optionally scales each feature to unit variance, finds their
principal components, harmonizes the scores of the leading components with ComBat (batch
only; empirical Bayes optional, off by default as in the authors' code) and projects back.
Checked against the authors' R implementation (tests/harmonization/reference/covbat).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trialprep.harmonization import core
from trialprep.harmonization.design import HarmonizationError, covariate_matrix
from trialprep.harmonization.model import ComBatModel, load_npz, save_npz

FORMAT = "trialprep-covbat-model/1"


@dataclass
class CovBatModel:
    """ComBat's model plus the principal axes of its residuals and the scores' ComBat."""

    combat: ComBatModel
    center: np.ndarray       # (p_active,) mean of the ComBat residuals
    scale: np.ndarray        # (p_active,) their SD (ones when not standardized)
    components: np.ndarray   # (n_pc, p_active) harmonized principal axes
    scores: ComBatModel      # ComBat of the leading scores (batch only)
    settings: dict = field(default_factory=dict)

    @property
    def features(self) -> list[str]:
        return self.combat.features

    @property
    def covariates(self) -> list[str]:
        return self.combat.covariates

    @property
    def terms(self):
        return self.combat.terms

    def save(self, path: str | Path) -> Path:
        """One ``.npz``: both ComBat models (arrays prefixed ``combat.``/``scores.``) and
        the principal axes."""
        meta, arrays = {"format": FORMAT, "settings": self.settings}, {
            "center": self.center, "scale": self.scale, "components": self.components}
        for prefix, model in (("combat", self.combat), ("scores", self.scores)):
            part_meta, part = model.to_arrays()
            meta[prefix] = part_meta
            arrays.update({f"{prefix}.{k}": v for k, v in part.items()})
        return save_npz(path, meta, arrays)

    @classmethod
    def load(cls, path: str | Path) -> CovBatModel:
        meta, arrays = load_npz(path)
        if meta.get("format") != FORMAT:
            raise HarmonizationError(f"{path} is not a trialprep CovBat model")
        models = {p: ComBatModel.from_arrays(meta[p], {k.split(".", 1)[1]: v for k, v in
                                                      arrays.items() if k.startswith(p + ".")})
                  for p in ("combat", "scores")}
        return cls(models["combat"], arrays["center"], arrays["scale"], arrays["components"],
                   models["scores"], meta["settings"])


def _residuals(model: ComBatModel, H: np.ndarray, covariates, n: int) -> np.ndarray:
    """Harmonized data minus the protected covariates' fitted means (active features)."""
    C = covariate_matrix(model.terms, core._as_frame(covariates, n), n)
    return H[:, model.active] - (model.grand_mean + C @ model.beta_cov)


def harmonize(X, batch, covariates=None, *, variance: float = 0.95,
              n_components: int | None = None, standardize: bool = True,
              score_eb: bool = False, score_parametric: bool = True,
              **combat_settings) -> tuple[np.ndarray, CovBatModel]:
    """CovBat on ``X`` (samples x features): (harmonized X, model).

    variance : the leading components explaining more than this share of the residual
        variance are harmonized (or ``n_components`` of them).
    standardize : scale each feature's residual to unit variance before the PCA.
    score_eb, score_parametric : empirical Bayes for the scores' ComBat.
    combat_settings : the first ComBat's settings (:func:`core.fit`).
    """
    if not 0 < variance <= 1:
        raise HarmonizationError(f"variance must be in (0, 1], not {variance}")
    H, model = core.harmonize(X, batch, covariates, **combat_settings)
    n = H.shape[0]
    resid = _residuals(model, H, covariates, n)
    center = resid.mean(axis=0)
    scale = resid.std(axis=0, ddof=1) if standardize else np.ones(resid.shape[1])
    W = (resid - center) / scale
    _, S, Vt = np.linalg.svd(W, full_matrices=False)
    share = np.cumsum(S**2) / np.sum(S**2)
    n_pc = n_components or int(np.argmax(share > variance - 1e-12) + 1)
    if not 1 <= n_pc <= Vt.shape[0]:
        raise HarmonizationError(f"n_components must be between 1 and {Vt.shape[0]}")
    components = Vt[:n_pc]
    scores = W @ components.T
    h_scores, score_model = core.harmonize(scores, batch, None, eb_=score_eb,
                                           parametric=score_parametric)
    out = H.copy()
    out[:, model.active] += ((h_scores - scores) @ components) * scale
    settings = {"variance": variance, "n_components": n_pc, "standardize": standardize,
                "score_eb": score_eb, "score_parametric": score_parametric,
                "explained_variance": share[n_pc - 1]}
    model.settings["covbat"] = settings
    return out, CovBatModel(model, center, scale, components, score_model, settings)


def apply(model: CovBatModel, X, batch, covariates=None) -> np.ndarray:
    """Harmonize samples of known batches with a fitted CovBat model."""
    H = core.apply(model.combat, X, batch, covariates)
    resid = _residuals(model.combat, H, covariates, H.shape[0])
    scores = ((resid - model.center) / model.scale) @ model.components.T
    h_scores = core.apply(model.scores, scores, batch)
    out = H.copy()
    out[:, model.combat.active] += ((h_scores - scores) @ model.components) * model.scale
    return out
