"""Group DICOM files into series and check each series is whole and unambiguous."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from trialprep.workflows.intake.outcomes import Outcome, Problem, Reason
from trialprep.workflows.intake.scan import InputFile, iter_pending

#: Problems that come from a series' check, not from a file's own damage.
_SERIES_REASONS = frozenset({Reason.SHARED_SERIES_UID, Reason.CONFLICTING_DUPLICATE,
                             Reason.INCOMPLETE_SERIES, Reason.BAD_GEOMETRY})


def as_int(value: object, default: int = 0) -> int:
    """An integer header value (IS/US), or ``default`` for a missing or malformed one."""
    try:
        return int(value if not isinstance(value, list | tuple) else value[0])
    except (TypeError, ValueError, IndexError):
        return default


@dataclass
class Series:
    uid: str
    files: list[InputFile] = field(default_factory=list)
    problem: Problem | None = None

    @property
    def header(self):
        return self.files[0].header

    @property
    def number(self) -> int:
        return as_int(self.header.get("SeriesNumber", 0))


def _signature(h) -> tuple:
    return (str(h.get("PatientID", "")), str(h.get("StudyInstanceUID", "")),
            str(h.get("SeriesNumber", "")), str(h.get("SeriesDescription", "")),
            str(h.get("Rows", "")), str(h.get("Columns", "")))


def _is_mosaic(h) -> bool:
    image_type = h.get("ImageType") or []
    if isinstance(image_type, str):
        image_type = [image_type]
    return "MOSAIC" in [str(t).upper() for t in image_type]


def _vector(value: object, n: int) -> np.ndarray | None:
    """A DS multi-value of ``n`` finite numbers, or None."""
    if not isinstance(value, list | tuple) or len(value) != n:
        return None
    try:
        vec = np.asarray(value, float)
    except (TypeError, ValueError):
        return None
    return vec if np.isfinite(vec).all() else None


def missing_slice_problem(files: list[InputFile]) -> Problem | None:
    """Classic single-frame series: slice positions must be evenly spaced and every position
    must hold the same number of images (volumes). Returns the problem, or None."""
    by_orientation = defaultdict(list)
    if all(f.header.get("ImagePositionPatient") is None for f in files):
        return None  # no geometry to check (dcm2niix will judge)
    for f in files:
        h = f.header
        iop = _vector(h.get("ImageOrientationPatient"), 6)
        ipp = _vector(h.get("ImagePositionPatient"), 3)
        if iop is None or ipp is None:
            return Problem(Reason.BAD_GEOMETRY, "slice geometry unusable: a file's "
                           "ImagePositionPatient/ImageOrientationPatient is missing or "
                           f"malformed (file {f.source_id})")
        key = tuple(np.round(iop, 3))
        by_orientation[key].append(ipp)
    for iop, positions in by_orientation.items():
        normal = np.cross(iop[:3], iop[3:])
        d = np.round(np.array([p @ normal for p in positions]), 2)
        uniq, counts = np.unique(d, return_counts=True)
        if len(set(counts.tolist())) > 1:
            short = uniq[counts < counts.max()]
            return Problem(Reason.INCOMPLETE_SERIES, f"incomplete series: {len(short)} slice "
                           f"position(s) have fewer images than the others ({counts.min()} "
                           f"vs {counts.max()}), e.g. at {short[0]:.2f} mm")
        if uniq.size >= 3:
            gaps = np.diff(uniq)
            step = np.median(gaps)
            bad = np.flatnonzero(gaps > 1.5 * step)
            if step > 0 and bad.size:
                i = bad[0]
                n_missing = int(round(gaps[i] / step)) - 1
                return Problem(Reason.INCOMPLETE_SERIES, f"missing slice(s): gap of "
                               f"{gaps[i]:.2f} mm between positions {uniq[i]:.2f} and "
                               f"{uniq[i + 1]:.2f} mm (spacing {step:.2f} mm, about "
                               f"{n_missing} slice(s) absent)")
    return None


def group_series(files: list[InputFile]) -> list[Series]:
    """Series of the pending files; files of broken series are settled as quarantined.

    A series is broken when it is inconsistent (shared UID, conflicting duplicates, missing
    slices or instances) or when one of its instances is only in a damaged file (a damaged
    extra copy of an instance that is there intact does not count)."""
    # Duplicate instances: identical copies are ignored; conflicting ones spoil the series.
    by_sop: dict[str, InputFile] = {}
    conflicted: dict[str, str] = {}
    for f in iter_pending(files):
        sop = str(f.header["SOPInstanceUID"])
        first = by_sop.get(sop)
        if first is None:
            by_sop[sop] = f
        elif first.sha256 == f.sha256:
            f.reject(Problem(Reason.DUPLICATE, f"exact duplicate of file {first.source_id}"))
        else:
            conflicted[str(f.header["SeriesInstanceUID"])] = sop
            f.reject(Problem(Reason.CONFLICTING_DUPLICATE, "conflicting duplicate instance: "
                             f"same SOPInstanceUID as file {first.source_id} but different "
                             "content"))
    damaged = _damaged_members(files, by_sop)
    groups: dict[str, Series] = {}
    for f in iter_pending(files):
        uid = str(f.header["SeriesInstanceUID"])
        groups.setdefault(uid, Series(uid)).files.append(f)
    series = []
    for uid, s in groups.items():
        sigs = sorted({_signature(f.header) for f in s.files})
        if len(sigs) > 1:
            described = "; ".join(f"#{sg[2]} {sg[3]!r} ({sg[4]}x{sg[5]})" for sg in sigs[:4])
            s.problem = Problem(Reason.SHARED_SERIES_UID, f"SeriesInstanceUID shared by "
                                f"{len(sigs)} different series ({described})")
        elif uid in conflicted:
            s.problem = Problem(Reason.CONFLICTING_DUPLICATE,
                                "series contains conflicting duplicate instances")
        elif uid in damaged:
            bad = damaged[uid]
            s.problem = Problem(Reason.INCOMPLETE_SERIES, f"{len(bad)} instance(s) of the "
                                f"series only in damaged file(s), e.g. file {bad[0].source_id}"
                                f" ({bad[0].problem})")
        else:
            single_frame = all(as_int(f.header.get("NumberOfFrames", 1), 1) <= 1
                               for f in s.files)
            if single_frame and not _is_mosaic(s.header):
                s.problem = missing_slice_problem(s.files)
            elif _is_mosaic(s.header):
                s.problem = _instance_gap(s.files)
        if s.problem:
            for f in s.files:
                f.reject(s.problem)
        else:
            s.files.sort(key=lambda f: (as_int(f.header.get("InstanceNumber", 0)), f.source_id))
            series.append(s)
    return sorted(series, key=lambda s: (str(s.header.get("PatientID", "")), s.number, s.uid))


def _damaged_members(files: list[InputFile], intact: dict[str, InputFile]) -> dict[
        str, list[InputFile]]:
    """Series UID -> the quarantined files with a readable header whose instance has no
    intact copy (the series is then incomplete)."""
    out: dict[str, list[InputFile]] = defaultdict(list)
    for f in files:
        if f.header is None or f.problem is None or f.problem.outcome is not \
                Outcome.QUARANTINED or f.problem.reason in _SERIES_REASONS:
            continue
        sop, uid = str(f.header.get("SOPInstanceUID", "")), f.series_uid
        if uid and sop not in intact:
            out[uid].append(f)
    return out


def _instance_gap(files: list[InputFile]) -> Problem | None:
    nums = sorted(as_int(f.header.get("InstanceNumber", 0)) for f in files)
    if len(nums) >= 2 and nums[0] > 0:
        if nums[-1] - nums[0] > 10 * len(nums):
            return Problem(Reason.INCOMPLETE_SERIES, f"instance numbers {nums[0]}..{nums[-1]}"
                           f" for {len(nums)} files of a mosaic series (volumes absent or "
                           "numbers damaged)")
        missing = sorted(set(range(nums[0], nums[-1] + 1)) - set(nums))
        if missing:
            return Problem(Reason.INCOMPLETE_SERIES, f"missing instance(s) {missing[:5]} in "
                           "a mosaic series (volumes absent)")
    return None
