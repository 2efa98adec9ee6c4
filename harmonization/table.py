"""The harmonized biomarker table: gate-passed sessions only, batches = scanner epochs.

Written for biostatisticians as Parquet and TSV with a JSON data dictionary; every row
carries the pipeline version, the study configuration's checksum and the checksum of its
source image; the fitted ComBat model is saved beside it, with the excluded sessions and
the reason each was left out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from trialprep import __version__
from trialprep.harmonization import core, diagnostics
from trialprep.harmonization.design import HarmonizationError
from trialprep.provenance import environment_record, sha256_file
from trialprep.tables import read_table, write_json, write_table
from trialprep.workflows.anat.session import ID_COLUMNS, biomarker_row_paths
from trialprep.workflows.qc.gates import image_key, qc_dir

META_COLUMNS = ("participant_id", "session_id", "site", "epoch", "qc_verdict", "age", "sex",
                "dx", "pipeline_version", "config_sha256", "anat_config_sha256",
                "source", "source_sha256")


class VersionLockError(HarmonizationError):
    """Rows from different pipeline versions would be mixed in one table."""


def biomarker_features(rows: pd.DataFrame) -> list[str]:
    """Biomarker columns: volumes (``*_mm3``) and thicknesses (``*_thickness_mm``)."""
    return [c for c in rows.columns if c.endswith("_mm3") or c.endswith("_thickness_mm")]


def load_rows(bids: Path) -> pd.DataFrame:
    rows = pd.concat([read_table(p) for p in biomarker_row_paths(bids)], ignore_index=True)
    for col in ("participant_id", "session_id", "status", "reason", "source", "pipeline_version",
                "config_sha256", "source_sha256"):
        rows[col] = rows[col].fillna("").astype(str)
    return rows


def check_version_lock(rows: pd.DataFrame) -> None:
    """One pipeline version per table: otherwise a clear error naming them."""
    versions = sorted(rows["pipeline_version"].unique())
    if len(versions) > 1:
        parts = []
        for v in versions:
            these = rows[rows["pipeline_version"] == v]
            first = these.iloc[0]
            parts.append(f"{v} ({len(these)} session(s), e.g. {first['participant_id']} "
                         f"{first['session_id']})")
        detail = ", ".join(parts)
        raise VersionLockError(
            f"biomarker rows come from different pipeline versions: {detail}. Reprocess the "
            "older sessions with one version before building a table (version-lock policy).")


def _covariates(bids: Path, table: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    part = read_table(Path(bids) / "participants.tsv", as_text=True)
    sessions = []
    for path in sorted(Path(bids).glob("sub-*/sub-*_sessions.tsv")):
        t = read_table(path, as_text=True)
        t.insert(0, "participant_id", path.parent.name)
        sessions.append(t)
    ses = pd.concat(sessions, ignore_index=True)
    merged = table[["participant_id", "session_id"]].merge(
        ses[["participant_id", "session_id", "age"]], how="left")
    merged = merged.merge(part.drop(columns=["age", "site"], errors="ignore"),
                          on="participant_id", how="left")
    for name in names:
        if name not in merged:
            raise HarmonizationError(f"covariate {name!r} is in neither sessions.tsv nor "
                                     "participants.tsv")
    return merged


def build_table(bids: Path, config, out_dir: Path) -> dict:
    """Build and write the unharmonized and harmonized tables; returns what was written."""
    bids, out_dir = Path(bids), Path(out_dir)
    h = config["harmonization"]
    rows = load_rows(bids)
    verdicts = read_table(qc_dir(bids) / "image_verdicts.tsv", as_text=True)
    rows["image"] = [image_key(s) if s else f"{p}_{s_}_T1w.nii.gz" for s, p, s_ in
                     zip(rows["source"], rows["participant_id"], rows["session_id"],
                         strict=True)]
    rows = rows.merge(verdicts[["image", "site", "epoch", "verdict", "rules_fired",
                                "decided_by", "decision_reason"]], on="image", how="left")
    keep_levels = {"pass", "warn"} if h["include_warn"] else {"pass"}
    kept = rows["verdict"].isin(keep_levels) & (rows["status"] == "ok")
    excluded = rows.loc[~kept, ["participant_id", "session_id", "site", "image", "verdict",
                                "status", "reason", "rules_fired"]].copy()
    excluded["why"] = [
        r if st != "ok" else (f"QC gate {v}: {rf}" if isinstance(v, str) else "no QC verdict")
        for r, st, v, rf in zip(excluded["reason"], excluded["status"], excluded["verdict"],
                                excluded["rules_fired"], strict=True)]
    alone = kept & (rows["epoch"].map(rows[kept].groupby("epoch").size()).fillna(0) < 2)
    kept &= ~alone
    excluded = pd.concat([excluded, rows.loc[alone, excluded.columns[:-1]].assign(
        why="the only gate-passed session of its scanner epoch: ComBat cannot estimate that "
            "batch")], ignore_index=True)
    table = rows[kept].reset_index(drop=True)
    if table.empty:
        raise HarmonizationError("no session passed the QC gates: nothing to harmonize")
    check_version_lock(table)
    features = biomarker_features(table)
    values = table[features].apply(pd.to_numeric, errors="coerce")
    finite = [f for f in features if np.isfinite(values[f]).all() and values[f].std() > 0]
    skipped = sorted(set(features) - set(finite))
    cov = _covariates(bids, table, h["covariates"])
    covars = cov[h["covariates"]].copy()
    for c in h["covariates"]:
        if c not in h["categorical"]:
            covars[c] = pd.to_numeric(covars[c], errors="coerce")
    batch = table["epoch"].to_numpy()
    mean_only = h["mean_only"]
    if mean_only == "auto":
        mean_only = bool(pd.Series(batch).value_counts().min() < h["min_batch_for_scale"])
    settings = dict(smooth=h["smooth"], parametric=h["parametric"], eb_=h["eb"],
                    mean_only=mean_only, ref_batch=h["ref_batch"])
    harmonized, model = core.harmonize(
        values[finite].to_numpy(float), batch, covars.reset_index(drop=True),
        categorical=h["categorical"], **settings)
    sources = [bids / s.removeprefix("bids::") for s in table["source"]]
    meta = pd.DataFrame({
        "participant_id": table["participant_id"], "session_id": table["session_id"],
        "site": table["site"], "epoch": table["epoch"], "qc_verdict": table["verdict"],
        "age": cov["age"].to_numpy(), "sex": cov["sex"].to_numpy(), "dx": cov["dx"].to_numpy(),
        "pipeline_version": table["pipeline_version"], "config_sha256": config.hash,
        "anat_config_sha256": table["config_sha256"], "source": table["source"],
        "source_sha256": table["source_sha256"]})
    for src, recorded in zip(sources, table["source_sha256"], strict=True):
        if sha256_file(src) != recorded:
            raise HarmonizationError(f"{src} changed since it was processed (checksum "
                                     "differs): reprocess it before building the table")
    raw = pd.concat([meta, values[finite].reset_index(drop=True)], axis=1)
    harm = pd.concat([meta, pd.DataFrame(harmonized, columns=finite)], axis=1)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.provenance.update({"trialprep": __version__, "config_sha256": config.hash,
                             "sessions": len(harm), "environment": environment_record(),
                             "batches": "scanner epochs (site x manufacturer x model x "
                                        "software)"})
    written = {}
    for name, df in (("unharmonized", raw), ("harmonized", harm)):
        for ext in (".parquet", ".tsv"):
            written[f"{name}{ext}"] = write_table(df, out_dir / f"biomarkers_{name}{ext}")
        write_json(data_dictionary(df, finite, name, config, skipped),
                   out_dir / f"biomarkers_{name}.json")
    written["model"] = model.save(out_dir / "biomarkers_harmonized.combat.npz")
    written["excluded"] = write_table(excluded.drop(columns=["reason", "rules_fired"]),
                                      out_dir / "excluded_sessions.tsv")
    diag = diagnostics.summarize(raw[finite].to_numpy(float), harmonized, batch,
                                 covars.reset_index(drop=True), h["categorical"], finite,
                                 groups=table["participant_id"].to_numpy(), settings=settings)
    diag["mean_only"] = mean_only
    diag["smallest_batch"] = int(pd.Series(batch).value_counts().min())
    written["diagnostics"] = write_json(diag, out_dir / "harmonization_diagnostics.json")
    return {"written": written, "table": harm, "raw": raw, "excluded": excluded,
            "features": finite, "skipped": skipped, "diagnostics": diag}


def data_dictionary(df: pd.DataFrame, features: list[str], kind: str, config,
                    skipped: list[str]) -> dict:
    fixed = {
        "participant_id": "keyed pseudonym of the participant",
        "session_id": "visit (BIDS session)", "site": "acquisition site",
        "epoch": "harmonization batch: site x manufacturer x model x software version",
        "qc_verdict": "QC gate verdict (after any human decision)",
        "age": "age at the session (years)", "sex": "sex", "dx": "diagnosis",
        "pipeline_version": "trialprep version that produced the biomarkers",
        "config_sha256": "SHA-256 of the study configuration used to build the table",
        "anat_config_sha256": "SHA-256 of the anatomical settings that produced the row",
        "source": "source T1w (BIDS URI)", "source_sha256": "SHA-256 of the source T1w",
    }
    out = {c: {"Description": fixed[c]} for c in df.columns if c in fixed}
    out["age"]["Units"] = "years"
    for f in features:
        unit = "mm^3" if f.endswith("_mm3") else "mm"
        what = "volume" if unit == "mm^3" else "mean cortical thickness"
        region = f.removesuffix("_mm3").removesuffix("_thickness_mm")
        note = ("ComBat-harmonized across epochs, protected covariates "
                f"{', '.join(config['harmonization']['covariates'])}" if kind == "harmonized"
                else "as measured (not harmonized)")
        out[f] = {"Description": f"{what} of {region}; {note}", "Units": unit}
    out["_table"] = {"kind": kind, "rows": len(df), "trialprep": __version__,
                     "config_sha256": config.hash,
                     "features_not_harmonized": {f: "missing or constant in some session"
                                                 for f in skipped},
                     "id_columns_of_session_rows": list(ID_COLUMNS)}
    return out
