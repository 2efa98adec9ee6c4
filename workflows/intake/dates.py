"""The real acquisition date of a series, for visit assignment and date shifting.

Vendors and anonymizers leave different date attributes: some mask StudyDate (``***``) and
keep AcquisitionDate(Time). The first attribute that holds a valid calendar date wins, in
the order of :data:`DATE_ATTRIBUTES`; the attribute used is recorded with the series.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

#: Where a series' date is looked for, in this order.
DATE_ATTRIBUTES = ("StudyDate", "SeriesDate", "AcquisitionDate", "AcquisitionDateTime",
                   "ContentDate", "InstanceCreationDate")
#: Earliest plausible acquisition year (MRI); older "dates" are placeholders.
MIN_YEAR = 1970


@dataclass(frozen=True)
class SeriesDate:
    """A validated real date and the attribute it came from."""

    value: date
    attribute: str


def parse_date(value: object) -> date | None:
    """A DA (YYYYMMDD) or the date part of a DT value, if it is a valid calendar date."""
    text = str(value if value is not None else "").strip()
    if len(text) < 8 or not text[:8].isdigit():
        return None
    try:
        d = datetime.strptime(text[:8], "%Y%m%d").date()
    except ValueError:
        return None
    return d if d.year >= MIN_YEAR else None


def series_date(header) -> SeriesDate | None:
    """The first valid date of ``header``: a scan header (top-level values) or a pydicom
    Dataset, where an attribute missing at the top level is also looked for in the first
    item of nested sequences (UIH keeps AcquisitionDate(Time) per slice in a private
    sequence; enhanced files in their functional groups)."""
    for keyword in DATE_ATTRIBUTES:
        for value in _values(header, keyword):
            d = parse_date(value)
            if d is not None:
                return SeriesDate(d, keyword)
    return None


def _values(header, keyword: str, depth: int = 0):
    """The top-level value of ``keyword``, then (Datasets) those in nested first items."""
    try:
        yield header.get(keyword)
    except Exception:  # noqa: BLE001 - an undecodable value is no date
        return
    if isinstance(header, dict) or depth > 4:
        return
    for elem in header:
        if elem.VR == "SQ" and elem.value:
            yield from _values(elem.value[0], keyword, depth + 1)
