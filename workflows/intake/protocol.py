"""Series classification and the locked-protocol check, both driven by config/protocol.yaml."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
from pydicom.dataset import Dataset


def vendor(header: Dataset) -> str:
    m = str(header.get("Manufacturer", "")).upper()
    for needle, name in (("SIEMENS", "SIEMENS"), ("GE ", "GE"), ("GE MEDICAL", "GE"),
                         ("PHILIPS", "PHILIPS"), ("CANON", "CANON"), ("TOSHIBA", "CANON"),
                         ("UIH", "UIH"), ("UNITED IMAGING", "UIH")):
        if needle in m + " ":
            return name
    return m.strip() or "UNKNOWN"


def find_value(ds: Dataset, keyword: str):
    """A header value at top level or, for enhanced multi-frame, in the shared (then first
    per-frame) functional groups."""
    if keyword in ds and ds.get(keyword) not in (None, ""):
        return ds.get(keyword)
    for seq_kw in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        seq = ds.get(seq_kw)
        if seq:
            found = _search(seq[0], keyword)
            if found is not None:
                return found
    return None


def _search(item: Dataset, keyword: str):
    if keyword in item and item.get(keyword) not in (None, ""):
        return item.get(keyword)
    for elem in item:
        if elem.VR == "SQ" and elem.value:
            found = _search(elem.value[0], keyword)
            if found is not None:
                return found
    return None


def acquisition_values(header: Dataset, n_slices: int) -> dict:
    """The values the protocol checks, from a series' first header (+ slice count)."""
    def num(kw):
        v = find_value(header, kw)
        try:
            return float(v) if v is not None else None
        except (TypeError, ValueError):
            return None

    out = {kw: num(kw) for kw in ("MagneticFieldStrength", "RepetitionTime", "InversionTime",
                                  "FlipAngle", "SliceThickness", "SpacingBetweenSlices")}
    out["EchoTime"] = num("EchoTime") if num("EchoTime") is not None else num("EffectiveEchoTime")
    ps = find_value(header, "PixelSpacing")
    rows, cols = header.get("Rows"), header.get("Columns")
    if ps is not None and out["SliceThickness"] is not None:
        out["VoxelSize"] = [float(ps[0]), float(ps[1]), out["SliceThickness"]]
    if rows and cols:
        out["Matrix"] = [int(rows), int(cols)]
        if ps is not None:
            step = out["SpacingBetweenSlices"] or out["SliceThickness"] or 0.0
            frames = int(header.get("NumberOfFrames", 1) or 1)
            n = max(n_slices, frames)
            extents = [int(rows) * float(ps[0]), int(cols) * float(ps[1]), n * step]
            out["Coverage"] = sorted(extents, reverse=True)
    return out


def classify(header: Dataset, protocol: dict) -> str:
    """Series type of the first classification rule whose every field matches, else 'other'."""
    for rule in protocol["classification"]:
        ok = True
        for field_name, pattern in rule["where"].items():
            value = find_value(header, field_name)
            if isinstance(value, (list, tuple)) or hasattr(value, "__iter__") and not isinstance(
                    value, str):
                value = "\\".join(str(v) for v in value)
            if value is None or not re.search(pattern, str(value)):
                ok = False
                break
        if ok:
            return rule["type"]
    return "other"


@dataclass
class Verdict:
    series_type: str
    compliant: bool
    deviations: list[str] = field(default_factory=list)


def _fmt(v) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(f"{x:g}" if isinstance(x, float) else str(x) for x in v) + "]"
    return f"{v:g}" if isinstance(v, float) else str(v)


def check_value(name: str, value, rule: dict) -> str | None:
    """A deviation message, or None when ``value`` satisfies ``rule``."""
    if value is None:
        return f"{name} missing from the header"
    vals = np.atleast_1d(np.asarray(value, dtype=float)) if not isinstance(value, str) else None
    if "equals" in rule:
        want = rule["equals"]
        tol = float(rule.get("tolerance", 0.0))
        if vals is None or isinstance(want, str):
            if str(value) != str(want):
                return f"{name} is {value!r}, protocol requires {want!r}"
        else:
            w = np.atleast_1d(np.asarray(want, dtype=float))
            if w.shape != vals.shape or np.any(np.abs(vals - w) > tol + 1e-9):
                return (f"{name} is {_fmt(value)}, protocol requires {_fmt(want)}"
                        + (f" \u00b1 {tol:g}" if tol else ""))
    if "min" in rule and vals is not None:
        lo = np.atleast_1d(np.asarray(rule["min"], dtype=float))
        if lo.shape == vals.shape and np.any(vals < lo - 1e-9):
            return f"{name} is {_fmt(value)}, below the protocol minimum {_fmt(rule['min'])}"
    if "max" in rule and vals is not None:
        hi = np.atleast_1d(np.asarray(rule["max"], dtype=float))
        if hi.shape == vals.shape and np.any(vals > hi + 1e-9):
            return f"{name} is {_fmt(value)}, above the protocol maximum {_fmt(rule['max'])}"
    if "in" in rule and value not in rule["in"]:
        return f"{name} is {_fmt(value)}, protocol allows {rule['in']}"
    return None


def check_series(series_type: str, header: Dataset, n_slices: int, protocol: dict) -> Verdict:
    """Check a classified series against the locked protocol, naming every deviation."""
    spec = protocol["series"].get(series_type)
    if spec is None:
        return Verdict(series_type, False, [f"series type {series_type!r} is not in the protocol"])
    rules = dict(spec.get("checks", {}))
    rules.update(spec.get("vendors", {}).get(vendor(header), {}))
    values = acquisition_values(header, n_slices)
    deviations = [msg for name, rule in rules.items()
                  if (msg := check_value(name, values.get(name), rule))]
    return Verdict(series_type, not deviations, deviations)
