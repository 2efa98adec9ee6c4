"""Mutated copies of real DICOM files, for intake's fuzz tests.

The mutations are the damage broken PACS exports and interrupted transfers produce: flipped
bits, truncation, inserted and zeroed bytes, a length field that lies and a garbled VR, aimed
at one region of the file: the preamble, the file meta information, the top-level dataset or
the items of nested sequences (an enhanced file's functional groups). Each mutated file
records whether its pixel data survived intact: the oracle of the test ("converted outputs
only for files whose pixel data are intact").

The element locator below is the test's own (a plain walk of PS3.5 section 7), independent of
intake's readers.
"""

from __future__ import annotations

import enum
import random
import struct
from dataclasses import dataclass, field
from pathlib import Path

_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR",
             b"UT", b"UV"}
_UNDEFINED = 0xFFFFFFFF
_PIXEL_TAGS = {(0x7FE0, 0x0010), (0x7FE0, 0x0008), (0x7FE0, 0x0009)}
_IMPLICIT = b"1.2.840.10008.1.2\x00"
_EXPLICIT = b"1.2.840.10008.1.2.1\x00"
#: Transfer syntaxes a damaged meta header may name (little endian ones read the same data).
_SYNTAXES = [_IMPLICIT, _EXPLICIT, b"1.2.840.10008.1.2.2\x00", b"1.2.840.10008.1.2.1.99",
             b"1.2.840.10008.1.2.4.50", b"1.2.840.10008.1.2.4.90", b"1.2.840.10008.1.2.5\x00"]
#: VRs a garbled VR may become (valid but wrong ones, and garbage).
_OTHER_VRS = [b"SQ", b"UN", b"OB", b"UT", b"US", b"UL", b"FD", b"DS", b"CS", b"LO", b"AT"]


class Kind(enum.Enum):
    BIT_FLIP = "bit_flip"
    TRUNCATE = "truncate"
    INSERT = "insert"
    ZERO = "zero"
    LYING_LENGTH = "lying_length"
    GARBLED_VR = "garbled_vr"
    DELETE = "delete"                    # bytes removed
    OVERWRITE = "overwrite"              # a run of random bytes
    TRANSFER_SYNTAX = "transfer_syntax"  # the meta header names another transfer syntax


class Region(enum.Enum):
    PREAMBLE = "preamble"
    META = "meta"
    DATASET = "dataset"
    SEQUENCE = "sequence"
    PIXEL = "pixel"  # only truncation and insertion (both detectable)


@dataclass(frozen=True)
class Element:
    """Where one element lies in a file: its header, value and nesting depth."""

    start: int       # first byte of the tag
    vr_at: int       # position of the VR bytes (-1: implicit VR or item tags)
    len_at: int      # position of the length field
    len_size: int    # 2 or 4
    value: int       # first byte of the value
    length: int      # declared length (_UNDEFINED for undefined)
    depth: int       # 0: top level (or file meta), 1+: inside sequence items
    meta: bool
    pixel: bool


@dataclass
class Layout:
    size: int
    elements: list[Element]
    preamble_end: int  # 0 for files without the Part-10 preamble
    meta_end: int
    pixel_start: int  # first byte of the pixel element's tag (size when none)
    pixel_end: int

    def region(self, region: Region) -> list[int]:
        """Byte positions a mutation in ``region`` may hit (start, stop)."""
        if region is Region.PREAMBLE:
            return [0, self.preamble_end]
        if region is Region.META:
            return [min(self.preamble_end + 4, self.meta_end), self.meta_end]
        if region is Region.PIXEL:
            return [self.pixel_start, self.size]
        return [self.meta_end, self.pixel_start]


def locate(data: bytes) -> Layout:
    """Every element of a DICOM file (explicit or implicit VR little endian; with or
    without the Part-10 preamble and meta information, as some vendors export)."""
    elements: list[Element] = []
    if data[128:132] == b"DICM":
        pos, explicit, part10 = 132, True, True
    elif len(data) >= 8 and data[:2] == b"\x08\x00":  # a bare dataset starting at group 8
        pos, part10 = 0, False
        explicit = data[4:6].isalpha() and data[4:6].isupper()
    else:
        raise ValueError("not a DICOM file")
    while part10 and pos + 8 <= len(data):
        group, elem = struct.unpack_from("<HH", data, pos)
        if group != 0x0002:
            break
        el = _explicit(data, pos, 0, meta=True)
        elements.append(el)
        if elem == 0x0010:
            explicit = data[el.value:el.value + el.length] != _IMPLICIT
        pos = el.value + el.length
    meta_end = pos
    preamble = 128 if part10 else 0
    pixel_start = pixel_end = len(data)
    end = _walk(data, pos, len(data), explicit, 0, elements)
    for el in elements:
        if el.pixel and el.depth == 0:
            pixel_start = el.start
            pixel_end = el.value + (el.length if el.length != _UNDEFINED else end - el.value)
            break
    return Layout(len(data), elements, preamble, meta_end, pixel_start, pixel_end)


def _explicit(data: bytes, pos: int, depth: int, meta: bool = False) -> Element:
    group, elem = struct.unpack_from("<HH", data, pos)
    vr = data[pos + 4:pos + 6]
    pixel = (group, elem) in _PIXEL_TAGS
    if vr in _LONG_VRS:
        length = struct.unpack_from("<I", data, pos + 8)[0]
        return Element(pos, pos + 4, pos + 8, 4, pos + 12, length, depth, meta, pixel)
    length = struct.unpack_from("<H", data, pos + 6)[0]
    return Element(pos, pos + 4, pos + 6, 2, pos + 8, length, depth, meta, pixel)


def _walk(data: bytes, pos: int, end: int, explicit: bool, depth: int,
          out: list[Element]) -> int:
    """Walk elements from ``pos`` to ``end`` (or a delimiter); returns where it stopped."""
    while pos + 8 <= end:
        group, elem = struct.unpack_from("<HH", data, pos)
        if group == 0xFFFE:  # item / delimiters: implicit header, length 4 bytes
            length = struct.unpack_from("<I", data, pos + 4)[0]
            out.append(Element(pos, -1, pos + 4, 4, pos + 8, length, depth, False, False))
            if elem in (0xE00D, 0xE0DD):
                return pos + 8
            if length == _UNDEFINED:
                pos = _walk(data, pos + 8, end, explicit, depth + 1, out)
            else:
                _walk(data, pos + 8, pos + 8 + length, explicit, depth + 1, out)
                pos = pos + 8 + length
            continue
        if explicit:
            el = _explicit(data, pos, depth)
            is_seq = data[pos + 4:pos + 6] == b"SQ"
        else:
            length = struct.unpack_from("<I", data, pos + 4)[0]
            el = Element(pos, -1, pos + 4, 4, pos + 8, length, depth, False,
                         (group, elem) in _PIXEL_TAGS)
            is_seq = length == _UNDEFINED and not el.pixel
        out.append(el)
        if el.length == _UNDEFINED:
            if el.pixel:  # encapsulated pixel data: fragments to the delimiter
                return end
            pos = _walk(data, el.value, end, explicit, depth + 1, out)
        elif is_seq:
            _walk(data, el.value, el.value + el.length, explicit, depth + 1, out)
            pos = el.value + el.length
        else:
            pos = el.value + el.length
    return pos


@dataclass
class Mutated:
    """One mutated file: what was done where, and whether its pixel data are intact."""

    kind: Kind
    region: Region
    offset: int
    pixel_intact: bool
    note: str = ""


@dataclass
class FuzzPlan:
    """The mutations applied to a drop, by the file's path relative to the drop."""

    files: dict[str, Mutated | None] = field(default_factory=dict)


def mutate(data: bytes, layout: Layout, rng: random.Random,
           kind: Kind | None = None, region: Region | None = None) -> tuple[bytes, Mutated]:
    """One random mutation of ``data``; the kinds and regions are drawn when not given."""
    kind = kind or rng.choice(list(Kind))
    if kind is Kind.TRANSFER_SYNTAX:
        return _transfer_syntax(data, layout, rng)
    if region is None:
        allowed = {Kind.TRUNCATE: list(Region), Kind.INSERT: list(Region),
                   Kind.DELETE: list(Region)}.get(
            kind, [Region.PREAMBLE, Region.META, Region.DATASET, Region.SEQUENCE])
        if kind in (Kind.LYING_LENGTH, Kind.GARBLED_VR):
            allowed = [r for r in allowed if r is not Region.PREAMBLE]
        region = rng.choice(allowed)
    buf = bytearray(data)
    pstart, pend = layout.pixel_start, layout.pixel_end
    if kind in (Kind.LYING_LENGTH, Kind.GARBLED_VR):
        el = _pick_element(layout, region, rng, need_vr=kind is Kind.GARBLED_VR)
        if el is None:  # no such element (implicit VR, no sequences): flip a bit instead
            return mutate(data, layout, rng, Kind.BIT_FLIP, Region.DATASET)
        if kind is Kind.LYING_LENGTH:
            fmt = "<I" if el.len_size == 4 else "<H"
            limit = 0xFFFFFFFF if el.len_size == 4 else 0xFFFF
            choices = [el.length + rng.randint(1, 64), max(0, el.length - rng.randint(1, 64)),
                       0, limit, rng.randint(0, limit), el.length * 2 + 1]
            new = min(limit, max(0, rng.choice(choices)))
            if new == el.length:
                new = (new + 2) % (limit + 1)
            struct.pack_into(fmt, buf, el.len_at, new)
            offset, note = el.len_at, f"length {el.length} -> {new}"
        else:
            new_vr = rng.choice([*_OTHER_VRS, bytes(rng.randrange(256) for _ in range(2))])
            if new_vr == data[el.vr_at:el.vr_at + 2]:
                new_vr = b"ZZ"
            buf[el.vr_at:el.vr_at + 2] = new_vr
            offset, note = el.vr_at, f"VR {data[el.vr_at:el.vr_at + 2]!r} -> {new_vr!r}"
        return bytes(buf), Mutated(kind, region, offset, offset < pstart or offset >= pend,
                                   note)
    lo, hi = _span(layout, region, rng)
    if hi <= lo:  # the region is empty in this file: mutate the dataset instead
        return mutate(data, layout, rng, kind, Region.DATASET)
    offset = rng.randrange(lo, hi)
    if kind is Kind.TRUNCATE:
        return bytes(buf[:offset]), Mutated(kind, region, offset, offset >= pend,
                                            f"cut at {offset} of {len(data)}")
    if kind is Kind.INSERT:
        junk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        buf[offset:offset] = junk
        # bytes inserted before the pixel element move it intact; inside it, they spoil it
        intact = offset <= pstart or offset >= pend
        return bytes(buf), Mutated(kind, region, offset, intact, f"{len(junk)} bytes in")
    if kind is Kind.DELETE:
        n = rng.randint(1, 16)
        del buf[offset:offset + n]
        intact = offset + n <= pstart or offset >= pend
        return bytes(buf), Mutated(kind, region, offset, intact, f"{n} bytes removed")
    if kind in (Kind.ZERO, Kind.OVERWRITE):
        n = rng.randint(1, 64)
        stop = min(offset + n, hi)
        fill = (b"\x00" * (stop - offset) if kind is Kind.ZERO
                else bytes(rng.randrange(256) for _ in range(stop - offset)))
        buf[offset:stop] = fill
        return bytes(buf), Mutated(kind, region, offset, stop <= pstart or offset >= pend,
                                   f"{stop - offset} bytes {kind.value}")
    bit = rng.randrange(8)
    buf[offset] ^= 1 << bit
    return bytes(buf), Mutated(kind, region, offset, offset < pstart or offset >= pend,
                               f"bit {bit} flipped")


def _transfer_syntax(data: bytes, layout: Layout, rng: random.Random) -> tuple[bytes, Mutated]:
    """The meta header's TransferSyntaxUID replaced (its length updated, the group length
    left as it was). Only a switch between the two little-endian syntaxes keeps the pixel
    data meaning what they meant (readers detect explicit vs implicit VR)."""
    el = next((e for e in layout.elements if e.meta and
               data[e.start:e.start + 4] == b"\x02\x00\x10\x00"), None)
    if el is None:
        return mutate(data, layout, rng, Kind.BIT_FLIP, Region.DATASET)
    old = data[el.value:el.value + el.length]
    new = rng.choice([s for s in _SYNTAXES if s != old])
    buf = bytearray(data)
    buf[el.value:el.value + el.length] = new
    struct.pack_into("<H", buf, el.len_at, len(new))
    little = {_IMPLICIT, _EXPLICIT}
    return bytes(buf), Mutated(Kind.TRANSFER_SYNTAX, Region.META, el.value,
                               old in little and new in little, f"{old!r} -> {new!r}")


def _span(layout: Layout, region: Region, rng: random.Random) -> tuple[int, int]:
    """The bytes a mutation in ``region`` may hit: for a sequence, one nested element's
    header and value, drawn at random."""
    if region is Region.SEQUENCE:
        nested = [el for el in layout.elements if el.depth > 0 and el.start < layout.pixel_start]
        if not nested:
            return 0, 0
        el = rng.choice(nested)
        stop = el.value + (8 if el.length == _UNDEFINED else el.length)
        return el.start, max(el.start + 1, min(stop, layout.pixel_start))
    return tuple(layout.region(region))


def _pick_element(layout: Layout, region: Region, rng: random.Random,
                  need_vr: bool) -> Element | None:
    if region is Region.META:
        cands = [el for el in layout.elements if el.meta]
    elif region is Region.SEQUENCE:
        cands = [el for el in layout.elements if el.depth > 0 and not el.meta]
    else:
        cands = [el for el in layout.elements if el.depth == 0 and not el.meta]
    if region is not Region.PIXEL:
        cands = [el for el in cands if el.start < layout.pixel_start or el.pixel]
    if need_vr:
        cands = [el for el in cands if el.vr_at >= 0]
    return rng.choice(cands) if cands else None


def mutate_drop(source: Path, dest: Path, rng: random.Random, fraction: float = 1.0,
                kinds: list[Kind] | None = None) -> FuzzPlan:
    """Copy the drop ``source`` to ``dest`` with ``fraction`` of its DICOM files mutated
    (the others copied as they are). Returns what was done to each file."""
    plan = FuzzPlan()
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        rel = path.relative_to(source).as_posix()
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        data = path.read_bytes()
        try:
            layout = locate(data)
        except (ValueError, struct.error):
            layout = None
        if layout is None or rng.random() >= fraction:
            target.write_bytes(data)
            plan.files[rel] = None
            continue
        kind = rng.choice(kinds) if kinds else None
        mutated, what = mutate(data, layout, rng, kind)
        target.write_bytes(mutated)
        plan.files[rel] = what
    return plan
