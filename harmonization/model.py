"""A fitted ComBat model, saved and loaded with its provenance."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trialprep.harmonization.design import CovariateTerm, HarmonizationError

FORMAT = "trialprep-combat-model/1"
_ARRAYS = ("active", "grand_mean", "beta_cov", "var_pooled", "gamma_hat", "delta_hat",
           "gamma_star", "delta_star")


@dataclass
class ComBatModel:
    """Estimated batch effects. Arrays cover the harmonized (``active``) features only.

    ``gamma_star``/``delta_star`` are the (shrunken) additive and multiplicative batch
    effects per batch x feature, on the standardized scale; ``grand_mean``, ``beta_cov`` and
    ``var_pooled`` define that scale.
    """

    features: list[str]
    active: np.ndarray
    batches: list[str]
    ref_batch: str | None
    terms: list[CovariateTerm]
    n_per_batch: list[int]
    grand_mean: np.ndarray
    beta_cov: np.ndarray
    var_pooled: np.ndarray
    gamma_hat: np.ndarray
    delta_hat: np.ndarray
    gamma_star: np.ndarray
    delta_star: np.ndarray
    settings: dict
    provenance: dict = field(default_factory=dict)

    @property
    def covariates(self) -> list[str]:
        return [t.name for t in self.terms]

    def save(self, path: str | Path) -> Path:
        """Write the model as one ``.npz`` (arrays plus JSON metadata, no pickles)."""
        path = Path(path)
        meta = {
            "format": FORMAT, "features": self.features, "batches": self.batches,
            "ref_batch": self.ref_batch, "terms": [t.to_dict() for t in self.terms],
            "n_per_batch": self.n_per_batch, "settings": self.settings,
            "provenance": self.provenance,
        }
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, meta=np.array(json.dumps(meta, default=str)),
                            **{k: getattr(self, k) for k in _ARRAYS})
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ComBatModel:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("format") != FORMAT:
                raise HarmonizationError(f"{path} is not a trialprep ComBat model")
            arrays = {k: z[k] for k in _ARRAYS}
        return cls(
            features=meta["features"], batches=meta["batches"], ref_batch=meta["ref_batch"],
            terms=[CovariateTerm.from_dict(t) for t in meta["terms"]],
            n_per_batch=meta["n_per_batch"], settings=meta["settings"],
            provenance=meta["provenance"], **arrays,
        )
