"""Read a few top-level attributes of a DICOM file without building a pydicom Dataset.

Intake's scan needs about twenty top-level values of every file and where its pixel data
lies. pydicom parses every element for that, nested vendor sequences included (3-5 ms per
Philips/GE file); this walker steps over elements by their lengths and decodes only the
wanted ones (PS3.5 section 7: explicit and implicit VR little endian, undefined-length
sequences and items).

It handles the common case only: a Part-10 file (preamble and ``DICM``) in a little-endian,
non-deflated transfer syntax, whose wanted values are plain ASCII and well formed. Anything
else raises :class:`UnsupportedError` and the caller reads the file with pydicom instead, so an
odd file costs time, never a different answer. Values follow pydicom's conventions (text
stripped of trailing padding, multi-values as lists, IS as int, DS as float, an empty
numeric value as None), which a test checks file by file against pydicom.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

UNDEFINED = 0xFFFFFFFF
PIXEL_DATA = 0x7FE00010
#: Pixel-data tags (PixelData, FloatPixelData, DoubleFloatPixelData) by keyword.
PIXEL_TAGS = {0x7FE00010: "PixelData", 0x7FE00008: "FloatPixelData",
              0x7FE00009: "DoubleFloatPixelData"}
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN",
                       b"UR", b"UT", b"UV"})
_IMPLICIT_VR_LE = "1.2.840.10008.1.2"
_UNSUPPORTED_SYNTAXES = {"1.2.840.10008.1.2.2": "explicit VR big endian",
                         "1.2.840.10008.1.2.1.99": "deflated"}
_MAX_DEPTH = 32

_U16, _U32, _TAG = struct.Struct("<H"), struct.Struct("<I"), struct.Struct("<HH")

#: The attributes this reader decodes: keyword -> (tag, VR from the data dictionary).
ATTRIBUTES: dict[str, tuple[int, str]] = {
    "InstanceCreationDate": (0x00080012, "DA"),
    "SOPClassUID": (0x00080016, "UI"), "SOPInstanceUID": (0x00080018, "UI"),
    "StudyDate": (0x00080020, "DA"), "SeriesDate": (0x00080021, "DA"),
    "AcquisitionDate": (0x00080022, "DA"), "ContentDate": (0x00080023, "DA"),
    "AcquisitionDateTime": (0x0008002A, "DT"),
    "StudyTime": (0x00080030, "TM"), "SeriesTime": (0x00080031, "TM"),
    "Modality": (0x00080060, "CS"), "ImageType": (0x00080008, "CS"),
    "SeriesDescription": (0x0008103E, "LO"), "PatientID": (0x00100020, "LO"),
    "StudyInstanceUID": (0x0020000D, "UI"), "SeriesInstanceUID": (0x0020000E, "UI"),
    "SeriesNumber": (0x00200011, "IS"), "InstanceNumber": (0x00200013, "IS"),
    "ImagePositionPatient": (0x00200032, "DS"), "ImageOrientationPatient": (0x00200037, "DS"),
    "SamplesPerPixel": (0x00280002, "US"), "NumberOfFrames": (0x00280008, "IS"),
    "Rows": (0x00280010, "US"), "Columns": (0x00280011, "US"),
    "BitsAllocated": (0x00280100, "US"),
}
_BY_TAG = {tag: (kw, vr) for kw, (tag, vr) in ATTRIBUTES.items()}
_LAST_WANTED = max(_BY_TAG)


class UnsupportedError(Exception):
    """The file is outside what this reader handles; read it with pydicom."""


@dataclass(frozen=True)
class PixelElement:
    """Where a pixel-data element's value starts and its declared length (UNDEFINED for
    encapsulated, i.e. compressed, pixel data)."""

    keyword: str
    offset: int
    length: int


def read_fields(buf) -> tuple[dict[str, object], PixelElement | None]:
    """(wanted top-level values by keyword, the first pixel-data element or None) of the
    Part-10 file in ``buf`` (bytes, memoryview or mmap)."""
    if len(buf) < 132 or buf[128:132] != b"DICM":
        raise UnsupportedError("no Part-10 preamble")
    pos, syntax = _read_meta(buf)
    explicit = syntax != _IMPLICIT_VR_LE
    if syntax in _UNSUPPORTED_SYNTAXES:
        raise UnsupportedError(_UNSUPPORTED_SYNTAXES[syntax])
    raw: dict[int, tuple[bytes, bytes | None]] = {}
    pixel = _walk_top(buf, pos, explicit, raw)
    return {_BY_TAG[tag][0]: _decode(value, _BY_TAG[tag][1], vr)
            for tag, (value, vr) in raw.items()}, pixel


def _read_meta(buf) -> tuple[int, str]:
    """Position after the file meta group (0002, always explicit VR LE) and the transfer
    syntax UID."""
    pos, end, syntax = 132, len(buf), None
    while pos + 8 <= end:
        group, elem = _TAG.unpack_from(buf, pos)
        if group != 0x0002:
            break
        vr = bytes(buf[pos + 4:pos + 6])
        if vr in _LONG_VRS:
            length, pos = _U32.unpack_from(buf, pos + 8)[0], pos + 12
        else:
            length, pos = _U16.unpack_from(buf, pos + 6)[0], pos + 8
        if length == UNDEFINED or pos + length > end:
            raise UnsupportedError("malformed file meta information")
        if elem == 0x0010:
            syntax = bytes(buf[pos:pos + length]).rstrip(b"\x00 ").decode("ascii", "replace")
        pos += length
    if syntax is None:
        raise UnsupportedError("no transfer syntax in the file meta information")
    return pos, syntax


def _element(buf, pos: int, explicit: bool) -> tuple[int, bytes | None, int, int]:
    """(tag, VR or None, value position, value length) of the element at ``pos``."""
    if pos + 8 > len(buf):
        raise UnsupportedError("element header cut off")
    group, elem = _TAG.unpack_from(buf, pos)
    tag = group << 16 | elem
    if explicit and group != 0xFFFE:
        vr = bytes(buf[pos + 4:pos + 6])
        if vr in _LONG_VRS:
            if pos + 12 > len(buf):
                raise UnsupportedError("element header cut off")
            return tag, vr, pos + 12, _U32.unpack_from(buf, pos + 8)[0]
        if not vr.isalpha() or not vr.isupper():
            raise UnsupportedError("implausible VR")
        return tag, vr, pos + 8, _U16.unpack_from(buf, pos + 6)[0]
    return tag, None, pos + 8, _U32.unpack_from(buf, pos + 4)[0]


def _walk_top(buf, pos: int, explicit: bool, raw: dict) -> PixelElement | None:
    """Collect the wanted elements; then find the pixel data (at the file's end, where it
    nearly always is, or by walking on)."""
    end, unpack_tag, unpack_u16, unpack_u32 = len(buf), _TAG.unpack_from, _U16.unpack_from, \
        _U32.unpack_from
    while pos < end:  # the hot loop: _element inlined
        if pos + 8 > end:
            raise UnsupportedError("element header cut off")
        group, elem = unpack_tag(buf, pos)
        tag = group << 16 | elem
        if tag > _LAST_WANTED:
            break
        vr = None
        if explicit:
            vr = buf[pos + 4:pos + 6]
            if vr in _LONG_VRS:
                vpos, length = pos + 12, unpack_u32(buf, pos + 8)[0]
            else:
                vpos, length = pos + 8, unpack_u16(buf, pos + 6)[0]
        else:
            vpos, length = pos + 8, unpack_u32(buf, pos + 4)[0]
        if length == UNDEFINED:
            pos = _skip_sequence(buf, vpos, explicit and vr != b"UN", 1)
            continue
        if vpos + length > end:
            raise UnsupportedError("element value cut off")
        if tag in _BY_TAG:
            raw[tag] = (bytes(buf[vpos:vpos + length]), vr)
        pos = vpos + length
    return _pixel_at_end(buf, explicit, raw) or _walk_to_pixels(buf, pos, explicit)


def _pixel_at_end(buf, explicit: bool, raw: dict) -> PixelElement | None:
    """The native PixelData element when it ends the file with the length the image
    attributes imply, else None."""
    try:
        dims = [_U16.unpack(raw[t][0])[0] for t in (0x00280010, 0x00280011, 0x00280100)]
        frames = int(raw[0x00280008][0].strip(b" \x00") or 1) if 0x00280008 in raw else 1
        samples = _U16.unpack(raw[0x00280002][0])[0] if 0x00280002 in raw else 1
    except (KeyError, ValueError, struct.error):
        return None
    length = dims[0] * dims[1] * samples * frames * ((dims[2] + 7) // 8)
    length += length % 2  # values have even length
    header = 12 if explicit else 8
    pos = len(buf) - length - header
    if length == 0 or pos < 132:
        return None
    group, elem = _TAG.unpack_from(buf, pos)
    if (group, elem) != (0x7FE0, 0x0010):
        return None
    if explicit:
        ok = buf[pos + 4:pos + 6] in (b"OB", b"OW") and _U32.unpack_from(buf, pos + 8)[0] == length
    else:
        ok = _U32.unpack_from(buf, pos + 4)[0] == length
    return PixelElement("PixelData", pos + header, length) if ok else None


def _walk_to_pixels(buf, pos: int, explicit: bool) -> PixelElement | None:
    """The first pixel-data element after ``pos``; what follows it must be well-formed
    elements up to the file's end (trailing padding, signatures), else the file is damaged
    and goes to pydicom."""
    end = len(buf)
    while pos < end:
        tag, vr, vpos, length = _element(buf, pos, explicit)
        if tag in PIXEL_TAGS:
            if length != UNDEFINED:
                if vpos + length > end:
                    raise UnsupportedError("pixel data cut off")
                _walk_to_end(buf, vpos + length, explicit)
            return PixelElement(PIXEL_TAGS[tag], vpos, length)
        if length == UNDEFINED:
            pos = _skip_sequence(buf, vpos, explicit and vr != b"UN", 1)
        elif vpos + length > end:
            raise UnsupportedError("element value cut off")
        else:
            pos = vpos + length
    return None


def check_trailer(buf, pos: int, explicit: bool) -> None:
    """What follows the pixel data at ``pos`` (little endian) must be well-formed elements
    of the trailing groups (signatures, padding) ending exactly at the end of ``buf``;
    raises :class:`UnsupportedError` otherwise."""
    _walk_to_end(buf, pos, explicit)


def _walk_to_end(buf, pos: int, explicit: bool) -> None:
    """Step over the elements from ``pos``; they must end exactly at the file's end."""
    end = len(buf)
    while pos < end:
        tag, vr, vpos, length = _element(buf, pos, explicit)
        if tag <= PIXEL_DATA:
            raise UnsupportedError("elements out of order after the pixel data")
        if length == UNDEFINED:
            pos = _skip_sequence(buf, vpos, explicit and vr != b"UN", 1)
        elif vpos + length > end:
            raise UnsupportedError("element value cut off")
        else:
            pos = vpos + length


def _skip_sequence(buf, pos: int, explicit: bool, depth: int) -> int:
    """Position after an undefined-length sequence's delimiter (items skipped)."""
    if depth > _MAX_DEPTH:
        raise UnsupportedError("sequences nested too deep")
    while True:
        tag, _, vpos, length = _element(buf, pos, False)  # item tags carry no VR
        if tag == _SEQ_END:
            return vpos
        if tag != _ITEM:
            raise UnsupportedError("malformed sequence")
        if length == UNDEFINED:
            pos = _skip_item(buf, vpos, explicit, depth)
        elif vpos + length > len(buf):
            raise UnsupportedError("sequence item cut off")
        else:
            pos = vpos + length


def _skip_item(buf, pos: int, explicit: bool, depth: int) -> int:
    """Position after an undefined-length item's delimiter."""
    while True:
        tag, vr, vpos, length = _element(buf, pos, explicit)
        if tag == _ITEM_END:
            return vpos
        if length == UNDEFINED:
            pos = _skip_sequence(buf, vpos, explicit and vr != b"UN", depth + 1)
        elif vpos + length > len(buf):
            raise UnsupportedError("element value cut off")
        else:
            pos = vpos + length


def _decode(value: bytes, vr: str, file_vr: bytes | None) -> object:
    if file_vr is not None and file_vr != b"UN" and file_vr.decode() != vr:
        raise UnsupportedError(f"VR {file_vr.decode()} where the dictionary has {vr}")
    if vr == "US":
        if len(value) == 0:
            return None
        if len(value) != 2:
            raise UnsupportedError("US value of unexpected length")
        return _U16.unpack(value)[0]
    if not value.isascii():
        raise UnsupportedError("non-ASCII value (character set decoding needed)")
    text = value.decode("ascii")
    if vr == "LO":  # text VR: each value stripped of trailing padding
        items = [v.rstrip("\x00 ") for v in text.split("\\")]
    else:
        items = text.rstrip(" \x00").split("\\")
    if vr in ("IS", "DS"):
        if items == [""]:
            return None
        try:
            nums = [int(v) for v in items] if vr == "IS" else [float(v) for v in items]
        except ValueError as exc:
            raise UnsupportedError(f"malformed {vr} value") from exc
        return nums[0] if len(nums) == 1 else nums
    return items[0] if len(items) == 1 else items

