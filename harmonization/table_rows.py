"""The study table's inputs, stage by stage: every registered stage's session rows with
their gate verdicts, which of them the table keeps, and why the others are left out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from trialprep.harmonization.design import HarmonizationError
from trialprep.layout import StudyLayout
from trialprep.session_rows import biomarker_columns, load_stage_rows, stage_dictionary
from trialprep.stages import SessionStatus, Stage
from trialprep.tables import read_table
from trialprep.workflows.qc.gates import session_image

#: Columns of excluded_sessions.tsv.
EXCLUDED_COLUMNS = ("participant_id", "session_id", "stage", "modality", "site", "image",
                    "verdict", "status", "why")


class VersionLockError(HarmonizationError):
    """Rows from different pipeline versions would be mixed in one table."""


@dataclass
class StageRows:
    """One stage's gate-passed sessions (``kept``) and the sessions it left out."""

    stage: Stage
    kept: pd.DataFrame          # its row columns plus image, site, epoch, verdict
    excluded: pd.DataFrame      # EXCLUDED_COLUMNS
    features: list[str]         # its biomarker columns (the row's names)
    dictionary: dict[str, dict]  # the row's column dictionary

    def exclude(self, mask: np.ndarray, why: list[str] | str) -> None:
        """Move the kept sessions in ``mask`` to the excluded ones with ``why``."""
        gone = self.kept[mask]
        self.excluded = pd.concat([self.excluded, _excluded_rows(self.stage, gone, why)],
                                  ignore_index=True)
        self.kept = self.kept[~mask].reset_index(drop=True)


def _excluded_rows(stage: Stage, rows: pd.DataFrame, why) -> pd.DataFrame:
    return pd.DataFrame({"participant_id": rows["participant_id"].to_numpy(),
                        "session_id": rows["session_id"].to_numpy(), "stage": stage.name,
                        "modality": stage.modality, "site": rows["site"].to_numpy(),
                        "image": rows["image"].to_numpy(), "verdict": rows["verdict"].to_numpy(),
                        "status": rows["status"].to_numpy(), "why": why},
                       columns=list(EXCLUDED_COLUMNS))


def gated_rows(stage: Stage, layout: StudyLayout, verdicts: pd.DataFrame,
               include_warn: bool) -> StageRows:
    """The stage's rows merged with their images' verdicts; kept: processed and passed."""
    rows = load_stage_rows(stage, layout)
    rows["image"] = [session_image(stage, p, s, src) for p, s, src in
                     zip(rows["participant_id"], rows["session_id"], rows["source"],
                         strict=True)]
    rows = rows.merge(verdicts[["image", "site", "epoch", "verdict", "rules_fired"]],
                      on="image", how="left")
    levels = {"pass", "warn"} if include_warn else {"pass"}
    kept = rows["verdict"].isin(levels) & (rows["status"] == SessionStatus.OK)
    why = [r if st != SessionStatus.OK else
           (f"QC gate {v}: {rf}" if isinstance(v, str) else "no QC verdict")
           for r, st, v, rf in zip(rows.loc[~kept, "reason"], rows.loc[~kept, "status"],
                                   rows.loc[~kept, "verdict"], rows.loc[~kept, "rules_fired"],
                                   strict=True)]
    excluded = _excluded_rows(stage, rows[~kept], why)
    return StageRows(stage, rows[kept].reset_index(drop=True), excluded,
                     biomarker_columns(rows.drop(columns=["image", "site", "epoch", "verdict",
                                                          "rules_fired"])),
                     stage_dictionary(stage, layout))


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


def session_covariates(bids: Path, sessions: pd.DataFrame, names: list[str],
                       categorical: list[str]) -> pd.DataFrame:
    """Per session (participant_id, session_id): ``time`` (years since the participant's
    first session, from the shifted session dates: intervals are kept) and the covariates,
    typed (categorical ones as strings, the others numeric)."""
    part = read_table(Path(bids) / "participants.tsv", as_text=True)
    frames = []
    for path in sorted(Path(bids).glob("sub-*/sub-*_sessions.tsv")):
        t = read_table(path, as_text=True)
        t.insert(0, "participant_id", path.parent.name)
        frames.append(t)
    ses = pd.concat(frames, ignore_index=True)
    merged = sessions[["participant_id", "session_id"]].merge(
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
