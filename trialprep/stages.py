"""The stage contract and the registry of preprocessing stages.

A preprocessing stage (``anat``; later ``dwi`` and ``bold``) declares what the rest of the
study needs to know about it, and nothing downstream names a stage:

- its **modality** (the BIDS datatype of its inputs) and how it finds each session's input
  image in the raw dataset (datatype, suffix and optional entities);
- its **derivative dataset** under ``derivatives/`` and the files each session yields there:
  one biomarker row (``*_desc-biomarkers_<row_suffix>.tsv``, written last: its presence
  means the session is done) with its JSON dictionary (column, meaning, unit), one IQM
  record (``*_desc-iqms_<input_suffix>.json``), figures (``sub-X/figures/``) and a
  provenance sidecar on every image, all through :class:`trialprep.derivatives.SessionWriter`;
- the **column rule** of its biomarkers in the study table (``column_prefix``), the IQMs
  its reports describe and the figures a session page shows.

The gates, the study table, the reports, ``trialprep status`` and the PROV export iterate
over :func:`registered_stages`. Stages are the built-in ones below, those of installed
packages (entry point group ``trialprep.stages``) and any passed to :func:`register`.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from trialprep.bids import bids_name, bids_path, parse_entities, sanitize_label
from trialprep.layout import StudyLayout

#: The built-in stages, as ``module:attribute`` (imported only when the registry is read).
BUILTIN_STAGES = ("trialprep.workflows.anat.stage:ANAT_STAGE",)
ENTRY_POINT_GROUP = "trialprep.stages"


class SessionStatus(StrEnum):
    """A session row's outcome."""

    OK = "ok"
    FAILED = "failed"


#: The identifying columns every stage's session row starts with; every other column of
#: the row is a biomarker (numeric, described with its unit in the row's dictionary).
ROW_ID_COLUMNS = ("participant_id", "session_id", "status", "reason", "source",
                  "source_sha256", "pipeline_version", "config_sha256")


class StageError(ValueError):
    """A stage declaration that breaks the contract (clashing names or prefixes)."""


@dataclass(frozen=True)
class Stage:
    """What a preprocessing stage declares (see the module docstring)."""

    name: str
    #: The modality its images are gated as (the key of its rules in qc.yaml: anat, dwi,
    #: bold) and, unless ``datatype`` says otherwise, the BIDS datatype of its inputs.
    modality: str
    input_suffix: str
    derivatives: str
    row_suffix: str
    description: str
    column_prefix: str = ""
    datatype: str = ""
    input_entities: Mapping[str, str] = field(default_factory=dict)
    iqm_descriptions: Mapping[str, str] = field(default_factory=dict)
    #: Per-session figures: (desc entity, title shown in the session report).
    figures: tuple[tuple[str, str], ...] = ()
    #: IQMs drawn per site in the site report.
    site_figure_metrics: tuple[str, ...] = ()
    #: Packages whose versions the derivative dataset's description records.
    packages: tuple[str, ...] = ()
    #: Patterns of the stage's files that BIDS (1.10) has no rule for (transforms,
    #: per-session tables, figures), written to the dataset's ``.bidsignore``.
    bidsignore: tuple[str, ...] = ()

    @property
    def bids_datatype(self) -> str:
        return self.datatype or self.modality

    # the raw dataset
    def input_glob(self, sub: str = "*", ses: str = "*") -> str:
        ents = "".join(f"*_{k}-{v}" for k, v in self.input_entities.items())
        name = f"sub-{sub}_ses-{ses}{ents}*_{self.input_suffix}.nii.gz".replace("**", "*")
        return f"sub-{sub}/ses-{ses}/{self.bids_datatype}/{name}"

    def sessions(self, layout: StudyLayout) -> list[tuple[str, str]]:
        """(subject, session) of every session of the raw dataset with this stage's input."""
        out = set()
        for path in layout.bids.glob(self.input_glob()):
            ent = parse_entities(path.name)
            out.add((ent["sub"], ent["ses"]))
        return sorted(out)

    def find_inputs(self, layout: StudyLayout, sub: str, ses: str) -> list[Path]:
        """The session's input images, sorted (the first is processed; the others are
        recorded as unprocessed runs)."""
        sub, ses = sanitize_label(sub), sanitize_label(ses)
        return sorted(layout.bids.glob(self.input_glob(sub, ses)))

    # the stage's derivative dataset
    def dataset(self, layout: StudyLayout) -> Path:
        return layout.stage_dir(self.derivatives)

    def path(self, layout: StudyLayout, sub: str, ses: str, suffix: str, extension: str,
             **entities: object) -> Path:
        """A per-session derivative file (wildcards such as ``{sub}`` allowed)."""
        return bids_path(self.dataset(layout), self.bids_datatype, suffix, extension, sub=sub,
                         ses=ses, **entities)

    def row_path(self, layout: StudyLayout, sub: str, ses: str) -> Path:
        """The session's biomarker row: the stage job's declared output."""
        return self.path(layout, sub, ses, self.row_suffix, ".tsv", desc="biomarkers")

    def iqm_path(self, layout: StudyLayout, sub: str, ses: str) -> Path:
        return self.path(layout, sub, ses, self.input_suffix, ".json", desc="iqms")

    def figure_path(self, layout: StudyLayout, sub: str, ses: str, desc: str) -> Path:
        sub, ses = sanitize_label(sub), sanitize_label(ses)
        return self.dataset(layout) / f"sub-{sub}" / "figures" / bids_name(
            self.input_suffix, ".svg", sub=sub, ses=ses, desc=desc)

    def row_paths(self, layout: StudyLayout) -> list[Path]:
        """Every session's biomarker row, sorted."""
        return sorted(self.dataset(layout).glob(
            f"sub-*/ses-*/{self.bids_datatype}/*_desc-biomarkers_{self.row_suffix}.tsv"))

    def column(self, biomarker: str) -> str:
        """The study table's name of one of the stage's biomarker columns."""
        return f"{self.column_prefix}{biomarker}"

    def meta_column(self, what: str) -> str:
        """The study table's column of the stage's own ``what`` (``qc_verdict``, ``source``,
        ``source_sha256``, ``config_sha256``): ``<stage>_<what>``."""
        return f"{self.name}_{what}"


_REGISTERED: dict[str, Stage] = {}
_LOADED = False


def _load() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for spec in BUILTIN_STAGES:
        module, attr = spec.split(":")
        register(getattr(importlib.import_module(module), attr))
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        register(ep.load())


def register(stage: Stage) -> Stage:
    """Add a stage (again under the same name: replaced). Its name, derivative dataset and
    column prefix must be its own: the table's columns never collide."""
    _load()
    for other in _REGISTERED.values():
        if other.name == stage.name:
            continue
        if other.derivatives == stage.derivatives:
            raise StageError(f"stages {other.name} and {stage.name} both write "
                             f"derivatives/{stage.derivatives}")
        if other.column_prefix == stage.column_prefix:
            raise StageError(f"stages {other.name} and {stage.name} share the column prefix "
                             f"{stage.column_prefix!r}")
        if (other.input_suffix, other.bids_datatype) == (stage.input_suffix,
                                                          stage.bids_datatype):
            raise StageError(f"stages {other.name} and {stage.name} both take the "
                             f"{stage.bids_datatype}/{stage.input_suffix} images")
    _REGISTERED[stage.name] = stage
    return stage


def unregister(name: str) -> None:
    _REGISTERED.pop(name, None)


def registered_stages() -> list[Stage]:
    """The registered stages, in registration order (the built-in ones first)."""
    _load()
    return list(_REGISTERED.values())


def get_stage(name: str) -> Stage:
    _load()
    try:
        return _REGISTERED[name]
    except KeyError:
        raise StageError(f"no stage {name!r} (registered: {', '.join(_REGISTERED)})") from None


def stage_of_image(image: str) -> Stage:
    """The stage whose input an image (file name) is."""
    ent = parse_entities(image)
    for stage in registered_stages():
        if ent["suffix"] == stage.input_suffix and all(
                ent.get(k) == v for k, v in stage.input_entities.items()):
            return stage
    raise StageError(f"no registered stage takes {image}")
