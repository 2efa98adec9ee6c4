"""Read and write tables by extension: .tsv, .csv, .parquet (atomically)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd


def read_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pd.read_parquet(path)
    if suffix in (".tsv", ".txt"):
        return pd.read_csv(path, sep="\t")
    if suffix == ".csv":
        return pd.read_csv(path)
    raise ValueError(f"{path}: unknown table format {suffix!r} (use .tsv, .csv or .parquet)")


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` by extension via a temporary file, so readers never see half a table."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        df.to_parquet(tmp, index=False)
    elif suffix in (".tsv", ".txt"):
        df.to_csv(tmp, sep="\t", index=False, na_rep="n/a")
    elif suffix == ".csv":
        df.to_csv(tmp, index=False)
    else:
        raise ValueError(f"{path}: unknown table format {suffix!r} (use .tsv, .csv or .parquet)")
    tmp.replace(path)
    return path
