"""Read a site drop: every file becomes a DICOM header record or gets an outcome at once."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from trialprep.keys import StudyKey
from trialprep.provenance import sha256_file

CONVERTED, QUARANTINED, IGNORED = "converted", "quarantined", "ignored"
#: What the scan reads of every file; a series' first file is later read in full.
SCAN_TAGS = ["SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID",
             "PatientID", "Modality", "SeriesNumber", "SeriesDescription", "InstanceNumber",
             "ImageType", "ImagePositionPatient", "ImageOrientationPatient", "Rows", "Columns",
             "BitsAllocated", "SamplesPerPixel", "NumberOfFrames", "PixelData",
             "FloatPixelData"]


@dataclass
class InputFile:
    """One file of a drop. ``source_id`` is a keyed hash of its relative path, so no raw
    (possibly identifying) path ever reaches an output."""

    path: Path
    source_id: str
    sha256: str
    size: int
    header: Dataset | None = None
    outcome: str | None = None
    reason: str = ""
    series_key: str = ""
    series_uid: str = ""
    bids_files: list[str] = field(default_factory=list)

    def settle(self, outcome: str, reason: str = "") -> None:
        if self.outcome is None:
            self.outcome, self.reason = outcome, reason


def walk_drop(root: Path) -> tuple[list[Path], list[Path]]:
    """All regular files under ``root`` (links not followed) and the empty folders."""
    files, empty = [], []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        real = [f for f in sorted(filenames) if not os.path.islink(os.path.join(dirpath, f))]
        files.extend(Path(dirpath) / f for f in real)
        if not real and not dirnames:
            empty.append(Path(dirpath))
    return files, empty


def _expected_pixel_bytes(ds: Dataset) -> int | None:
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        bits = int(ds.BitsAllocated)
        return int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * frames * (
            (bits + 7) // 8)
    except (AttributeError, TypeError, ValueError):
        return None


def read_header(path: Path, size: int) -> tuple[Dataset | None, str]:
    """(header, problem). The header has no pixel values but its pixel element is checked
    against the file size, so truncated files are caught without decoding."""
    ds = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path, defer_size=1024, specific_tags=SCAN_TAGS)
        except InvalidDicomError:
            try:  # DICOM without preamble/meta header (older vendor exports)
                ds = pydicom.dcmread(path, defer_size=1024, force=True,
                                     specific_tags=SCAN_TAGS)
            except Exception:  # noqa: BLE001 - any parse failure means "not DICOM"
                return None, "not a DICOM file"
            if "SOPInstanceUID" not in ds or "SeriesInstanceUID" not in ds:
                return None, "not a DICOM file"
        except Exception as exc:  # noqa: BLE001 - pydicom raises many types on bad files
            return None, f"unreadable DICOM ({type(exc).__name__}): file is truncated or corrupt"
    missing = [k for k in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID")
               if not str(ds.get(k, "") or "").strip()]
    if missing:
        return None, f"DICOM without {', '.join(missing)}"
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        return ds, "no pixel data (not an image)"
    raw = ds.get_item(0x7FE00010)
    if raw is None:
        return None, "truncated: pixel data element cut off"
    if isinstance(raw, pydicom.dataelem.RawDataElement):  # deferred: offset and length known
        length, tell = raw.length, raw.value_tell
    else:  # read in full (pydicom reads what is left of a cut-off value)
        length, tell = len(raw.value or b""), None
    if length != 0xFFFFFFFF:  # native (not encapsulated) pixel data
        if tell is not None and tell + length > size:
            return None, (f"truncated: pixel data needs {length} bytes, file ends "
                          f"{tell + length - size} bytes short")
        expected = _expected_pixel_bytes(ds)
        if expected and length < expected:
            return None, f"truncated: pixel data has {length} bytes, header implies {expected}"
    return ds, ""


def _scan_one(path: Path) -> tuple[int, str, Dataset | None, str]:
    size = path.stat().st_size
    if size == 0:
        return size, "", None, "empty file"
    header, problem = read_header(path, size)
    if header is not None:
        header.pop(0x7FE00010, None)  # pixel values are never needed from the scan
    return size, sha256_file(path), header, problem


def scan_drop(root: Path, key: StudyKey, site: str,
              workers: int | None = None) -> tuple[list[InputFile], list[str]]:
    """Read every file of a drop (in parallel). Returns (files, ids of empty folders)."""
    paths, empty = walk_drop(root)
    workers = workers or min(2, os.cpu_count() or 1)
    if workers > 1 and len(paths) > 64:
        with ProcessPoolExecutor(workers) as pool:
            results = list(pool.map(_scan_one, paths, chunksize=32))
    else:
        results = [_scan_one(p) for p in paths]
    records = []
    for path, (size, digest, header, problem) in zip(paths, results, strict=True):
        rel = path.relative_to(root).as_posix()
        rec = InputFile(path=path, source_id=key.label("source", site, rel, length=16),
                        sha256=digest, size=size, header=header)
        if problem == "empty file" or problem == "not a DICOM file":
            rec.settle(IGNORED, problem)
        elif problem == "no pixel data (not an image)":
            rec.settle(IGNORED, f"DICOM {header.get('Modality', '')} object without "
                       "pixel data (not an image)")
        elif problem:
            rec.settle(QUARANTINED, problem)
        if header is not None:
            rec.series_uid = str(header.get("SeriesInstanceUID", ""))
        records.append(rec)
    empty_ids = [key.label("source", site, p.relative_to(root).as_posix() + "/", length=16)
                 for p in empty if p != root]
    if not paths:
        empty_ids.append(key.label("source", site, "./", length=16))
    return records, empty_ids


def iter_pending(files: list[InputFile]) -> Iterator[InputFile]:
    return (f for f in files if f.outcome is None)
