"""Reading the stages' per-session rows (the stage contract's outputs) back, for any stage."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from trialprep.layout import StudyLayout
from trialprep.stages import ROW_ID_COLUMNS, Stage
from trialprep.tables import read_table, write_json, write_table


def load_stage_rows(stage: Stage, layout: StudyLayout) -> pd.DataFrame:
    """Every session row of ``stage`` (identifying columns as text), sorted by subject and
    session; an empty frame with the identifying columns when the stage has none."""
    paths = stage.row_paths(layout)
    if not paths:
        return pd.DataFrame(columns=list(ROW_ID_COLUMNS))
    rows = pd.concat([read_table(p) for p in paths], ignore_index=True)
    for col in ROW_ID_COLUMNS:
        rows[col] = rows[col].fillna("").astype(str)
    return rows.sort_values(["participant_id", "session_id"], kind="stable").reset_index(
        drop=True)


def biomarker_columns(rows: pd.DataFrame) -> list[str]:
    """A stage row's biomarkers: every column but the identifying ones."""
    return [c for c in rows.columns if c not in ROW_ID_COLUMNS]


def stage_dictionary(stage: Stage, layout: StudyLayout) -> dict[str, dict]:
    """The stage's column dictionary, merged over its sessions' row sidecars."""
    out: dict[str, dict] = {}
    for path in stage.row_paths(layout):
        sidecar = path.with_suffix(".json")
        if not sidecar.exists():
            continue
        meta = json.loads(sidecar.read_text())
        out.update({k: v for k, v in meta.items() if not k.startswith("_")})
    return out


def read_iqms(stage: Stage, layout: StudyLayout, sub: str, ses: str) -> dict:
    """The session's IQM record ({} when the stage wrote none: a failed session)."""
    path = stage.iqm_path(layout, sub, ses)
    if not path.exists():
        return {}
    return {k: v for k, v in json.loads(path.read_text()).items() if not k.startswith("_")}


def collect_stage_rows(stage: Stage, layout: StudyLayout, out: Path) -> pd.DataFrame:
    """Every session row of ``stage`` in one table at ``out``, its dictionary beside it."""
    table = load_stage_rows(stage, layout)
    if table.empty:
        raise FileNotFoundError(f"no {stage.name} session rows under {stage.dataset(layout)}")
    dictionary = stage_dictionary(stage, layout)
    write_table(table, out)
    write_json({c: dictionary.get(c, {}) for c in table.columns}, Path(out).with_suffix(".json"))
    return table
