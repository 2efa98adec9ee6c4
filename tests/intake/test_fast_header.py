"""The scan's fast header reader gives pydicom's values, or hands the file to pydicom."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from tests.conftest import SHARED
from tests.intake.helpers import header, write
from trialprep.workflows.intake import fast_header
from trialprep.workflows.intake.outcomes import Outcome, Reason
from trialprep.workflows.intake.scan import SCAN_TAGS, header_from_dataset, read_header, walk_drop

FIXTURES = SHARED / "fixtures" / "dicom"


def _pydicom_view(path: Path) -> tuple[dict, bytes | None]:
    """pydicom's reading of the scan's attributes and of the native pixel bytes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path, defer_size=1024, specific_tags=SCAN_TAGS)
        pixels = ds.get("PixelData")
    return header_from_dataset(ds), pixels


def _pixels(data: bytes, pixel: fast_header.PixelElement) -> bytes | None:
    if pixel is None:
        return None
    return data[pixel.offset:pixel.offset + pixel.length]


def _compare_tree(root: Path) -> int:
    compared = 0
    for path in walk_drop(root)[0]:
        data = path.read_bytes()
        try:
            fields, pixel = fast_header.read_fields(data)
        except fast_header.UnsupportedError:
            continue
        expected, expected_pixels = _pydicom_view(path)
        assert fields == expected, path.name
        if pixel.length != fast_header.UNDEFINED:  # native: the same bytes
            assert _pixels(data, pixel) == expected_pixels, path.name
        compared += 1
    return compared


def test_same_values_as_pydicom_on_every_vendor_fixture():
    # Siemens mosaic and XA enhanced, GE, Philips classic and enhanced, Canon, UIH: all
    # 930 DICOM files (the folder's other files are reference outputs and licences).
    assert _compare_tree(FIXTURES) == 930


def test_same_values_as_pydicom_on_written_series(tmp_path):
    write(tmp_path / "a", header(pid=" PID 7 ", SeriesDescription="t1 mprage "), slices=6)
    assert _compare_tree(tmp_path) == 6


def _part10(path: Path, ds: Dataset, syntax, pixels: bytes | None = b"\x01\x00" * 12,
            tail: Dataset | None = None, sop_class: str = "1.2.840.10008.5.1.4.1.1.4") -> Path:
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = "1.2.3.4.5.6"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.3.4", "1.2.3.4.5"
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.SamplesPerPixel = 3, 4, 16, 1
    if pixels is not None:
        ds.PixelData = pixels
    if tail is not None:
        ds.update(tail)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)
    return path


def _nested() -> Dataset:
    """Top-level values plus decoys of the same tags inside nested sequences."""
    ds = Dataset()
    ds.PatientID = "TOP"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M"]
    ds.ImagePositionPatient = [-10.5, 2, 3.25]
    ds.SeriesNumber = 7
    inner = Dataset()
    inner.SeriesDescription = "decoy inner"
    item = Dataset()
    item.PatientID = "DECOY"
    item.ReferencedImageSequence = Sequence([inner, Dataset()])
    ds.ProcedureCodeSequence = Sequence([item])
    ds.SeriesDescription = "real"
    return ds


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_nested_sequences_are_stepped_over(tmp_path, syntax):
    path = _part10(tmp_path / "x.dcm", _nested(), syntax)
    fields, pixel = fast_header.read_fields(path.read_bytes())
    assert fields["PatientID"] == "TOP" and fields["SeriesDescription"] == "real"
    assert fields["ImageType"] == ["ORIGINAL", "PRIMARY", "M"]
    assert fields["ImagePositionPatient"] == [-10.5, 2.0, 3.25]
    assert fields["SeriesNumber"] == 7 and fields["Rows"] == 3
    assert (fields, _pixels(path.read_bytes(), pixel)) == _pydicom_view(path)


def test_undefined_length_sequences_are_stepped_over(tmp_path):
    path = _part10(tmp_path / "x.dcm", _nested(), ExplicitVRLittleEndian)
    ds = pydicom.dcmread(path)
    ds["ProcedureCodeSequence"].is_undefined_length = True
    ds.ProcedureCodeSequence[0].is_undefined_length_sequence_item = True
    ds.ProcedureCodeSequence[0]["ReferencedImageSequence"].is_undefined_length = True
    ds.save_as(path)
    data = path.read_bytes()  # sequence and item delimiters are there
    assert b"\xfe\xff\xdd\xe0" in data and b"\xfe\xff\x0d\xe0" in data
    fields, pixel = fast_header.read_fields(path.read_bytes())
    assert (fields, _pixels(path.read_bytes(), pixel)) == _pydicom_view(path)


def test_pixel_data_followed_by_padding_is_found_by_walking(tmp_path):
    tail = Dataset()
    tail.add_new(0xFFFCFFFC, "OB", b"\x00" * 8)  # data set trailing padding
    path = _part10(tmp_path / "x.dcm", _nested(), ExplicitVRLittleEndian, tail=tail)
    data = path.read_bytes()
    _, pixel = fast_header.read_fields(data)
    assert pixel.length == 24 and data[pixel.offset + pixel.length:][:4] == b"\xfc\xff\xfc\xff"
    assert _pixels(data, pixel) == _pydicom_view(path)[1]


def test_odd_files_go_to_pydicom_with_the_same_answer(tmp_path):
    ds = _nested()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = "Müller^Jörg"
    ds.PatientID = "PÄT-1"
    latin = _part10(tmp_path / "latin.dcm", ds, ExplicitVRLittleEndian)
    with pytest.raises(fast_header.UnsupportedError, match="non-ASCII"):
        fast_header.read_fields(latin.read_bytes())
    h, problem = read_header(latin, latin.stat().st_size)
    assert problem is None and h["PatientID"] == "PÄT-1"

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        big = _part10(tmp_path / "big.dcm", _nested(), ExplicitVRBigEndian)
    with pytest.raises(fast_header.UnsupportedError, match="big endian"):
        fast_header.read_fields(big.read_bytes())
    h, problem = read_header(big, big.stat().st_size)
    assert problem is None and h["PatientID"] == "TOP" and h["Rows"] == 3

    raw = tmp_path / "raw.dcm"  # no preamble: pydicom reads it with force
    raw.write_bytes(latin.read_bytes()[132:])
    with pytest.raises(fast_header.UnsupportedError, match="preamble"):
        fast_header.read_fields(raw.read_bytes())


def test_damage_is_judged_as_pydicom_judges_it(tmp_path):
    path = _part10(tmp_path / "x.dcm", _nested(), ExplicitVRLittleEndian,
                   pixels=np.arange(12, dtype=np.uint16).tobytes())
    data = path.read_bytes()
    cut_pixels = tmp_path / "cut_pixels.dcm"
    cut_pixels.write_bytes(data[:-6])
    h, problem = read_header(cut_pixels, cut_pixels.stat().st_size)
    assert problem.reason is Reason.TRUNCATED
    assert problem.detail == "truncated: pixel data needs 24 bytes, file ends 6 bytes short"
    cut_header = tmp_path / "cut_header.dcm"
    cut_header.write_bytes(data[:200])
    with pytest.raises(fast_header.UnsupportedError):
        fast_header.read_fields(cut_header.read_bytes())
    h, problem = read_header(cut_header, 200)
    assert h is None and problem.outcome is Outcome.QUARANTINED  # pydicom's judgement
    no_pixels = _part10(tmp_path / "sr.dcm", _nested(), ExplicitVRLittleEndian, pixels=None)
    h, problem = read_header(no_pixels, no_pixels.stat().st_size)
    # an MR image object that has lost its pixel data is damage, not a non-image object
    assert h["PatientID"] == "TOP" and problem.reason is Reason.NO_PIXEL_DATA
    assert problem.outcome is Outcome.QUARANTINED
    report = _part10(tmp_path / "sr.dcm", _nested(), ExplicitVRLittleEndian, pixels=None,
                     sop_class="1.2.840.10008.5.1.4.1.1.88.22")  # Enhanced SR
    h, problem = read_header(report, report.stat().st_size)
    assert problem.reason is Reason.NOT_AN_IMAGE and problem.outcome is Outcome.IGNORED


def test_pixel_data_that_disagree_with_the_header_are_caught(tmp_path):
    path = _part10(tmp_path / "x.dcm", _nested(), ExplicitVRLittleEndian,
                   pixels=np.arange(12, dtype=np.uint16).tobytes())
    data = path.read_bytes()
    # bytes inserted inside the pixel data: the element no longer ends the file
    spoilt = tmp_path / "inserted.dcm"
    spoilt.write_bytes(data[:-4] + b"\x13\x37\x00\x01\xff" + data[-4:])
    h, problem = read_header(spoilt, spoilt.stat().st_size)
    assert problem is not None and problem.outcome is Outcome.QUARANTINED
    # Rows doubled by a flipped bit: the pixel data are half of what the header implies
    ds = pydicom.dcmread(path)
    ds.Rows = 6
    ds.save_as(tmp_path / "rows.dcm")
    h, problem = read_header(tmp_path / "rows.dcm", (tmp_path / "rows.dcm").stat().st_size)
    assert problem.reason is Reason.TRUNCATED
    ds.Rows, ds.Columns = 1, 4  # a third of it: more pixel data than the header implies
    ds.save_as(tmp_path / "cols.dcm")
    h, problem = read_header(tmp_path / "cols.dcm", (tmp_path / "cols.dcm").stat().st_size)
    assert problem.reason is Reason.PIXEL_DATA_MISMATCH
