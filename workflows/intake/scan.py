"""Read a site drop: every file becomes a DICOM header record or gets an outcome at once.

No read of an input file can fail the drop: every failure (I/O errors, damage pydicom or
our reader trips over, values that cannot be decoded) becomes that file's :class:`Problem`.
"""

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
from trialprep.workflows.intake.outcomes import Outcome, Problem, Reason, exception_detail

#: What the scan reads of every file (a series' first file is later read in full).
SCAN_TAGS = [*fast_header.ATTRIBUTES, *fast_header.PIXEL_TAGS.values()]
#: A scanned header: top-level values by keyword, as pydicom gives them (lists for
#: multi-values, IS as int, DS as float, an empty number as None).
Header = dict
#: SOP classes of images: such an object without pixel data has lost them (damage).
IMAGE_SOP_CLASSES = frozenset({
    "1.2.840.10008.5.1.4.1.1.4",      # MR Image
    "1.2.840.10008.5.1.4.1.1.4.1",    # Enhanced MR Image
    "1.2.840.10008.5.1.4.1.1.4.3",    # Enhanced MR Color Image
    "1.2.840.10008.5.1.4.1.1.4.4",    # Legacy Converted Enhanced MR Image
    "1.2.840.10008.5.1.4.1.1.2",      # CT Image
    "1.2.840.10008.5.1.4.1.1.2.1",    # Enhanced CT Image
    "1.2.840.10008.5.1.4.1.1.128",    # PET Image
    "1.2.840.10008.5.1.4.1.1.130",    # Enhanced PET Image
})


@dataclass
class InputFile:
    """One file of a drop. ``source_id`` is a keyed hash of its relative path, so no raw
    (possibly identifying) path ever reaches an output."""

    path: Path
    source_id: str
    sha256: str
    size: int
    header: Header | None = None
    outcome: Outcome | None = None
    problem: Problem | None = None
    series_key: str = ""
    series_uid: str = ""
    bids_files: list[str] = field(default_factory=list)

    def settle(self, outcome: Outcome, problem: Problem | None = None) -> None:
        """The file's outcome; the first one given stands."""
        if self.outcome is None:
            self.outcome, self.problem = outcome, problem

    def reject(self, problem: Problem) -> None:
        """Settle as the problem's outcome (ignored or quarantined) with its reason."""
        self.settle(problem.outcome, problem)


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
    """The native pixel data's length the image attributes imply (even, as values are)."""
    try:
        frames = int(h.get("NumberOfFrames") or 1)
        n = int(h["Rows"]) * int(h["Columns"]) * int(h.get("SamplesPerPixel") or 1) * frames
        bits = int(h["BitsAllocated"])
    except (KeyError, TypeError, ValueError):
        return None
    if n <= 0 or bits <= 0:
        return None
    size = (n + 7) // 8 if bits == 1 else n * ((bits + 7) // 8)
    return size + size % 2


def _check_identity(h: Header) -> Problem | None:
    missing = [k for k in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID")
               if not str(h.get(k, "") or "").strip()]
    if missing:
        return Problem(Reason.MISSING_UID, f"DICOM without {', '.join(missing)}")
    return None


def _check_pixels(h: Header, pixel: fast_header.PixelElement | None,
                  size: int) -> Problem | None:
    """None for an image whose pixel element is whole and matches its attributes."""
    if pixel is None:
        if str(h.get("SOPClassUID", "")) in IMAGE_SOP_CLASSES:
            return Problem(Reason.NO_PIXEL_DATA, "image object without pixel data (the "
                           "pixel data element is missing or unreadable: damaged file)")
        return Problem(Reason.NOT_AN_IMAGE, f"DICOM {h.get('Modality', '')} object without "
                       "pixel data (not an image)")
    if pixel.keyword == "PixelData" and pixel.length != fast_header.UNDEFINED:
        if pixel.offset >= 0 and pixel.offset + pixel.length > size:  # -1: offset unknown
            return Problem(Reason.TRUNCATED, f"truncated: pixel data needs {pixel.length} "
                           f"bytes, file ends {pixel.offset + pixel.length - size} bytes short")
        expected = _expected_pixel_bytes(h)
        if expected and pixel.length < expected - 1:
            return Problem(Reason.TRUNCATED, f"truncated: pixel data has {pixel.length} "
                           f"bytes, header implies {expected}")
        if expected and pixel.length > expected:
            return Problem(Reason.PIXEL_DATA_MISMATCH,
                           f"pixel data hold {pixel.length} bytes where the image attributes "
                           f"(rows, columns, frames, bits) imply {expected}: damaged header")
    return None


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


def read_with_pydicom(path: Path, size: int) -> tuple[Header | None, Problem | None]:
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
                return None, Problem(Reason.NOT_DICOM, "not a DICOM file")
            if "SOPInstanceUID" not in ds or "SeriesInstanceUID" not in ds:
                return None, Problem(Reason.NOT_DICOM, "not a DICOM file")
        except Exception as exc:  # noqa: BLE001 - pydicom raises many types on bad files
            return None, Problem(Reason.UNREADABLE, f"unreadable DICOM ({type(exc).__name__})"
                                 ": file is truncated or corrupt")
        try:
            h = header_from_dataset(ds)
            raw = ds.get_item(fast_header.PIXEL_DATA, keep_deferred=True)
            has_pixels = any(k in ds for k in fast_header.PIXEL_TAGS.values())
        except Exception as exc:  # noqa: BLE001 - malformed values fail on conversion
            return None, Problem(Reason.UNREADABLE, f"unreadable DICOM ({type(exc).__name__})"
                                 ": malformed header value")
    if problem := _check_identity(h):
        return None, problem
    if not has_pixels:
        return h, _check_pixels(h, None, size)
    if raw is None:
        if "PixelData" in ds:
            return h, Problem(Reason.TRUNCATED, "truncated: pixel data element cut off")
        return h, None  # float pixel data: not checked further
    if isinstance(raw, pydicom.dataelem.RawDataElement):  # deferred: offset and length known
        pixel = fast_header.PixelElement("PixelData", raw.value_tell, raw.length)
        end = raw.value_tell + raw.length
        if raw.length != fast_header.UNDEFINED and end < size \
                and (problem := _trailer_problem(path, end, size, ds)):
            return h, problem
    else:  # read in full (pydicom reads what is left of a cut-off value)
        pixel = fast_header.PixelElement("PixelData", -1, len(raw.value or b""))
    return h, _check_pixels(h, pixel, size)


def _trailer_problem(path: Path, end: int, size: int, ds: Dataset) -> Problem | None:
    """Bytes after the native pixel data that are not trailing DICOM elements: bytes were
    inserted into the pixel data or another file was appended (little endian checked)."""
    implicit, little = ds.original_encoding
    if not little:
        return None
    with open(path, "rb") as fh:
        data = fh.read()
    try:
        fast_header.check_trailer(data, end, explicit=not implicit)
    except (fast_header.UnsupportedError, struct.error):
        return Problem(Reason.PIXEL_DATA_MISMATCH, f"{size - end} byte(s) after the pixel "
                       "data are not DICOM elements (bytes inserted into the pixel data, or "
                       "files run together)")
    return None


class SeriesHeaderError(ValueError):
    """A series' first file has a header that cannot be read in full."""


PER_FRAME_GROUPS = 0x52009230  # PerFrameFunctionalGroupsSequence


def read_series_header(path: Path) -> Dataset:
    """The header of a series' first file, for classification, the protocol check and the
    identifying values: every attribute before the per-frame functional groups (5200,9230),
    and of those only the first item (the others repeat it per frame, and pydicom takes
    50-150 ms to parse them all); what follows them (overlays, waveforms, pixel data) is not
    read. Anything odd falls back to pydicom's whole header up to the pixel data. Every
    value is decoded here, so later steps never meet an undecodable one: a header that cannot
    be read or decoded raises :class:`SeriesHeaderError`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = _header_with_first_frame(path)
            _decode_all(ds)
            return ds
        except Exception:  # noqa: BLE001 - the whole header is the fallback
            pass
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
            _decode_all(ds)
        except Exception as exc:  # noqa: BLE001 - pydicom raises many types on bad files
            raise SeriesHeaderError("the header of the series' first file cannot be read "
                                    f"({exception_detail(exc)})") from exc
    return ds


def _decode_all(ds: Dataset) -> None:
    """Decode every element (pydicom decodes lazily, on first access)."""
    for elem in ds.iterall():
        _ = elem.value


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


def read_header(path: Path, size: int, buf=None) -> tuple[Header | None, Problem | None]:
    """(header, problem). The header has no pixel values but the pixel element is checked
    against the file size and the image attributes, so damaged files are caught without
    decoding. ``buf``: the file's bytes when already mapped."""
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
    return h, _check_pixels(h, pixel, size)


def _scan_one(path: Path) -> tuple[int, str, Header | None, Problem | None]:
    """(size, SHA-256, header, problem) of one file, read once (memory-mapped). Never
    raises: a file that cannot be read is a problem of that file."""
    size, digest = 0, ""
    try:
        size = path.stat().st_size
        if size == 0:
            return size, "", None, Problem(Reason.EMPTY_FILE, "empty file")
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) \
                as buf:
            digest = hashlib.sha256(buf).hexdigest()
            header, problem = read_header(path, size, buf)
        return size, digest, header, problem
    except OSError as exc:
        return size, digest, None, Problem(Reason.UNREADABLE, "the file cannot be read "
                                           f"({exc.strerror or type(exc).__name__})")
    except Exception as exc:  # noqa: BLE001 - a reader's bug must not stop the drop
        return size, digest, None, Problem(Reason.UNREADABLE,
                                           f"unreadable DICOM ({exception_detail(exc)})")


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
        if problem is not None:
            rec.reject(problem)
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
