"""One BIDS path helper: every BIDS file name in trialprep is built here."""

from __future__ import annotations

import re
from pathlib import Path

#: Entity order of the BIDS specification (the subset trialprep writes).
ENTITY_ORDER = ("sub", "ses", "task", "acq", "ce", "rec", "dir", "run", "echo", "space",
                "res", "label", "from", "to", "mode", "desc")
_LABEL = re.compile(r"[^A-Za-z0-9]")
#: A Snakemake wildcard (``{sub}``), kept as it is so rules can declare outputs with the
#: same helper (snakebids' ``bids()``); Snakemake fills it with a sanitized label.
_WILDCARD = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")


def sanitize_label(value: object) -> str:
    """A BIDS label from any value: alphanumerics only (untrusted header values included);
    a whole-value Snakemake wildcard such as ``{sub}`` is returned unchanged."""
    if isinstance(value, str) and _WILDCARD.fullmatch(value):
        return value
    label = _LABEL.sub("", str(value))
    if not label:
        raise ValueError(f"cannot make a BIDS label from {value!r}")
    return label


def bids_name(suffix: str, extension: str = "", **entities: object) -> str:
    """``sub-01_ses-02_run-1_T1w.nii.gz`` from entities (None values are left out)."""
    unknown = set(entities) - set(ENTITY_ORDER)
    if unknown:
        raise ValueError(f"unknown BIDS entities {sorted(unknown)}")
    parts = [f"{k}-{sanitize_label(entities[k])}" for k in ENTITY_ORDER
             if entities.get(k) is not None]
    if not re.fullmatch(r"[A-Za-z0-9]+", suffix):
        raise ValueError(f"bad BIDS suffix {suffix!r}")
    return "_".join([*parts, suffix]) + extension


def bids_path(root: str | Path, datatype: str | None, suffix: str, extension: str = "",
              **entities: object) -> Path:
    """Path of a BIDS file under ``root``: ``sub-X/[ses-Y/]datatype/name``. Entity values may
    be Snakemake wildcards: ``bids_path(d, "anat", "T1w", ".nii.gz", sub="{sub}",
    ses="{ses}")`` is ``d/sub-{sub}/ses-{ses}/anat/sub-{sub}_ses-{ses}_T1w.nii.gz``."""
    root = Path(root)
    folder = root / f"sub-{sanitize_label(entities['sub'])}"
    if entities.get("ses") is not None:
        folder = folder / f"ses-{sanitize_label(entities['ses'])}"
    if datatype:
        folder = folder / datatype
    return folder / bids_name(suffix, extension, **entities)


def parse_entities(name: str) -> dict[str, str]:
    """Entities and suffix of a BIDS file name (``suffix`` and ``extension`` keys added)."""
    base = Path(name).name
    stem, _, ext = base.partition(".")
    parts = stem.split("_")
    out = dict(p.split("-", 1) for p in parts[:-1] if "-" in p)
    out["suffix"] = parts[-1]
    out["extension"] = "." + ext if ext else ""
    return out
