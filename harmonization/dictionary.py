"""The JSON data dictionary of a biomarker table: every column's meaning, unit and type."""

from __future__ import annotations

import pandas as pd

from trialprep import __version__
from trialprep.workflows.anat.session import ID_COLUMNS


def data_dictionary(df: pd.DataFrame, features: list[str], kind: str, config,
                    skipped: list[str], record: dict | None = None) -> dict:
    """The table's JSON dictionary: every column's description, unit and type; categorical
    columns with their levels (in the order of the column's categories)."""
    fixed = {
        "participant_id": "keyed pseudonym of the participant",
        "session_id": "visit (BIDS session)", "site": "acquisition site",
        "epoch": "harmonization batch: site x manufacturer x model x software version",
        "qc_verdict": "QC gate verdict (after any human decision)",
        "time": "years since the participant's first session in the table's data",
        "age": "age at the session (years)", "sex": "sex", "dx": "diagnosis",
        "pipeline_version": "trialprep version that produced the biomarkers",
        "config_sha256": "SHA-256 of the study configuration used to build the table",
        "anat_config_sha256": "SHA-256 of the anatomical settings that produced the row",
        "source": "source T1w (BIDS URI)", "source_sha256": "SHA-256 of the source T1w",
    }
    out = {}
    for c in df.columns:
        if c in features:
            continue
        entry = {"Description": fixed.get(c, f"covariate {c} (participants.tsv)")}
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
        unit = "mm^3" if f.endswith("_mm3") else "mm"
        what = "volume" if unit == "mm^3" else "mean cortical thickness"
        region = f.removesuffix("_mm3").removesuffix("_thickness_mm")
        note = (f"harmonized across scanner epochs by {how}, protected covariates {protected}"
                if kind == "harmonized" else "as measured (not harmonized)")
        out[f] = {"Description": f"{what} of {region}; {note}", "Units": unit,
                  "DataType": "float64"}
    out["_table"] = {"kind": kind, "rows": len(df), "trialprep": __version__,
                     "config_sha256": config.hash,
                     "features_not_harmonized": {f: "missing or constant in some session"
                                                 for f in skipped},
                     "id_columns_of_session_rows": list(ID_COLUMNS)}
    if record is not None and kind == "harmonized":
        out["_table"]["harmonization"] = {k: v for k, v in record.items() if k != "in_folds"}
    return out
