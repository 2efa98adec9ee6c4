"""Read a site drop: every file becomes a DICOM header record or gets an outcome at once."""

from __future__ import annotations

import hashlib
import mmap
import os
import struct
import warnings
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue

from trialprep.keys import StudyKey
from trialprep.workflows.intake import fast_header

CONVERTED, QUARANTINED, IGNORED = "converted", "quarantined", "ignored"
#: What the scan reads of every file (a series' first file is later read in full).
SCAN_TAGS = [*fast_header.ATTRIBUTES, *fast_header.PIXEL_TAGS.values()]
#: A scanned header: top-level values by keyword, as pydicom gives them (lists for
#: multi-values, IS as int, DS as float, an empty number as None).
Header = dict


@dataclass
class InputFile:
    """One file of a drop. ``source_id`` is a keyed hash of its relative path, so no raw
    (possibly identifying) path ever reaches an output."""

    path: Path
    source_id: str
    sha256: str
    size: int
    header: Header | None = None
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


def _expected_pixel_bytes(h: Header) -> int | None:
    try:
        frames = int(h.get("NumberOfFrames") or 1)
        return int(h["Rows"]) * int(h["Columns"]) * int(h.get("SamplesPerPixel") or 1) * \
            frames * ((int(h["BitsAllocated"]) + 7) // 8)
    except (KeyError, TypeError, ValueError):
        return None


def _check_identity(h: Header) -> str:
    missing = [k for k in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID")
               if not str(h.get(k, "") or "").strip()]
    return f"DICOM without {', '.join(missing)}" if missing else ""


def _check_pixels(h: Header, pixel: fast_header.PixelElement | None, size: int) -> str:
    """'' for an image whose pixel element is whole; otherwise why not."""
    if pixel is None:
        return "no pixel data (not an image)"
    if pixel.keyword == "PixelData" and pixel.length != fast_header.UNDEFINED:
        if pixel.offset >= 0 and pixel.offset + pixel.length > size:  # -1: offset unknown
            return (f"truncated: pixel data needs {pixel.length} bytes, file ends "
                    f"{pixel.offset + pixel.length - size} bytes short")
        expected = _expected_pixel_bytes(h)
        if expected and pixel.length < expected:
            return f"truncated: pixel data has {pixel.length} bytes, header implies {expected}"
    return ""


def _plain(value: object) -> object:
    """A pydicom value as the fast reader gives it (built-in types)."""
    if isinstance(value, MultiValue | list):
        return [_plain(v) for v in value]
    if isinstance(value, pydicom.valuerep.IS):
        return int(value)
    if isinstance(value, pydicom.valuerep.DSfloat | pydicom.valuerep.DSdecimal):
        return float(value)
    if isinstance(value, str):
        return str(value)
    return value


def header_from_dataset(ds: Dataset) -> Header:
    """The scan's values of a pydicom Dataset, in the fast reader's form."""
    return {kw: _plain(ds[kw].value) for kw in fast_header.ATTRIBUTES if kw in ds}


def read_with_pydicom(path: Path, size: int) -> tuple[Header | None, str]:
    """The slow path: files the fast reader does not handle (no preamble, big endian,
    character sets, damage), with pydicom's judgement of what is wrong."""
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
        try:
            h = header_from_dataset(ds)
        except Exception as exc:  # noqa: BLE001 - malformed values fail on conversion
            return None, f"unreadable DICOM ({type(exc).__name__}): malformed header value"
    if problem := _check_identity(h):
        return None, problem
    if "PixelData" not in ds and "FloatPixelData" not in ds \
            and "DoubleFloatPixelData" not in ds:
        return h, "no pixel data (not an image)"
    raw = ds.get_item(fast_header.PIXEL_DATA)
    if raw is None:
        if "PixelData" in ds:
            return None, "truncated: pixel data element cut off"
        return h, ""
    if isinstance(raw, pydicom.dataelem.RawDataElement):  # deferred: offset and length known
        pixel = fast_header.PixelElement("PixelData", raw.value_tell, raw.length)
    else:  # read in full (pydicom reads what is left of a cut-off value)
        pixel = fast_header.PixelElement("PixelData", -1, len(raw.value or b""))
    problem = _check_pixels(h, pixel, size)
    return (None, problem) if problem.startswith("truncated") else (h, problem)


PER_FRAME_GROUPS = 0x52009230  # PerFrameFunctionalGroupsSequence


def read_series_header(path: Path) -> Dataset:
    """The header of a series' first file, for classification, the protocol check and the
    identifying values: every attribute before the per-frame functional groups (5200,9230),
    and of those only the first item (the others repeat it per frame, and pydicom takes
    50-150 ms to parse them all); what follows them (overlays, waveforms, pixel data) is not
    read. Anything odd falls back to pydicom's whole header up to the pixel data."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return _header_with_first_frame(path)
        except Exception:  # noqa: BLE001 - the whole header is the fallback
            return pydicom.dcmread(path, stop_before_pixels=True, force=True)


def _header_with_first_frame(path: Path) -> Dataset:
    from pydicom.charset import convert_encodings
    from pydicom.filereader import read_partial, read_sequence_item
    from pydicom.sequence import Sequence

    with open(path, "rb") as fp:
        ds = read_partial(fp, stop_when=lambda tag, vr, length: tag >= PER_FRAME_GROUPS,
                          force=True)
        implicit, little = ds.original_encoding
        if implicit is None or little is None:
            raise ValueError("unknown transfer syntax")
        pos = fp.tell()
        head = fp.read(8 if implicit else 12)
        order = "<" if little else ">"
        if head[:4] != struct.pack(f"{order}HH", 0x5200, 0x9230):
            return ds  # no per-frame groups: read_partial stopped at the pixel data
        if not implicit and head[4:6] != b"SQ":
            raise ValueError("per-frame functional groups not encoded as a sequence")
        length = struct.unpack(f"{order}I", head[-4:])[0]
        if length:
            fp.seek(pos + len(head))
            charset = convert_encodings(ds.get("SpecificCharacterSet") or "ISO_IR 6")
            item = read_sequence_item(fp, implicit, little, charset)
            if item is not None:
                ds.PerFrameFunctionalGroupsSequence = Sequence([item])
    return ds


def read_header(path: Path, size: int, buf=None) -> tuple[Header | None, str]:
    """(header, problem). The header has no pixel values but the pixel element is checked
    against the file size, so truncated files are caught without decoding. ``buf``: the
    file's bytes when already mapped."""
    try:
        if buf is None:
            with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) \
                    as mapped:
                h, pixel = fast_header.read_fields(mapped)
        else:
            h, pixel = fast_header.read_fields(buf)
    except (fast_header.UnsupportedError, ValueError, struct.error, OSError):
        return read_with_pydicom(path, size)
    if problem := _check_identity(h):
        return None, problem
    problem = _check_pixels(h, pixel, size)
    return (None, problem) if problem.startswith("truncated") else (h, problem)


def _scan_one(path: Path) -> tuple[int, str, Header | None, str]:
    """(size, SHA-256, header, problem) of one file, read once (memory-mapped)."""
    size = path.stat().st_size
    if size == 0:
        return size, "", None, "empty file"
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        digest = hashlib.sha256(buf).hexdigest()
        header, problem = read_header(path, size, buf)
    return size, digest, header, problem


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
