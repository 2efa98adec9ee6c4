"""The series header (classification, protocol check, identifying values) read without an
enhanced file's per-frame functional groups beyond the first: the same answers as pydicom's
whole header on every vendor fixture and on written files of each encoding."""

from __future__ import annotations

import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from tests.intake.test_fast_header import FIXTURES, _part10
from trialprep.workflows.intake.deid import identifying_strings, real_dates
from trialprep.workflows.intake.protocol import acquisition_values, find_value
from trialprep.workflows.intake.scan import (
    PER_FRAME_GROUPS,
    read_header,
    read_series_header,
    walk_drop,
)

KEYWORDS = ("MagneticFieldStrength", "RepetitionTime", "InversionTime", "FlipAngle",
            "SliceThickness", "SpacingBetweenSlices", "EchoTime", "EffectiveEchoTime",
            "PixelSpacing", "ImageType", "SeriesDescription", "ProtocolName",
            "ScanningSequence", "SequenceVariant", "DiffusionBValue", "ImageOrientationPatient")


def _whole(path: Path) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, stop_before_pixels=True, force=True)


def _same_header(path: Path) -> bool:
    """Asserts the answers match; returns whether the file is enhanced multi-frame."""
    whole, ours = _whole(path), read_series_header(path)
    for elem in whole:
        if elem.tag < PER_FRAME_GROUPS:
            assert ours[elem.tag] == elem, (path, elem.keyword)
    frames = whole.get("PerFrameFunctionalGroupsSequence")
    if frames:
        assert list(ours.PerFrameFunctionalGroupsSequence) == [frames[0]], path
    for kw in KEYWORDS:
        assert find_value(ours, kw) == find_value(whole, kw), (path, kw)
    assert acquisition_values(ours, 1) == acquisition_values(whole, 1), path
    assert identifying_strings(ours) == identifying_strings(whole), path
    assert real_dates(ours) == real_dates(whole), path
    return bool(frames)


def test_same_answers_as_the_whole_header_on_every_vendor_fixture():
    # The first files of every folder (intake reads a series' first file): Siemens mosaic
    # and XA enhanced, GE, Philips classic and enhanced, Canon enhanced, UIH.
    firsts: dict[Path, list[Path]] = {}
    for p in sorted(walk_drop(FIXTURES)[0]):
        if read_header(p, p.stat().st_size)[0] and len(firsts.setdefault(p.parent, [])) < 3:
            firsts[p.parent].append(p)
    files = [p for group in firsts.values() for p in group]
    enhanced = sum(_same_header(p) for p in files)
    assert len(firsts) >= 12 and enhanced >= 5


def _enhanced(n_frames: int) -> Dataset:
    ds = Dataset()
    ds.PatientID, ds.PatientName = "PID-77", "Doe^Jane"
    ds.SeriesDescription = "fmap"
    shared = Dataset()
    pm = Dataset()
    pm.PixelSpacing, pm.SliceThickness = [2.0, 2.0], 3.0
    shared.PixelMeasuresSequence = Sequence([pm])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for k in range(n_frames):
        echo = Dataset()
        echo.EffectiveEchoTime = 4.9 + k
        item = Dataset()
        item.MREchoSequence = Sequence([echo])
        frames.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.NumberOfFrames = n_frames
    return ds


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian,
                                    ExplicitVRBigEndian])
def test_written_enhanced_files_of_each_encoding(tmp_path, syntax):
    path = _part10(tmp_path / "x.dcm", _enhanced(5), syntax, pixels=b"\x01\x00" * 12 * 5)
    assert _same_header(path)
    header = read_series_header(path)
    assert len(header.PerFrameFunctionalGroupsSequence) == 1
    assert find_value(header, "EffectiveEchoTime") == pytest.approx(4.9)
    assert find_value(header, "PixelSpacing") == [2.0, 2.0]


def test_damaged_per_frame_groups_fall_back_to_pydicom(tmp_path):
    path = _part10(tmp_path / "x.dcm", _enhanced(3), ExplicitVRLittleEndian,
                   pixels=b"\x01\x00" * 36)
    data = bytearray(path.read_bytes())
    at = data.index(b"\x00\x52\x30\x92")  # (5200,9230) little endian
    data[at + 4:at + 6] = b"UN"  # not a sequence any more
    path.write_bytes(bytes(data))
    header = read_series_header(path)
    assert header.PatientID == _whole(path).PatientID == "PID-77"
