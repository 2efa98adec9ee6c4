"""Group DICOM files into series and check each series is whole and unambiguous."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from trialprep.workflows.intake.scan import IGNORED, QUARANTINED, InputFile, iter_pending


@dataclass
class Series:
    uid: str
    files: list[InputFile] = field(default_factory=list)
    problem: str = ""
    full_header: object = None  # the first file's complete header (read for conversion)

    @property
    def header(self):
        return self.files[0].header

    @property
    def number(self) -> int:
        try:
            return int(self.header.get("SeriesNumber", 0) or 0)
        except (TypeError, ValueError):
            return 0


def _signature(h) -> tuple:
    return (str(h.get("PatientID", "")), str(h.get("StudyInstanceUID", "")),
            str(h.get("SeriesNumber", "")), str(h.get("SeriesDescription", "")),
            str(h.get("Rows", "")), str(h.get("Columns", "")))


def _is_mosaic(h) -> bool:
    image_type = h.get("ImageType") or []
    if isinstance(image_type, str):
        image_type = [image_type]
    return "MOSAIC" in [str(t).upper() for t in image_type]


def missing_slice_problem(files: list[InputFile]) -> str:
    """Classic single-frame series: slice positions must be evenly spaced and every position
    must hold the same number of images (volumes). Returns a reason, or ''."""
    by_orientation = defaultdict(list)
    for f in files:
        h = f.header
        iop, ipp = h.get("ImageOrientationPatient"), h.get("ImagePositionPatient")
        if iop is None or ipp is None or len(iop) != 6 or len(ipp) != 3:
            return ""  # no geometry to check (dcm2niix will judge)
        key = tuple(np.round(np.asarray(iop, float), 3))
        by_orientation[key].append(np.asarray(ipp, float))
    for iop, positions in by_orientation.items():
        normal = np.cross(iop[:3], iop[3:])
        d = np.round(np.array([p @ normal for p in positions]), 2)
        uniq, counts = np.unique(d, return_counts=True)
        if len(set(counts.tolist())) > 1:
            short = uniq[counts < counts.max()]
            return (f"incomplete series: {len(short)} slice position(s) have fewer images than "
                    f"the others ({counts.min()} vs {counts.max()}), e.g. at {short[0]:.2f} mm")
        if uniq.size >= 3:
            gaps = np.diff(uniq)
            step = np.median(gaps)
            bad = np.flatnonzero(gaps > 1.5 * step)
            if step > 0 and bad.size:
                i = bad[0]
                n_missing = int(round(gaps[i] / step)) - 1
                return (f"missing slice(s): gap of {gaps[i]:.2f} mm between positions "
                        f"{uniq[i]:.2f} and {uniq[i + 1]:.2f} mm (spacing {step:.2f} mm, "
                        f"about {n_missing} slice(s) absent)")
    return ""


def group_series(files: list[InputFile]) -> list[Series]:
    """Series of the pending files; files of broken series are settled as quarantined."""
    # Duplicate instances: identical copies are ignored; conflicting ones spoil the series.
    by_sop: dict[str, InputFile] = {}
    conflicted: dict[str, str] = {}
    for f in iter_pending(files):
        sop = str(f.header["SOPInstanceUID"])
        first = by_sop.get(sop)
        if first is None:
            by_sop[sop] = f
        elif first.sha256 == f.sha256:
            f.settle(IGNORED, f"exact duplicate of file {first.source_id}")
        else:
            conflicted[str(f.header["SeriesInstanceUID"])] = sop
            f.settle(QUARANTINED, f"conflicting duplicate instance: same SOPInstanceUID as "
                     f"file {first.source_id} but different content")
    groups: dict[str, Series] = {}
    for f in iter_pending(files):
        uid = str(f.header["SeriesInstanceUID"])
        groups.setdefault(uid, Series(uid)).files.append(f)
    series = []
    for uid, s in groups.items():
        sigs = sorted({_signature(f.header) for f in s.files})
        if len(sigs) > 1:
            described = "; ".join(f"#{sg[2]} {sg[3]!r} ({sg[4]}x{sg[5]})" for sg in sigs[:4])
            s.problem = (f"SeriesInstanceUID shared by {len(sigs)} different series "
                         f"({described})")
        elif uid in conflicted:
            s.problem = "series contains conflicting duplicate instances"
        else:
            single_frame = all(int(f.header.get("NumberOfFrames", 1) or 1) == 1 for f in s.files)
            if single_frame and not _is_mosaic(s.header):
                s.problem = missing_slice_problem(s.files)
            elif _is_mosaic(s.header):
                s.problem = _instance_gap(s.files)
        if s.problem:
            for f in s.files:
                f.settle(QUARANTINED, s.problem)
        else:
            s.files.sort(key=lambda f: (int(f.header.get("InstanceNumber", 0) or 0), f.source_id))
            series.append(s)
    return sorted(series, key=lambda s: (str(s.header.get("PatientID", "")), s.number, s.uid))


def _instance_gap(files: list[InputFile]) -> str:
    nums = sorted(int(f.header.get("InstanceNumber", 0) or 0) for f in files)
    if len(nums) >= 2 and nums[0] > 0:
        missing = sorted(set(range(nums[0], nums[-1] + 1)) - set(nums))
        if missing:
            return f"missing instance(s) {missing[:5]} in a mosaic series (volumes absent)"
    return ""
