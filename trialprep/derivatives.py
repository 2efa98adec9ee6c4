"""The one writer of a stage's per-session derivatives (the stage contract's outputs).

Every file goes through :func:`trialprep.atomic.atomic_path`; every image gets a JSON sidecar
with its description and provenance; the IQM record and the figures are named by the stage;
the biomarker row is written last, so its presence means the session is done.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from trialprep.atomic import copy_atomic
from trialprep.datasets import write_dataset_description
from trialprep.layout import StudyLayout
from trialprep.stages import ROW_ID_COLUMNS, SessionStatus, Stage
from trialprep.tables import write_json, write_table

#: The session row's identifying columns, described once for every stage.
ROW_ID_DICTIONARY = {
    "participant_id": {"Description": "keyed pseudonym of the participant"},
    "session_id": {"Description": "visit (BIDS session)"},
    "status": {"Description": "ok, or failed (the session's biomarkers are missing)",
               "Levels": {SessionStatus.OK.value: "processed",
                          SessionStatus.FAILED.value: "not processed, see reason"}},
    "reason": {"Description": "why the session failed (empty when ok)"},
    "source": {"Description": "the image the biomarkers come from (BIDS URI)"},
    "source_sha256": {"Description": "SHA-256 of the source image file"},
    "pipeline_version": {"Description": "trialprep version that produced the row"},
    "config_sha256": {"Description": "SHA-256 of the stage's settings and version"},
}


def write_stage_dataset(stage: Stage, layout: StudyLayout, bids_version: str) -> Path:
    """The stage's derivative dataset description (and ``.bidsignore``)."""
    return write_dataset_description(
        stage.dataset(layout), name=f"trialprep {stage.name} derivatives",
        bids_version=bids_version, description=stage.description, packages=stage.packages,
        bidsignore=stage.bidsignore)


class SessionWriter:
    """Names and writes one session's derivative files for ``stage``."""

    def __init__(self, stage: Stage, layout: StudyLayout, subject: str, session: str,
                 provenance: dict):
        self.stage, self.layout = stage, layout
        self.sub, self.ses = subject, session
        self.provenance = provenance
        self.written: dict[str, Path] = {}

    def path(self, suffix: str, extension: str, **entities) -> Path:
        return self.stage.path(self.layout, self.sub, self.ses, suffix, extension, **entities)

    def copy(self, key: str, src: str | Path, suffix: str, extension: str = ".nii.gz",
             description: str = "", sidecar: dict | None = None, **entities) -> Path:
        """Copy a result into the dataset; an image gets a JSON sidecar (``sidecar``'s
        BIDS fields, the description and the provenance)."""
        dest = copy_atomic(src, self.path(suffix, extension, **entities))
        self.written[key] = dest
        if extension in (".nii.gz", ".nii"):
            meta = {**(sidecar or {}), "Description": description, **self.provenance}
            write_json(meta, dest.with_name(dest.name.split(".")[0] + ".json"))
        return dest

    def figure(self, key: str, desc: str) -> Path:
        """Where a figure goes (the caller draws it there)."""
        out = self.stage.figure_path(self.layout, self.sub, self.ses, desc)
        out.parent.mkdir(parents=True, exist_ok=True)
        self.written[key] = out
        return out

    def iqms(self, values: dict) -> Path:
        path = write_json({**values, "_provenance": self.provenance},
                          self.stage.iqm_path(self.layout, self.sub, self.ses))
        self.written["iqms"] = path
        return path

    def row(self, row: dict, dictionary: dict) -> Path:
        """The session's biomarker row and its dictionary; written last."""
        missing = [c for c in ROW_ID_COLUMNS if c not in row]
        if missing:
            raise ValueError(f"a {self.stage.name} session row lacks {missing}")
        out = self.stage.row_path(self.layout, self.sub, self.ses)
        meta = {c: ROW_ID_DICTIONARY[c] for c in ROW_ID_COLUMNS}
        meta.update({c: dictionary[c] for c in row if c in dictionary and c not in meta})
        meta["_provenance"] = {k: v for k, v in self.provenance.items() if k != "Environment"}
        write_json(meta, out.with_suffix("").with_suffix(".json"))
        ordered = [*ROW_ID_COLUMNS, *(c for c in row if c not in ROW_ID_COLUMNS)]
        write_table(pd.DataFrame([{c: row[c] for c in ordered}]), out)
        return out


def new_row(subject: str, session: str, version: str, config_sha256: str) -> dict:
    """A session row's identifying columns, status ok until something fails."""
    return {"participant_id": f"sub-{subject}", "session_id": f"ses-{session}",
            "status": SessionStatus.OK.value, "reason": "", "source": "", "source_sha256": "",
            "pipeline_version": version, "config_sha256": config_sha256}
