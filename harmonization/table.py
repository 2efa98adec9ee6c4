"""The harmonized biomarker table: one row per session, every registered stage's gate-passed
columns, batches = scanner epochs.

Written for biostatisticians as Parquet and TSV with a JSON data dictionary (each column's
stage, meaning and unit); every row carries the pipeline version, the study configuration's
checksum and, per stage, its QC verdict, source image and that image's checksum; the fitted
ComBat models are saved beside it, with the excluded sessions and the reason each was left
out (per stage: a session whose image of one modality failed keeps the others' columns).

Column rule: the session's keys and covariates, then each stage's own columns named
``<stage>_qc_verdict``, ``<stage>_source``, ``<stage>_source_sha256``,
``<stage>_config_sha256``, then each stage's biomarkers named by the stage's
``column_prefix`` (none for the anatomical stage, whose names end in their unit).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from trialprep import __version__
from trialprep.harmonization import diagnostics
from trialprep.harmonization.design import HarmonizationError, _natural_key
from trialprep.harmonization.dictionary import data_dictionary
from trialprep.harmonization.table_model import TableHarmonization, harmonize_table
from trialprep.harmonization.table_rows import (
    StageRows,
    VersionLockError,
    check_version_lock,
    gated_rows,
    session_covariates,
)
from trialprep.layout import StudyLayout
from trialprep.provenance import environment_record, sha256_file
from trialprep.stages import Stage, registered_stages
from trialprep.tables import read_table, write_json, write_table

__all__ = ["VersionLockError", "build_table", "stage_meta_columns"]

KEYS = ["participant_id", "session_id"]
#: What build_table writes when harmonizing (removed when it cannot harmonize).
HARMONIZED_FILES = ("biomarkers_harmonized.parquet", "biomarkers_harmonized.tsv",
                    "biomarkers_harmonized.json", "biomarkers_harmonized.combat.npz")


def stage_meta_columns(stage: Stage) -> dict[str, str]:
    """A stage's own columns in the table (name -> the row or verdict column it holds)."""
    return {stage.meta_column("qc_verdict"): "verdict", stage.meta_column("source"): "source",
            stage.meta_column("source_sha256"): "source_sha256",
            stage.meta_column("config_sha256"): "config_sha256"}


@dataclass
class StageBlock:
    """One stage's part of the table, indexed by session: its own columns and biomarkers,
    as measured (``raw``) and harmonized (``harm``; None when it could not be)."""

    rows: StageRows
    features: list[str]                 # table names, harmonized (or measured) ones
    skipped: list[str]                  # table names left out (missing or constant)
    raw: pd.DataFrame
    harm: pd.DataFrame | None
    result: TableHarmonization | None = None
    cov: pd.DataFrame | None = None     # the harmonized sessions' time and covariates
    mean_only: bool = False
    not_harmonized: str = ""

    @property
    def stage(self) -> Stage:
        return self.rows.stage


def build_table(bids: Path, config, out_dir: Path) -> dict:
    """Build and write the unharmonized and harmonized tables; returns what was written."""
    bids, out_dir = Path(bids), Path(out_dir)
    layout = StudyLayout.from_bids(bids)
    h = config["harmonization"]
    verdicts = read_table(layout.image_verdicts, as_text=True)
    stage_rows = [r for r in (gated_rows(st, layout, verdicts, h["include_warn"])
                              for st in registered_stages()) if len(r.kept) or len(r.excluded)]
    if not any(len(r.kept) for r in stage_rows):
        raise HarmonizationError("no session passed the QC gates: nothing to harmonize")
    check_version_lock(pd.concat([r.kept for r in stage_rows], ignore_index=True))
    for r in stage_rows:
        _check_sources(bids, r)
    blocks = [_block(bids, r, h) for r in stage_rows if len(r.kept)]
    excluded = pd.concat([r.excluded for r in stage_rows], ignore_index=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not any(b.harm is not None for b in blocks):
        return _unharmonized_only(bids, blocks, excluded, config, out_dir)
    return _write(bids, blocks, excluded, config, out_dir)


def _check_sources(bids: Path, rows: StageRows) -> None:
    for src, recorded in zip(rows.kept["source"], rows.kept["source_sha256"], strict=True):
        if sha256_file(bids / src.removeprefix("bids::")) != recorded:
            raise HarmonizationError(f"{src} changed since it was processed (checksum "
                                     "differs): reprocess it before building the table")


def _frame(stage: Stage, kept: pd.DataFrame, values: pd.DataFrame,
           features: list[str]) -> pd.DataFrame:
    """Session-indexed: site, epoch, the stage's own columns, its features (renamed)."""
    index = pd.MultiIndex.from_frame(kept[KEYS])
    cols = {"site": kept["site"].to_numpy(), "epoch": kept["epoch"].to_numpy(),
            "pipeline_version": kept["pipeline_version"].to_numpy()}
    cols.update({name: kept[src].to_numpy() for name, src in stage_meta_columns(stage).items()})
    cols.update({stage.column(f): values[f].to_numpy(float) for f in features})
    return pd.DataFrame(cols, index=index)


def _block(bids: Path, rows: StageRows, h: dict) -> StageBlock:
    """Harmonize one stage's kept sessions; a scanner epoch with one session alone is left
    out (ComBat cannot estimate such a batch)."""
    stage = rows.stage
    passed = rows.kept.copy()
    counts = passed.groupby("epoch").size()
    alone = (passed["epoch"].map(counts).fillna(0) < 2).to_numpy()
    if alone.any():
        rows.exclude(alone, "the only gate-passed session of its scanner epoch: ComBat "
                            "cannot estimate that batch")
    if rows.kept.empty:
        values = passed[rows.features].apply(pd.to_numeric, errors="coerce")
        finite = [f for f in rows.features if np.isfinite(values[f]).all()]
        reason = (f"no scanner epoch has two gate-passed sessions ({len(passed)} passed, "
                  "each alone in its epoch): ComBat cannot estimate a batch from one session")
        return StageBlock(rows, [stage.column(f) for f in finite],
                          sorted(stage.column(f) for f in set(rows.features) - set(finite)),
                          _frame(stage, passed, values, finite), None, not_harmonized=reason)
    table = rows.kept
    values = table[rows.features].apply(pd.to_numeric, errors="coerce")
    finite = [f for f in rows.features if np.isfinite(values[f]).all() and values[f].std() > 0]
    cov = session_covariates(bids, table, h["covariates"], h["categorical"])
    batch = table["epoch"].to_numpy()
    mean_only = h["mean_only"]
    if mean_only == "auto":
        mean_only = bool(pd.Series(batch).value_counts().min() < h["min_batch_for_scale"])
    result = harmonize_table(values[finite].to_numpy(float), finite, batch, cov, h, mean_only)
    raw = _frame(stage, table, values, finite)
    harm = _frame(stage, table, pd.DataFrame(result.values, columns=finite), finite)
    if result.unapplied:
        done = np.array([i not in result.unapplied for i in range(len(table))])
        raw, harm, cov = raw[done], harm[done], cov[done].reset_index(drop=True)
        rows.exclude(~done, [result.unapplied[i] for i in np.flatnonzero(~done)])
    return StageBlock(rows, [stage.column(f) for f in finite],
                      sorted(stage.column(f) for f in set(rows.features) - set(finite)),
                      raw, harm, result, cov, mean_only)


def _join(bids: Path, frames: list[pd.DataFrame], h: dict, config_hash: str) -> pd.DataFrame:
    """One row per session: keys, scanner, covariates, then each stage's columns."""
    shared = ["site", "epoch", "pipeline_version"]
    sessions = pd.concat([f[shared] for f in frames])
    sessions = sessions[~sessions.index.duplicated()]
    order = sorted(sessions.index, key=lambda k: (_natural_key(k[0]), _natural_key(k[1])))
    sessions = sessions.loc[order]
    joined = sessions.join([f.drop(columns=shared) for f in frames], how="left")
    joined = joined.reset_index()
    cov = session_covariates(bids, joined, h["covariates"], h["categorical"])

    def categorical(values) -> pd.Categorical:
        v = pd.Series(values).astype(str).to_numpy()
        return pd.Categorical(v, categories=sorted(set(v), key=_natural_key))

    cols = {"participant_id": joined["participant_id"].to_numpy(),
            "session_id": joined["session_id"].to_numpy(),
            "site": categorical(joined["site"]), "epoch": categorical(joined["epoch"]),
            "time": cov["time"].to_numpy(float)}
    for c in h["covariates"]:
        cols[c] = categorical(cov[c]) if c in h["categorical"] else cov[c].to_numpy(float)
    cols["pipeline_version"] = joined["pipeline_version"].to_numpy()
    cols["config_sha256"] = config_hash
    meta = pd.DataFrame(cols)
    rest = joined.drop(columns=["participant_id", "session_id", *shared])
    for c in rest.columns:
        if c.endswith("_qc_verdict"):
            rest[c] = categorical(rest[c].fillna("n/a"))
    return pd.concat([meta, rest], axis=1)


def _write(bids: Path, blocks: list[StageBlock], excluded: pd.DataFrame, config,
           out_dir: Path) -> dict:
    h = config["harmonization"]
    done = [b for b in blocks if b.harm is not None]
    raw = _join(bids, [b.raw for b in done], h, config.hash)
    harm = _join(bids, [b.harm for b in done], h, config.hash)
    features = [f for b in done for f in b.features]
    skipped = [f for b in done for f in b.skipped]
    written = {}
    provenance_of = {}
    for b in done:
        model = b.result.model
        prov = model.combat.provenance if hasattr(model, "combat") else model.provenance
        prov.update({"trialprep": __version__, "config_sha256": config.hash,
                     "stage": b.stage.name, "sessions": len(b.harm),
                     "environment": environment_record(),
                     "batches": "scanner epochs (site x manufacturer x model x software)",
                     "harmonization": b.result.record})
        name = "biomarkers_harmonized" + ("" if b is done[0] else f".{b.stage.name}")
        written[f"model_{b.stage.name}"] = model.save(out_dir / f"{name}.combat.npz")
        provenance_of[b.stage.name] = b.result.record
    written["model"] = written[f"model_{done[0].stage.name}"]
    not_harmonized = {b.stage.name: b.not_harmonized for b in blocks if b.harm is None}
    for name, df in (("unharmonized", raw), ("harmonized", harm)):
        for ext in (".parquet", ".tsv"):
            written[f"{name}{ext}"] = write_table(df, out_dir / f"biomarkers_{name}{ext}")
        dictionary = data_dictionary(df, features, name, config, skipped,
                                     done[0].result.record, _column_stages(blocks),
                                     _column_meanings(blocks))
        dictionary["_table"]["harmonization_by_stage"] = {
            k: {kk: vv for kk, vv in v.items() if kk != "in_folds"}
            for k, v in provenance_of.items()}
        if not_harmonized:
            dictionary["_table"]["stages_not_harmonized"] = not_harmonized
        write_json(dictionary, out_dir / f"biomarkers_{name}.json")
    written["excluded"] = write_table(excluded, out_dir / "excluded_sessions.tsv")
    diag = _diagnostics(done[0], h)
    if len(done) > 1:
        diag["stages"] = {b.stage.name: _diagnostics(b, h) for b in done}
    written["diagnostics"] = write_json(diag, out_dir / "harmonization_diagnostics.json")
    return {"written": written, "table": harm, "raw": raw, "excluded": excluded,
            "features": features, "skipped": skipped,
            "diagnostics": json.loads(written["diagnostics"].read_text())}


def _column_stages(blocks: list[StageBlock]) -> dict[str, str]:
    """The stage each stage-specific column comes from."""
    out = {}
    for b in blocks:
        out.update({c: b.stage.name for c in stage_meta_columns(b.stage)})
        out.update({f: b.stage.name for f in b.features + b.skipped})
    return out


def _column_meanings(blocks: list[StageBlock]) -> dict[str, dict]:
    """Each biomarker's description and unit, from its stage's row dictionary."""
    out = {}
    for b in blocks:
        for f in b.rows.features:
            if f in b.rows.dictionary:
                out[b.stage.column(f)] = b.rows.dictionary[f]
    return out


def _diagnostics(block: StageBlock, h: dict) -> dict:
    """Before/after diagnostics of one stage's block; the AUC after with the table's model
    refitted in folds."""
    result, raw, harm = block.result, block.raw.reset_index(), block.harm.reset_index()
    cov_frame = block.cov
    covs = result.covariates
    cov = cov_frame[covs] if covs else None
    categorical = [c for c in h["categorical"] if c in covs]
    batch = raw["epoch"].astype(str).to_numpy()
    features = block.features
    X = raw[features].to_numpy(float)
    settings, in_folds = None, None
    if result.record["model"] == "longitudinal":
        in_folds = diagnostics.longitudinal_in_folds(
            X, batch, cov_frame[["participant_id", "time", *covs]],
            **result.record["in_folds"])
    elif not h.get("covbat"):
        settings = result.record["settings"]
    diag = diagnostics.summarize(X, harm[features].to_numpy(float), batch, cov, categorical,
                                 features, groups=raw["participant_id"].to_numpy(),
                                 settings=settings, in_folds=in_folds)
    diag.update(model=result.record["method"], harmonization=result.record,
                mean_only=block.mean_only, stage=block.stage.name,
                smallest_batch=int(pd.Series(batch).value_counts().min()))
    return diag


def _unharmonized_only(bids: Path, blocks: list[StageBlock], excluded: pd.DataFrame, config,
                       out_dir: Path) -> dict:
    """Sessions passed the gates but no scanner epoch has two of them (a pilot, one site's
    first session): the unharmonized table alone, and the reason there is no harmonized one
    (in the diagnostics, the dictionary and on the terminal)."""
    h = config["harmonization"]
    raw = _join(bids, [b.raw for b in blocks], h, config.hash)
    features = [f for b in blocks for f in b.features]
    skipped = [f for b in blocks for f in b.skipped]
    reason = blocks[0].not_harmonized
    for name in HARMONIZED_FILES:  # never leave an earlier run's harmonized table beside it
        (out_dir / name).unlink(missing_ok=True)
    for stale in out_dir.glob("biomarkers_harmonized.*.combat.npz"):
        stale.unlink()
    written = {}
    for ext in (".parquet", ".tsv"):
        written[f"unharmonized{ext}"] = write_table(raw, out_dir / f"biomarkers_unharmonized"
                                                              f"{ext}")
    dictionary = data_dictionary(raw, features, "unharmonized", config, skipped, None,
                                 _column_stages(blocks), _column_meanings(blocks))
    dictionary["_table"]["not_harmonized"] = reason
    write_json(dictionary, out_dir / "biomarkers_unharmonized.json")
    written["excluded"] = write_table(excluded, out_dir / "excluded_sessions.tsv")
    diag = {"harmonized": False, "reason": reason, "features": features,
            "site_auc_before": None, "site_auc_after": None, "site_auc_note": reason}
    written["diagnostics"] = write_json(diag, out_dir / "harmonization_diagnostics.json")
    return {"written": written, "table": raw.iloc[0:0], "raw": raw, "excluded": excluded,
            "features": features, "skipped": skipped, "diagnostics": diag, "harmonized": False}
