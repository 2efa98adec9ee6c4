"""DICOM -> NIfTI with the pinned dcm2niix binary, and the mapping of its outputs to BIDS.

The binary is called directly (not through nipype's interface, which misses outputs when
dcm2niix prints a warning without a newline) and its outputs are collected from a private
folder, so nothing but what we name lands in the dataset.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import dcm2niix

#: Sidecar keys that can identify a person, place or device, or carry a date.
SIDECAR_DENYLIST = {
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "StationName",
    "DeviceSerialNumber", "ReferringPhysicianName", "PerformingPhysicianName", "OperatorsName",
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientWeight",
    "PatientAge", "AccessionNumber", "StudyID", "StudyInstanceUID", "SeriesInstanceUID",
    "ImageComments", "AcquisitionDateTime", "AcquisitionDate", "StudyDate", "SeriesDate",
    "ContentDate", "StudyDescription", "ProcedureStepDescription", "PatientPosition",
    "ReferringPhysician", "RequestingPhysician", "InstitutionAddressDescription",
    "DeidentificationMethodCodeSequence",
}
BASE = "series"
#: dcm2niix by-products that are derived maps, not acquisitions (not kept in raw BIDS).
DERIVED_POSTFIXES = ("_ADC", "_trace", "_TRACEW")


def dcm2niix_version() -> str:
    return getattr(dcm2niix, "__version__", "unknown")


@dataclass
class Conversion:
    outputs: dict[str, dict[str, Path]] = field(default_factory=dict)  # postfix -> {ext: path}
    log: str = ""
    error: str = ""
    files_converted: int | None = None  # input files dcm2niix converted (None: not reported)


#: dcm2niix's summary lines: "Found N DICOM file(s)", then "Convert N DICOM as ..." per
#: output (an enhanced file with several outputs counts once per output).
_FOUND = re.compile(r"(?m)^Found (\d+) DICOM file")
_CONVERTED = re.compile(r"(?m)^Convert (\d+) DICOM as ")


def _files_converted(log: str) -> int | None:
    """How many input files dcm2niix's log says it converted (None without its summary)."""
    if not _FOUND.search(log):
        return None
    return sum(int(n) for n in _CONVERTED.findall(log))


def run_dcm2niix(in_dir: Path, out_dir: Path, args: list[str], timeout: int) -> Conversion:
    """Convert every DICOM in ``in_dir``; outputs grouped by dcm2niix's name postfix.
    Images are written compressed (``-z y``); :func:`finalize_nifti` checks their headers."""
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [a for i, a in enumerate(args) if a != "-z" and (i == 0 or args[i - 1] != "-z")]
    cmd = [str(dcm2niix.bin_path), *args, "-z", "y", "-f", BASE, "-o", str(out_dir),
           str(in_dir)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return Conversion(error=f"dcm2niix did not finish within {timeout} s")
    conv = Conversion(log=proc.stdout + proc.stderr)
    conv.files_converted = _files_converted(proc.stdout)
    for path in sorted(out_dir.iterdir()):
        name = path.name
        ext = next((e for e in (".nii.gz", ".nii", ".json", ".bval", ".bvec") if
                    name.endswith(e)), None)
        if ext is None or not name.startswith(BASE):
            continue
        postfix = name[len(BASE):-len(ext)]
        conv.outputs.setdefault(postfix, {})[ext] = path
    images = {p: f for p, f in conv.outputs.items() if ".nii.gz" in f or ".nii" in f}
    conv.outputs = images
    if proc.returncode != 0:  # its errors (corrupt file, incomplete volumes) or a crash
        last = [ln for ln in conv.log.splitlines() if ln.strip()][-1:] or ["no output"]
        # the drop's folder names may identify people: never quote them
        line = last[0].replace(str(in_dir), "<series folder>").replace(str(out_dir), "<work>")
        conv.error = f"dcm2niix failed (exit {proc.returncode}): {line[:200]}"
    elif not images:
        conv.error = "dcm2niix produced no image"
    return conv


def pe_direction_label(sidecar: dict) -> str:
    """BIDS ``dir`` label from PhaseEncodingDirection (RAS voxel axes of the NIfTI)."""
    ped = sidecar.get("PhaseEncodingDirection") or sidecar.get(
        "PhaseEncodingAxis")
    return {"j": "PA", "j-": "AP", "i": "LR", "i-": "RL", "k": "IS", "k-": "SI"}.get(
        str(ped), "unknown")


def bids_suffixes(series_type: str, spec: dict, conv: Conversion,
                  sidecars: dict[str, dict]) -> dict[str, tuple[str, dict]]:
    """postfix -> (BIDS suffix, extra entities) for a converted series, or raise ValueError
    naming an output that has no BIDS place."""
    postfixes = sorted(p for p in conv.outputs if not p.endswith(DERIVED_POSTFIXES))
    out: dict[str, tuple[str, dict]] = {}
    if series_type == "fmap":
        hz = [p for p in postfixes if "fieldmaphz" in p.lower()]
        ph = [p for p in postfixes if re.search(r"_ph$", p)]
        for p in postfixes:
            itype = [str(t).upper() for t in sidecars[p].get("ImageType", [])]
            if p in hz:
                out[p] = ("fieldmap", {})
            elif p in ph or "PHASE" in itype or "P" in itype[2:3]:
                out[p] = ("phasediff", {})
            elif hz:
                out[p] = ("magnitude", {})
            else:
                m = re.search(r"_e(\d+)", p)
                echo = int(m.group(1)) if m else 1
                out[p] = (f"magnitude{echo}", {})
        return out
    for p in postfixes:
        entities: dict = {}
        if series_type == "fmap_epi":
            entities["dir"] = pe_direction_label(sidecars[p])
        if spec.get("task"):
            entities["task"] = spec["task"]
        m = re.fullmatch(r"_e(\d+)", p)
        if p == "":
            out[p] = (spec["suffix"], entities)
        elif m and spec["datatype"] in ("anat", "func"):
            out[p] = (spec["suffix"], {**entities, "echo": int(m.group(1))})
        else:
            raise ValueError(f"dcm2niix output '{p}' of a {series_type} series has no BIDS "
                             "equivalent (derived, localizer or multi-orientation images?)")
    return out


def scrub_sidecar(sidecar: dict, phi: set[str]) -> dict:
    """Drop identifying keys and any string value that contains an identifying string."""
    phi_l = [p.lower() for p in phi]
    clean = {}
    for k, v in sidecar.items():
        if k in SIDECAR_DENYLIST:
            continue
        text = json.dumps(v).lower()
        if any(p in text for p in phi_l):
            continue
        clean[k] = v
    return clean


def pair_phasediff_echo_times(phasediff: dict, magnitudes: list[dict]) -> dict:
    """BIDS needs EchoTime1/EchoTime2 on a phasediff. When the phase difference was
    acquired as its own series (Siemens), take them from the session's magnitude1/2."""
    if "EchoTime1" in phasediff and "EchoTime2" in phasediff:
        return phasediff
    times = sorted(float(m["EchoTime"]) for m in magnitudes if "EchoTime" in m)
    if len(times) >= 2:
        return {**phasediff, "EchoTime1": times[0], "EchoTime2": times[-1]}
    return phasediff


def _text_fields(sizeof_hdr: int) -> dict[str, tuple[int, int]]:
    import nibabel as nib

    dtype = (nib.nifti1.header_dtype if sizeof_hdr == 348 else nib.nifti2.header_dtype)
    return {name: (dtype.fields[name][1], dtype.fields[name][0].itemsize)
            for name in ("descrip", "aux_file", "intent_name", "db_name")
            if name in dtype.fields}


def finalize_nifti(src: Path, dest: Path, phi: re.Pattern[bytes] | None) -> bool:
    """Move dcm2niix's ``src`` (.nii.gz) to ``dest``, first blanking any free-text header
    field (dcm2niix puts the series description in aux_file) that matches the PHI
    pattern. Voxel bytes are never touched. Returns whether the header was rewritten."""
    import gzip
    import struct

    with gzip.open(src, "rb") as fh:
        head = bytearray(fh.read(540))
    sizeof_hdr = struct.unpack("<i", head[:4])[0]
    if sizeof_hdr not in (348, 540):
        sizeof_hdr = struct.unpack(">i", head[:4])[0]
    dirty = []
    for offset, size in _text_fields(sizeof_hdr).values():
        value = bytes(head[offset:offset + size]).rstrip(b"\0")
        if value and phi is not None and phi.search(value):
            dirty.append((offset, size))
    if not dirty:
        src.replace(dest)
        return False
    with gzip.open(src, "rb") as fin:
        data = bytearray(fin.read())
    for offset, size in dirty:
        data[offset:offset + size] = b"\0" * size
    with gzip.GzipFile(dest, "wb", compresslevel=6, mtime=0) as fout:
        fout.write(data)
    src.unlink()
    return True
