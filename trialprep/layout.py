"""The study's layout: every path of a study's output folder is named here, and only here.

::

    OUT/
      bids/                               raw BIDS dataset (intake)
        sourcedata/dicom/                 de-identified DICOM copies (optional)
        derivatives/
          intake/                         intake records (manifest, series, completeness)
          <stage>/                        one BIDS derivative dataset per preprocessing stage
          qc/                             QC verdicts and people's decisions
          audit/audit.jsonl               the hash-chained audit trail
      tables/                             study tables (harmonized, unharmonized, excluded)
      reports/                            self-contained HTML reports
      provenance/study.prov.json          W3C PROV export
      logs/<step>/                        one log per job
      work/<stage>/                       resumable scratch (removed when a session succeeds)

Python code takes a :class:`StudyLayout` (or builds one from the BIDS folder its command
was given); the Snakefile and rules build theirs from ``out=`` and declare every output with
:func:`trialprep.bids.bids_path`, which also accepts Snakemake wildcards.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DERIVATIVES = "derivatives"


@dataclass(frozen=True)
class StudyLayout:
    """The folders and files of one study run, under its output folder ``out``."""

    out: Path
    #: the raw BIDS dataset when it is not ``out/bids`` (a command given a BIDS folder of
    #: another name: its tables, logs and work go beside it)
    bids_dir: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        if self.bids_dir is not None:
            object.__setattr__(self, "bids_dir", Path(self.bids_dir))

    @classmethod
    def from_bids(cls, bids: str | Path) -> StudyLayout:
        """The layout of the study whose raw BIDS dataset is ``bids`` (``OUT/bids``, or a
        folder of any name, whose parent then holds the rest)."""
        bids = Path(bids)
        return cls(bids.parent, None if bids.name == "bids" else bids)

    # raw data
    @property
    def bids(self) -> Path:
        return self.bids_dir if self.bids_dir is not None else self.out / "bids"

    @property
    def sourcedata(self) -> Path:
        return self.bids / "sourcedata" / "dicom"

    @property
    def derivatives(self) -> Path:
        return self.bids / DERIVATIVES

    def stage_dir(self, dataset: str) -> Path:
        """A stage's BIDS derivative dataset (``derivatives/<dataset>``)."""
        return self.derivatives / dataset

    # intake's records
    @property
    def intake(self) -> Path:
        return self.derivatives / "intake"

    @property
    def intake_sites(self) -> Path:
        """One completion summary per site drop (the intake jobs' outputs)."""
        return self.intake / "sites"

    @property
    def intake_complete(self) -> Path:
        return self.intake / "intake_complete.json"

    @property
    def completeness(self) -> Path:
        return self.intake / "completeness.tsv"

    @property
    def series(self) -> Path:
        return self.intake / "series.tsv"

    # QC and the audit trail
    @property
    def qc(self) -> Path:
        return self.derivatives / "qc"

    @property
    def image_verdicts(self) -> Path:
        return self.qc / "image_verdicts.tsv"

    @property
    def site_verdicts(self) -> Path:
        return self.qc / "site_verdicts.tsv"

    @property
    def drift(self) -> Path:
        return self.qc / "drift.tsv"

    @property
    def decisions(self) -> Path:
        return self.qc / "decisions.tsv"

    @property
    def audit(self) -> Path:
        return self.derivatives / "audit" / "audit.jsonl"

    # study outputs
    @property
    def tables(self) -> Path:
        return self.out / "tables"

    @property
    def reports(self) -> Path:
        return self.out / "reports"

    @property
    def provenance(self) -> Path:
        return self.out / "provenance" / "study.prov.json"

    @property
    def logs_root(self) -> Path:
        return self.out / "logs"

    def logs(self, step: str) -> Path:
        return self.logs_root / step

    def work(self, stage: str) -> Path:
        return self.out / "work" / stage


def study_layout(bids: str | Path) -> StudyLayout:
    """Shorthand for :meth:`StudyLayout.from_bids`."""
    return StudyLayout.from_bids(bids)
