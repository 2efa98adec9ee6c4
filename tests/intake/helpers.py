"""Small synthetic DICOM series for intake tests (written with the demo's own writer)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np

from trialprep.virtual_trial.dicom_writer import make_grid, write_series
from trialprep.virtual_trial.scanners import VENDORS, Site

KEY = "unit-test-study-key-0123456789"

SITE = Site("testsite", VENDORS["siemens_prisma"], "Testing Hospital", "Testville",
            [["syngo MR XA30"]])


def header(pid: str = "PID001", name: str = "Doe^Jane", visit: str = "BASELINE",
           study_date: str = "20240301", **extra) -> dict:
    h = {"PatientName": name, "PatientID": pid, "PatientBirthDate": "19500101",
         "PatientSex": "F", "StudyDate": study_date, "SeriesDate": study_date,
         "StudyTime": "101500", "StudyInstanceUID": f"1.2.3.4.{abs(hash(pid + visit)) % 10**9}",
         "InstitutionName": "Testing Hospital", "ClinicalTrialTimePointID": visit}
    h.update(extra)
    return h


def write(folder: Path, hdr: dict | None = None, slices: int = 12, voxel=(4.0, 4.0, 4.0),
          series_number: int = 3, seed: str = "s", vendor: str = "siemens_prisma") -> list[Path]:
    """A tiny sagittal T1w-like series (48 x 44 x slices)."""
    hdr = hdr or header()
    grid = make_grid("sagittal", (48 * voxel[0], 44 * voxel[1], slices * voxel[2]), voxel,
                     (0.0, 0.0, 0.0))
    rng = np.random.default_rng(abs(hash(seed)) % 2**32)
    vol = rng.uniform(100, 1000, grid.shape)
    return write_series(vol, grid, folder, VENDORS[vendor], hdr, ["syngo MR XA30"],
                        series_number, uid_seed=f"{seed}-{hdr['PatientID']}-{series_number}")


def study_yaml(tmp: Path, extra: str = "") -> Path:
    """A study config for tests: 2 visits, the built-in protocol with relaxed T1w checks."""
    proto = tmp / "protocol.yaml"
    proto.write_text(
        "version: test\n"
        "classification:\n"
        "  - {type: T1w, where: {SeriesDescription: '(?i)(t1|mprage|bravo|tfe)'}}\n"
        "series:\n"
        "  T1w:\n"
        "    datatype: anat\n    suffix: T1w\n    required: true\n"
        "    checks: {VoxelSize: {equals: [4.0, 4.0, 4.0], tolerance: 0.01}}\n")
    cfg = tmp / "study.yaml"
    cfg.write_text(f"study: {{name: test study, id: T}}\nprotocol: {proto}\n{extra}")
    return cfg


def today() -> date:
    return date(2026, 1, 1)
