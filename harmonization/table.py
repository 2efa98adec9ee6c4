"""The harmonized biomarker table: gate-passed sessions only, batches = scanner epochs.

Written for biostatisticians as Parquet and TSV with a JSON data dictionary; every row
carries the pipeline version, the study configuration's checksum and the checksum of its
source image; the fitted ComBat model is saved beside it, with the excluded sessions and
the reason each was left out.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from trialprep import __version__
from trialprep.harmonization import diagnostics
from trialprep.harmonization.design import HarmonizationError, _natural_key
from trialprep.harmonization.dictionary import data_dictionary
from trialprep.harmonization.table_model import harmonize_table
from trialprep.provenance import environment_record, sha256_file
from trialprep.tables import read_table, write_json, write_table
from trialprep.workflows.anat.session import biomarker_row_paths
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


def _covariates(bids: Path, table: pd.DataFrame, names: list[str],
                categorical: list[str]) -> pd.DataFrame:
    """Per table row: participant, session, ``time`` (years since the participant's first
    session, from the shifted session dates: intervals are kept) and the covariates, typed
    (categorical ones as strings, the others numeric)."""
    part = read_table(Path(bids) / "participants.tsv", as_text=True)
    sessions = []
    for path in sorted(Path(bids).glob("sub-*/sub-*_sessions.tsv")):
        t = read_table(path, as_text=True)
        t.insert(0, "participant_id", path.parent.name)
        sessions.append(t)
    ses = pd.concat(sessions, ignore_index=True)
    merged = table[["participant_id", "session_id"]].merge(
        ses[["participant_id", "session_id", "age", "acq_time"]], how="left")
    merged = merged.merge(part.drop(columns=["age", "site"], errors="ignore"),
                          on="participant_id", how="left")
    for name in names:
        if name not in merged:
            raise HarmonizationError(f"covariate {name!r} is in neither sessions.tsv nor "
                                     "participants.tsv")
    when = pd.to_datetime(merged.pop("acq_time"), errors="coerce")
    first = when.groupby(merged["participant_id"]).transform("min")
    merged["time"] = ((when - first).dt.days / 365.25).astype(float)
    for name in names:
        if name in categorical:
            merged[name] = merged[name].astype(str)
        else:
            merged[name] = pd.to_numeric(merged[name], errors="coerce").astype(float)
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
    if not kept.any():
        raise HarmonizationError("no session passed the QC gates: nothing to harmonize")
    passed = rows[kept].reset_index(drop=True)
    alone = kept & (rows["epoch"].map(rows[kept].groupby("epoch").size()).fillna(0) < 2)
    kept &= ~alone
    excluded = pd.concat([excluded, rows.loc[alone, excluded.columns[:-1]].assign(
        why="the only gate-passed session of its scanner epoch: ComBat cannot estimate that "
            "batch")], ignore_index=True)
    table = rows[kept].reset_index(drop=True)
    if table.empty:
        return _unharmonized_only(bids, passed, excluded, config, out_dir)
    check_version_lock(table)
    features = biomarker_features(table)
    values = table[features].apply(pd.to_numeric, errors="coerce")
    finite = [f for f in features if np.isfinite(values[f]).all() and values[f].std() > 0]
    skipped = sorted(set(features) - set(finite))
    cov = _covariates(bids, table, h["covariates"], h["categorical"])
    batch = table["epoch"].to_numpy()
    mean_only = h["mean_only"]
    if mean_only == "auto":
        mean_only = bool(pd.Series(batch).value_counts().min() < h["min_batch_for_scale"])
    result = harmonize_table(values[finite].to_numpy(float), finite, batch, cov, h,
                             mean_only)
    for src, recorded in zip(table["source"], table["source_sha256"], strict=True):
        if sha256_file(bids / src.removeprefix("bids::")) != recorded:
            raise HarmonizationError(f"{src} changed since it was processed (checksum "
                                     "differs): reprocess it before building the table")
    done = np.array([i not in result.unapplied for i in range(len(table))])
    if result.unapplied:
        rows_out = table.loc[~done, excluded.columns[:-1].intersection(table.columns)]
        excluded = pd.concat([excluded, rows_out.assign(why=[
            result.unapplied[i] for i in np.flatnonzero(~done)])], ignore_index=True)
    meta = _meta(table, cov, h, config.hash)
    raw = pd.concat([meta, values[finite].reset_index(drop=True)], axis=1)[done]
    harm = pd.concat([meta, pd.DataFrame(result.values, columns=finite)], axis=1)[done]
    raw, harm = raw.reset_index(drop=True), harm.reset_index(drop=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = result.model
    provenance = model.combat.provenance if hasattr(model, "combat") else model.provenance
    provenance.update({"trialprep": __version__, "config_sha256": config.hash,
                       "sessions": len(harm), "environment": environment_record(),
                       "batches": "scanner epochs (site x manufacturer x model x software)",
                       "harmonization": result.record})
    written = {}
    for name, df in (("unharmonized", raw), ("harmonized", harm)):
        for ext in (".parquet", ".tsv"):
            written[f"{name}{ext}"] = write_table(df, out_dir / f"biomarkers_{name}{ext}")
        write_json(data_dictionary(df, finite, name, config, skipped, result.record),
                   out_dir / f"biomarkers_{name}.json")
    written["model"] = model.save(out_dir / "biomarkers_harmonized.combat.npz")
    written["excluded"] = write_table(excluded.drop(columns=["reason", "rules_fired"]),
                                      out_dir / "excluded_sessions.tsv")
    written["diagnostics"] = write_json(_diagnostics(raw, harm, finite, h, result, mean_only),
                                        out_dir / "harmonization_diagnostics.json")
    return {"written": written, "table": harm, "raw": raw, "excluded": excluded,
            "features": finite, "skipped": skipped,
            "diagnostics": json.loads(written["diagnostics"].read_text())}


def _meta(table: pd.DataFrame, cov: pd.DataFrame, h: dict, config_hash: str) -> pd.DataFrame:
    """The table's non-biomarker columns, typed: categorical covariates (and site, epoch,
    verdict) as pandas categoricals, ages and times as floats."""
    def categorical(values) -> pd.Categorical:
        v = pd.Series(values).astype(str).to_numpy()
        return pd.Categorical(v, categories=sorted(set(v), key=_natural_key))

    cols = {"participant_id": table["participant_id"].to_numpy(),
            "session_id": table["session_id"].to_numpy(),
            "site": categorical(table["site"]), "epoch": categorical(table["epoch"]),
            "qc_verdict": categorical(table["verdict"]),
            "time": cov["time"].to_numpy(float)}
    for c in h["covariates"]:
        cols[c] = categorical(cov[c]) if c in h["categorical"] else cov[c].to_numpy(float)
    cols.update({"pipeline_version": table["pipeline_version"].to_numpy(),
                 "config_sha256": config_hash,
                 "anat_config_sha256": table["config_sha256"].to_numpy(),
                 "source": table["source"].to_numpy(),
                 "source_sha256": table["source_sha256"].to_numpy()})
    return pd.DataFrame(cols)


def _diagnostics(raw: pd.DataFrame, harm: pd.DataFrame, features: list[str], h: dict,
                 result, mean_only) -> dict:
    """Before/after diagnostics; the AUC after with the table's model refitted in folds."""
    covs = result.covariates
    cov = raw[covs] if covs else None
    categorical = [c for c in h["categorical"] if c in covs]
    batch = raw["epoch"].astype(str).to_numpy()
    X = raw[features].to_numpy(float)
    settings, in_folds = None, None
    if result.record["model"] == "longitudinal":
        in_folds = diagnostics.longitudinal_in_folds(
            X, batch, raw[["participant_id", "time", *covs]], **result.record["in_folds"])
    elif not h.get("covbat"):
        settings = result.record["settings"]
    diag = diagnostics.summarize(X, harm[features].to_numpy(float), batch, cov, categorical,
                                 features, groups=raw["participant_id"].to_numpy(),
                                 settings=settings, in_folds=in_folds)
    diag.update(model=result.record["method"], harmonization=result.record,
                mean_only=mean_only,
                smallest_batch=int(pd.Series(batch).value_counts().min()))
    return diag


#: What build_table writes when harmonizing (removed when it cannot harmonize).
HARMONIZED_FILES = ("biomarkers_harmonized.parquet", "biomarkers_harmonized.tsv",
                    "biomarkers_harmonized.json", "biomarkers_harmonized.combat.npz")


def _unharmonized_only(bids: Path, passed: pd.DataFrame, excluded: pd.DataFrame, config,
                       out_dir: Path) -> dict:
    """Sessions passed the gates but no scanner epoch has two of them (a pilot, one site's
    first session): the unharmonized table alone, and the reason there is no harmonized one
    (in the diagnostics, the dictionary and on the terminal)."""
    check_version_lock(passed)
    h = config["harmonization"]
    features = biomarker_features(passed)
    values = passed[features].apply(pd.to_numeric, errors="coerce")
    finite = [f for f in features if np.isfinite(values[f]).all()]
    skipped = sorted(set(features) - set(finite))
    cov = _covariates(bids, passed, h["covariates"], h["categorical"])
    raw = pd.concat([_meta(passed, cov, h, config.hash), values[finite]], axis=1)
    reason = (f"no scanner epoch has two gate-passed sessions ({len(passed)} passed, each "
              "alone in its epoch): ComBat cannot estimate a batch from one session")
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in HARMONIZED_FILES:  # never leave an earlier run's harmonized table beside it
        (out_dir / name).unlink(missing_ok=True)
    written = {}
    for ext in (".parquet", ".tsv"):
        written[f"unharmonized{ext}"] = write_table(raw, out_dir / f"biomarkers_unharmonized"
                                                              f"{ext}")
    dictionary = data_dictionary(raw, finite, "unharmonized", config, skipped)
    dictionary["_table"]["not_harmonized"] = reason
    write_json(dictionary, out_dir / "biomarkers_unharmonized.json")
    written["excluded"] = write_table(excluded.drop(columns=["reason", "rules_fired"]),
                                      out_dir / "excluded_sessions.tsv")
    diag = {"harmonized": False, "reason": reason, "features": finite,
            "site_auc_before": None, "site_auc_after": None, "site_auc_note": reason}
    written["diagnostics"] = write_json(diag, out_dir / "harmonization_diagnostics.json")
    return {"written": written, "table": raw.iloc[0:0], "raw": raw, "excluded": excluded,
            "features": finite, "skipped": skipped, "diagnostics": diag, "harmonized": False}
