"""Gather the per-session biomarker rows into one study table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from trialprep.tables import read_table, write_json, write_table
from trialprep.workflows.anat.session import biomarker_row_paths


def collect_biomarkers(bids: Path, out: Path) -> pd.DataFrame:
    """Concatenate every ``*_desc-biomarkers_morph.tsv`` (sorted by subject and session)
    into ``out``, with a data dictionary beside it."""
    import json

    rows = biomarker_row_paths(bids)
    table = pd.concat([read_table(p) for p in rows], ignore_index=True)
    id_cols = ["participant_id", "session_id"]
    table = table.sort_values(id_cols, kind="stable").reset_index(drop=True)
    dictionary: dict = {}
    for p in rows:
        meta = json.loads(p.with_suffix(".json").read_text())
        dictionary.update({k: v for k, v in meta.items() if not k.startswith("_")})
    write_table(table, out)
    write_json({c: dictionary.get(c, {}) for c in table.columns},
               Path(out).with_suffix(".json"))
    return table
