"""What intake decides about each input file and series: typed outcomes and reasons.

Every file of a drop ends with one :class:`Outcome`; a file or series that is not converted
carries a :class:`Problem`: a :class:`Reason` (what kind of problem, recorded in the manifest's
``reason_code`` column and used by the code) and the human-readable detail (the ``reason``
column). Control flow branches on the reason, never on the text.
"""

from __future__ import annotations

import enum
import re
import traceback
from dataclasses import dataclass
from pathlib import Path


class Outcome(enum.StrEnum):
    CONVERTED = "converted"
    QUARANTINED = "quarantined"
    IGNORED = "ignored"


class Reason(enum.StrEnum):
    """Why a file or series was not converted."""

    # one file, found by the scan
    EMPTY_FILE = "empty_file"
    NOT_DICOM = "not_dicom"
    NOT_AN_IMAGE = "not_an_image"              # a DICOM object without pixel data (SR, PR)
    UNREADABLE = "unreadable"                  # the file cannot be read or parsed
    TRUNCATED = "truncated"                    # pixel data cut off
    PIXEL_DATA_MISMATCH = "pixel_data_mismatch"  # pixel data disagree with the image header
    NO_PIXEL_DATA = "no_pixel_data"            # an image object that has lost its pixel data
    MISSING_UID = "missing_uid"
    DUPLICATE = "duplicate"
    CONFLICTING_DUPLICATE = "conflicting_duplicate"
    EMPTY_FOLDER = "empty_folder"
    # a whole series
    SHARED_SERIES_UID = "shared_series_uid"
    INCOMPLETE_SERIES = "incomplete_series"    # slices, volumes or instances missing
    BAD_GEOMETRY = "bad_geometry"              # slice positions/orientations unusable
    SERIES_HEADER_UNREADABLE = "series_header_unreadable"
    NO_VISIT = "no_visit"
    UNCLASSIFIED = "unclassified"
    CONVERSION_FAILED = "conversion_failed"    # dcm2niix failed or left files out
    NO_BIDS_NAME = "no_bids_name"
    ARCHIVE_FAILED = "archive_failed"          # the de-identified DICOM copy cannot be made
    INTERNAL_ERROR = "internal_error"          # a bug: reported, never fatal to the drop


class SeriesVerdict(enum.StrEnum):
    """A series' verdict in ``series.tsv``."""

    COMPLIANT = "compliant"        # converted, on the locked protocol
    DEVIANT = "deviant"            # converted, off the protocol (deviations named)
    QUARANTINED = "quarantined"    # not converted (reason named)
    UNCLASSIFIED = "unclassified"  # matches no series type of the protocol (ignored)


#: Reasons for which a file is ignored (not study data) rather than quarantined.
IGNORED_REASONS = frozenset({Reason.EMPTY_FILE, Reason.NOT_DICOM, Reason.NOT_AN_IMAGE,
                             Reason.DUPLICATE, Reason.EMPTY_FOLDER, Reason.UNCLASSIFIED})


@dataclass(frozen=True)
class Problem:
    """A reason and its detail (the text people read)."""

    reason: Reason
    detail: str

    @property
    def outcome(self) -> Outcome:
        return Outcome.IGNORED if self.reason in IGNORED_REASONS else Outcome.QUARANTINED

    def __str__(self) -> str:
        return self.detail


_QUOTED = re.compile(r"""('[^']*'|"[^"]*"|b'[^']*')""")


def exception_detail(exc: BaseException, limit: int = 160) -> str:
    """An exception as a reason's detail, safe to record: its type, its message with every
    quoted value removed (readers quote the header values they fail on, which may identify
    the patient) and where in trialprep it was raised."""
    text = _QUOTED.sub("'…'", " ".join(str(exc).split()))
    text = "".join(c for c in text if c.isprintable())[:limit]
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if "trialprep" in f.filename or "/workflows/" in f.filename]
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    return f"{type(exc).__name__}{where}: {text}" if text else f"{type(exc).__name__}{where}"
