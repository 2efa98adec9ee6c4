"""A fitted ComBat model, saved and loaded with its provenance."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trialprep.atomic import atomic_path
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

    def to_arrays(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(JSON-ready metadata, arrays): what :meth:`save` writes."""
        meta = {
            "format": FORMAT, "features": self.features, "batches": self.batches,
            "ref_batch": self.ref_batch, "terms": [t.to_dict() for t in self.terms],
            "n_per_batch": self.n_per_batch, "settings": self.settings,
            "provenance": self.provenance,
        }
        return meta, {k: getattr(self, k) for k in _ARRAYS}

    @classmethod
    def from_arrays(cls, meta: dict, arrays) -> ComBatModel:
        if meta.get("format") != FORMAT:
            raise HarmonizationError("not a trialprep ComBat model")
        return cls(
            features=meta["features"], batches=meta["batches"], ref_batch=meta["ref_batch"],
            terms=[CovariateTerm.from_dict(t) for t in meta["terms"]],
            n_per_batch=meta["n_per_batch"], settings=meta["settings"],
            provenance=meta["provenance"], **{k: arrays[k] for k in _ARRAYS},
        )

    def save(self, path: str | Path) -> Path:
        """Write the model as one ``.npz`` (arrays plus JSON metadata, no pickles)."""
        meta, arrays = self.to_arrays()
        return save_npz(path, meta, arrays)

    @classmethod
    def load(cls, path: str | Path) -> ComBatModel:
        meta, arrays = load_npz(path)
        if meta.get("format") != FORMAT:
            raise HarmonizationError(f"{path} is not a trialprep ComBat model")
        return cls.from_arrays(meta, arrays)


def save_npz(path: str | Path, meta: dict, arrays: dict[str, np.ndarray]) -> Path:
    """Metadata (JSON) and arrays in one ``.npz``, written atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, meta=np.array(json.dumps(meta, default=str)), **arrays)
    return path


def load_npz(path: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    with np.load(path, allow_pickle=False) as z:
        return json.loads(str(z["meta"])), {k: z[k] for k in z.files if k != "meta"}


def load_any(path: str | Path):
    """A saved ComBat, CovBat or longitudinal ComBat model, by the format it records."""
    with np.load(path, allow_pickle=False) as z:
        fmt = json.loads(str(z["meta"])).get("format", "")
    if fmt == FORMAT:
        return ComBatModel.load(path)
    if fmt.startswith("trialprep-covbat-model/"):
        from trialprep.harmonization.covbat import CovBatModel

        return CovBatModel.load(path)
    if fmt.startswith("trialprep-longitudinal-combat-model/"):
        from trialprep.harmonization.longitudinal import LongitudinalModel

        return LongitudinalModel.load(path)
    raise HarmonizationError(f"{path} is not a trialprep harmonization model")
