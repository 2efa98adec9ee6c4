"""The JSON data dictionary of a biomarker table: every column's stage, meaning, unit and
type."""

from __future__ import annotations

import pandas as pd

from trialprep import __version__
from trialprep.stages import ROW_ID_COLUMNS

#: The table's session-level columns.
SESSION_DESCRIPTIONS = {
    "participant_id": "keyed pseudonym of the participant",
    "session_id": "visit (BIDS session)", "site": "acquisition site",
    "epoch": "harmonization batch: site x manufacturer x model x software version",
    "time": "years since the participant's first session in the table's data",
    "age": "age at the session (years)", "sex": "sex", "dx": "diagnosis",
    "pipeline_version": "trialprep version that produced the biomarkers",
    "config_sha256": "SHA-256 of the study configuration used to build the table",
}
#: A stage's own columns, ``<stage>_<what>``.
STAGE_COLUMN_DESCRIPTIONS = {
    "qc_verdict": "QC gate verdict of the {stage} stage's image (after any human decision)",
    "source": "the image the {stage} stage's biomarkers come from (BIDS URI)",
    "source_sha256": "SHA-256 of that source image",
    "config_sha256": "SHA-256 of the {stage} stage's settings that produced the row",
}


def data_dictionary(df: pd.DataFrame, features: list[str], kind: str, config,
                    skipped: list[str], record: dict | None = None,
                    stages: dict[str, str] | None = None,
                    meanings: dict[str, dict] | None = None) -> dict:
    """The table's JSON dictionary: every column's description, unit, type and (for a
    stage's columns) ``Stage``; categorical columns with their levels (in the order of the
    column's categories). ``meanings`` gives each biomarker's description and unit as its
    stage's row dictionary has them."""
    stages, meanings = stages or {}, meanings or {}
    out = {}
    for c in df.columns:
        if c in features:
            continue
        stage = stages.get(c)
        if stage and c.startswith(f"{stage}_") and c[len(stage) + 1:] in \
                STAGE_COLUMN_DESCRIPTIONS:
            text = STAGE_COLUMN_DESCRIPTIONS[c[len(stage) + 1:]].format(stage=stage)
        else:
            text = SESSION_DESCRIPTIONS.get(c, f"covariate {c} (participants.tsv)")
        entry = {"Description": text}
        if stage:
            entry["Stage"] = stage
        if isinstance(df[c].dtype, pd.CategoricalDtype):
            entry["Levels"] = {str(v): str(v) for v in df[c].cat.categories}
            entry["DataType"] = "categorical"
        elif pd.api.types.is_float_dtype(df[c].dtype):
            entry["DataType"] = "float64"
        else:
            entry["DataType"] = "string"
        out[c] = entry
    for c in ("age", "time"):
        if c in out:
            out[c]["Units"] = "years"
    how = (record or {}).get("method", "ComBat")
    protected = ", ".join((record or {}).get("covariates", config["harmonization"]["covariates"]))
    for f in features:
        meaning = meanings.get(f, {})
        unit = meaning.get("Units") or _unit_from_name(f)
        what = meaning.get("Description") or f"biomarker {f}"
        note = (f"harmonized across scanner epochs by {how}, protected covariates {protected}"
                if kind == "harmonized" else "as measured (not harmonized)")
        out[f] = {"Description": f"{what}; {note}", "Units": unit, "DataType": "float64"}
        if f in stages:
            out[f]["Stage"] = stages[f]
    out["_table"] = {"kind": kind, "rows": len(df), "trialprep": __version__,
                     "config_sha256": config.hash,
                     "features_not_harmonized": {f: "missing or constant in some session"
                                                 for f in skipped},
                     "id_columns_of_session_rows": list(ROW_ID_COLUMNS),
                     "column_rule": "session keys and covariates; per stage "
                                    "<stage>_qc_verdict, <stage>_source, "
                                    "<stage>_source_sha256, <stage>_config_sha256; then each "
                                    "stage's biomarkers with the stage's column prefix (none "
                                    "for anat, whose names end in their unit)"}
    if record is not None and kind == "harmonized":
        out["_table"]["harmonization"] = {k: v for k, v in record.items() if k != "in_folds"}
    return out


def _unit_from_name(column: str) -> str:
    if column.endswith("_mm3"):
        return "mm^3"
    if column.endswith("_mm"):
        return "mm"
    return "n/a"
