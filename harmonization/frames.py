"""Feature tables in and out of the command line: the features as one matrix.

A wide table (thousands of feature columns) is read with pyarrow and its feature columns
stacked into one float matrix, without building a pandas frame column by column; the
harmonized matrix is written back the same way, in the input's column order, with the other
columns (IDs, covariates) carried through as they were.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass
class FeatureTable:
    """A table split into its feature matrix and the other columns."""

    columns: list[str]        # all columns, in the file's order
    others: pd.DataFrame      # the non-feature columns
    features: list[str]
    matrix: np.ndarray        # rows x features, float64

    def frame(self, names: list[str]) -> pd.DataFrame:
        """Some feature columns as a frame (one block, no copy per column)."""
        idx = [self.features.index(n) for n in names]
        return pd.DataFrame(self.matrix[:, idx], columns=names)


def _is_numeric(dtype) -> bool:
    return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)


def read_feature_table(path: Path, exclude: list[str],
                       features: list[str] | None = None) -> FeatureTable:
    """Read ``path`` (.parquet, .tsv, .csv); ``features`` default to every numeric column
    not in ``exclude``."""
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        columns = table.column_names
        if features is None:
            features = [c for c, t in zip(columns, table.schema.types, strict=True)
                        if c not in exclude and (pa.types.is_integer(t) or
                                                 pa.types.is_floating(t))]
        _require(features, columns, path)
        wanted = set(features)
        matrix = np.empty((table.num_rows, len(features)), order="F")
        for j, name in enumerate(features):
            col = table.column(name)
            matrix[:, j] = col.to_numpy(zero_copy_only=False) if col.null_count == 0 else \
                col.to_pandas().to_numpy(float)
        others = table.select([c for c in columns if c not in wanted]).to_pandas()
        return FeatureTable(columns, others, features, matrix)
    from trialprep.tables import read_table

    df = read_table(path)
    if features is None:
        features = [c for c in df.columns if c not in exclude and _is_numeric(df[c].dtype)]
    _require(features, list(df.columns), path)
    wanted = set(features)
    return FeatureTable(list(df.columns), df[[c for c in df.columns if c not in wanted]],
                        features, df[features].to_numpy(float))


def _require(features: list[str], columns: list[str], path: Path) -> None:
    from trialprep.harmonization.design import HarmonizationError

    missing = [f for f in features if f not in columns]
    if missing:
        raise HarmonizationError(f"column(s) {missing[:5]} not in {path}")
    if not features:
        raise HarmonizationError(f"no numeric feature columns in {path}")


def write_feature_table(table: FeatureTable, harmonized: np.ndarray, path: Path) -> Path:
    """The table with its features replaced by ``harmonized``, atomically, by extension."""
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        H = np.asfortranarray(harmonized)  # each column a contiguous view: no copies
        carried = pa.Table.from_pandas(table.others, preserve_index=False)
        by_name = {name: H[:, j] for j, name in enumerate(table.features)}
        arrays = [pa.array(by_name[c]) if c in by_name else carried.column(c)
                  for c in table.columns]
        out = pa.Table.from_arrays(arrays, names=table.columns)
        from trialprep.atomic import atomic_path

        with atomic_path(path) as tmp:
            pq.write_table(out, tmp, compression="snappy",
                           use_dictionary=[c for c in table.columns if c not in by_name])
        return path
    from trialprep.tables import write_table

    df = pd.concat([table.others.reset_index(drop=True),
                    pd.DataFrame(harmonized, columns=table.features)], axis=1)
    return write_table(df[table.columns], path)
