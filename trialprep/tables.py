"""Read and write tables by extension: .tsv, .csv, .parquet (atomically)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from trialprep.atomic import atomic_path


def read_table(path: str | Path, as_text: bool = False) -> pd.DataFrame:
    """A table by extension; ``as_text`` keeps every cell as a string (labels like '01')."""
    path = Path(path)
    suffix = path.suffix.lower()
    kw = {"dtype": str, "keep_default_na": False} if as_text else {}
    if suffix == ".parquet":
        df = pd.read_parquet(path)
        return df.astype(str) if as_text else df
    if suffix in (".tsv", ".txt"):
        return pd.read_csv(path, sep="\t", **kw)
    if suffix == ".csv":
        return pd.read_csv(path, **kw)
    raise ValueError(f"{path}: unknown table format {suffix!r} (use .tsv, .csv or .parquet)")


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` by extension via a temporary file, so readers never see half a table."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".tsv", ".txt", ".csv"):
        raise ValueError(f"{path}: unknown table format {suffix!r} (use .tsv, .csv or .parquet)")
    with atomic_path(path) as tmp:
        if suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        elif suffix == ".csv":
            df.to_csv(tmp, index=False)
        else:
            df.to_csv(tmp, sep="\t", index=False, na_rep="n/a")
    return path


def write_text(text: str, path: str | Path) -> Path:
    """Write ``text`` (UTF-8) via a temporary file, so readers never see half a file."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def write_json(obj: object, path: str | Path) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    import json

    return write_text(json.dumps(obj, indent=2, default=_json_default) + "\n", path)


def _json_default(value: object) -> object:
    import numpy as np

    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return str(value)
