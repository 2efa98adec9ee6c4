"""Study configuration: defaults merged with a study YAML, validated by JSON schemas."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from trialprep.paths import config_dir
from trialprep.provenance import sha256_json


class ConfigError(ValueError):
    """Invalid configuration; the message names the file and the offending key."""


def _deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in (override or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _load_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"configuration file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data


def _validate(data: dict, schema_name: str, source: str) -> None:
    schema = yaml.safe_load((config_dir() / "schemas" / schema_name).read_text())
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(data),
                    key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise ConfigError(f"{source}: {where}: {e.message}")


@dataclass
class StudyConfig:
    """A validated study configuration and its locked protocol."""

    data: dict[str, Any]
    protocol: dict[str, Any]
    source: Path | None
    base_dir: Path
    qc: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def resolve(self, path: str | None) -> Path | None:
        """A path from the config, relative to the config file's folder."""
        if path is None:
            return None
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    @property
    def hash(self) -> str:
        """Checksum of the effective configuration and protocol (recorded with outputs)."""
        return sha256_json({"config": self.data, "protocol": self.protocol, "qc": self.qc})

    @property
    def visit_ids(self) -> list[str]:
        return [v["id"] for v in self.data["visits"]]


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> StudyConfig:
    """Load defaults, overlay the study YAML at ``path`` and ``overrides``, validate all."""
    defaults = _load_yaml(config_dir() / "defaults.yaml")
    study = _load_yaml(Path(path)) if path else {}
    data = _deep_merge(_deep_merge(defaults, study), overrides or {})
    source = Path(path).resolve() if path else None
    _validate(data, "study.schema.json", str(source or "defaults"))
    base = source.parent if source else config_dir()
    proto_path = _beside(base, data["protocol"])
    protocol = _load_yaml(proto_path)
    _validate(protocol, "protocol.schema.json", str(proto_path))
    unknown = {r["type"] for r in protocol["classification"]} - set(protocol["series"])
    if unknown:
        raise ConfigError(f"{proto_path}: classification types {sorted(unknown)} have no "
                          "entry under `series`")
    qc_path = _beside(base, data["qc_gates"])
    qc = _per_modality_qc(_load_yaml(qc_path))
    _validate(qc, "qc.schema.json", str(qc_path))
    return StudyConfig(data=data, protocol=protocol, source=source, base_dir=base, qc=qc)


def _per_modality_qc(qc: dict) -> dict:
    """Gate rules of the earlier single-stage form (``image.absolute``, ``image.robust_z``,
    ``drift.metrics``: the T1w's) read as the ``anat`` modality's."""
    image = qc.get("image")
    if not isinstance(image, dict) or "absolute" not in image or "anat" in qc:
        return qc
    qc = copy.deepcopy(qc)
    anat = {"absolute": qc["image"].pop("absolute")}
    if "robust_z" in qc["image"]:
        anat["robust_z"] = qc["image"].pop("robust_z")
    if isinstance(qc.get("drift"), dict) and "metrics" in qc["drift"]:
        anat["drift_metrics"] = qc["drift"].pop("metrics")
    qc["anat"] = anat
    return qc


def _beside(base: Path, name: str) -> Path:
    """A file named in the config: beside the study file, else in trialprep's config/."""
    path = Path(name)
    if path.is_absolute():
        return path
    cand = base / path
    return cand if cand.exists() else config_dir() / path
