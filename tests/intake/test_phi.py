"""No PHI value present in the inputs appears in any output file, file name or log."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys

import pydicom
from pydicom.dataset import Dataset

from tests.intake.helpers import KEY, header, study_yaml, write

# One distinctive value per PS3.15 attribute class (and the folder/file names).
PHI = {
    "PatientName": "Zyxwvut^Quorbelle", "PatientID": "QX9912PHI",
    "OtherPatientIDs": "OTHERID7731", "PatientBirthDate": "19391127",
    "PatientAddress": "42 Plumtree Crescent Zanzibar", "PatientTelephoneNumbers": "555-0199-7788",
    "PatientMotherBirthName": "Vexmoorington", "EthnicGroup": "Ethnicxyz",
    "Occupation": "Lamplighterqz", "PatientComments": "Commentzyx99",
    "AdditionalPatientHistory": "Historyqwvz", "MedicalRecordLocator": "MRLOC5566",
    "ReferringPhysicianName": "Refdocqz^Hank", "PerformingPhysicianName": "Perfdocqz^Ivy",
    "OperatorsName": "Operqz^Jo", "NameOfPhysiciansReadingStudy": "Readdocqz^Al",
    "PhysiciansOfRecord": "Recdocqz^Bo", "RequestingPhysician": "Reqdocqz^Cy",
    "InstitutionName": "Glimmerdale Institute", "InstitutionAddress": "77 Quasar Boulevard",
    "InstitutionalDepartmentName": "Deptofqz", "StationName": "STATIONQZ9",
    "DeviceSerialNumber": "SERIALQZ4411", "AccessionNumber": "ACCQZ88221",
    "StudyID": "STUDYQZ55", "PerformedProcedureStepID": "PPSQZ71",
    "StudyDescription": "Brain for Zyxwvut", "ImageComments": "call Quorbelle 555-0199-7788",
    "ProtocolName": "t1_mprage QX9912PHI", "StudyDate": "20230817",
    "StudyInstanceUID": "1.2.826.0.1.3680043.999.4242.1",
    "ClinicalTrialSubjectID": "CTSUBJQZ12",
}
SEARCH = ["Zyxwvut", "Quorbelle", "QX9912PHI", "OTHERID7731", "19391127", "1939-11-27",
          "Plumtree", "555-0199-7788", "Vexmoorington", "Ethnicxyz", "Lamplighterqz",
          "Commentzyx99", "Historyqwvz", "MRLOC5566", "Refdocqz", "Perfdocqz", "Operqz",
          "Readdocqz", "Recdocqz", "Reqdocqz", "Glimmerdale", "Quasar", "Deptofqz",
          "STATIONQZ9", "SERIALQZ4411", "ACCQZ88221", "STUDYQZ55", "PPSQZ71", "RPIDQZ33",
          "20230817", "2023-08-17", "1.2.826.0.1.3680043.999.4242", "CTSUBJQZ12",
          "PRIVQZ77"]


def _plant(folder):
    hdr = header(**{k: v for k, v in PHI.items() if k not in ("ProtocolName",)},
                 SeriesDate="20230817", AcquisitionDate="20230817", ContentDate="20230817")
    hdr.pop("ClinicalTrialTimePointID")
    paths = write(folder, hdr, seed="phi")
    for i, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        ds.ProtocolName = PHI["ProtocolName"]
        ds.SeriesDescription = "t1_mprage Quorbelle"
        item = Dataset()
        item.RequestedProcedureID, item.ScheduledProcedureStepID = "RPIDQZ33", "SPSQZ"
        ds.RequestAttributesSequence = [item]
        # a PHI-bearing value inside an allow-listed vendor block, and an unknown block
        ds.private_block(0x0019, "SIEMENS MR HEADER", create=True).add_new(
            0x10, "LO", "PRIVQZ77 QX9912PHI")
        ds.private_block(0x0045, "ACME PACS", create=True).add_new(0x01, "LO", "Zyxwvut")
        new = path.with_name(f"QX9912PHI_Zyxwvut_{i:04d}.dcm")
        ds.save_as(new)
        path.unlink()


def _text(path) -> bytes:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    return data


def test_no_phi_in_any_output_name_or_log(tmp_path):
    drop = tmp_path / "drop" / "Zyxwvut_Quorbelle_20230817"
    _plant(drop / "series3")
    cfg = study_yaml(tmp_path, "deid: {archive_dicom: true}\n")
    bids = tmp_path / "out" / "bids"
    env = {**os.environ, "TRIALPREP_STUDY_KEY": KEY}
    proc = subprocess.run([sys.executable, "-m", "trialprep.cli", "-v", "intake",
                           str(tmp_path / "drop"), "--site", "phisite", "--bids", str(bids),
                           "--config", str(cfg), "--visit", "01"],
                          capture_output=True, env=env)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    log = proc.stdout + proc.stderr
    outputs = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert any(p.name.endswith("_T1w.nii.gz") for p in outputs)  # it was converted
    assert sum(p.suffix == ".dcm" for p in outputs) == 12  # and archived, de-identified
    inputs = b"".join(p.read_bytes() + str(p).encode() for p in (tmp_path / "drop").rglob("*")
                      if p.is_file()).lower()
    absent = [n for n in SEARCH if n.encode().lower() not in inputs and "-" not in n]
    assert absent == [], "planted values missing from the inputs"
    leaks = []
    for needle in SEARCH + [KEY]:
        n = needle.encode().lower()
        if n in log.lower():
            leaks.append(f"log: {needle}")
        for p in (tmp_path / "out").rglob("*"):
            if n in str(p.relative_to(tmp_path / "out")).encode().lower():
                leaks.append(f"path {p.name}: {needle}")
            if p.is_file() and n in _text(p).lower():
                leaks.append(f"{p.relative_to(tmp_path / 'out')}: {needle}")
    assert leaks == []
