"""Realistic (synthetic) identifying data, planted in every PS3.15 attribute class."""

from __future__ import annotations

from datetime import date

import numpy as np

FIRST = {"F": ["Margaret", "Ingrid", "Sofia", "Yuki", "Helene", "Dorothy", "Amara", "Chiara"],
         "M": ["Theodore", "Klaus", "Hiroshi", "Bernard", "Rafael", "Desmond", "Lars", "Emeka"]}
LAST = ["Whitcombe", "Okonkwo", "Brandstetter", "Delacroix", "Nakamura", "Fitzgerald",
        "Vasquez-Lindqvist", "Abernathy", "Moreau", "Schoenfeld", "Takahashi", "Pemberton"]
PHYSICIANS = ["Dr^Evelyn^Hartsfield", "Dr^Marcus^Okafor", "Dr^Lena^Vogelsang",
              "Dr^Kenji^Morimoto"]
TECHS = ["Priya Raghunathan", "Tomasz Wierzbicki", "Aurelie Fontaine", "Grace Mbeki"]
STREETS = ["17 Chestnut Hill Road", "4 Rue des Tanneurs", "22 Hofgartenstrasse",
           "3-9 Nishitemma"]


def person(rng: np.random.Generator) -> dict:
    sex = "F" if rng.random() < 0.5 else "M"
    return {"first": str(rng.choice(FIRST[sex])), "last": str(rng.choice(LAST)), "sex": sex,
            "street": str(rng.choice(STREETS)), "phone": f"+1-617-{rng.integers(200, 999)}-"
            f"{rng.integers(1000, 9999)}", "weight": float(np.round(rng.uniform(50, 100), 1))}


def patient_id(rng: np.random.Generator, site: str) -> str:
    return f"{site[:3].upper()}{rng.integers(100000, 999999)}"


def folder_name(p: dict, study_date: date) -> str:
    """Sites name folders after the patient and the date, which is itself PHI."""
    return f"{p['last'].upper()}_{p['first'].upper()}_{study_date:%Y%m%d}"


def dicom_header(p: dict, pid: str, site, study_date: date, visit_id: str,
                 rng: np.random.Generator) -> dict:
    d = f"{study_date:%Y%m%d}"
    age = int((study_date - p["birth_date"]).days // 365.25)
    timepoint = {"01": "BASELINE", "02": "M12"}[visit_id]
    return {
        "PatientName": f"{p['last']}^{p['first']}", "PatientID": pid,
        "PatientBirthDate": f"{p['birth_date']:%Y%m%d}", "PatientSex": p["sex"],
        "PatientAge": f"{age:03d}Y", "PatientWeight": p["weight"],
        "PatientAddress": f"{p['street']}, {site.city}",
        "PatientTelephoneNumbers": p["phone"], "OtherPatientIDs": f"H{pid[3:]}-{site.city[:2]}",
        "PatientComments": f"Consented {d}, escort {p['first']} relative",
        "StudyDate": d, "SeriesDate": d, "AcquisitionDate": d, "ContentDate": d,
        "StudyTime": f"{rng.integers(8, 18):02d}{rng.integers(0, 60):02d}00",
        "AccessionNumber": f"ACC{rng.integers(10**7, 10**8)}",
        "StudyID": f"{rng.integers(1000, 9999)}",
        "StudyInstanceUID": f"1.2.826.0.1.3680043.8.498.{rng.integers(10**12, 10**13)}",
        "StudyDescription": f"TRIAL^{timepoint} {p['last']}",
        "ReferringPhysicianName": str(rng.choice(PHYSICIANS)),
        "PerformingPhysicianName": str(rng.choice(PHYSICIANS)),
        "OperatorsName": str(rng.choice(TECHS)).replace(" ", "^"),
        "InstitutionName": site.institution,
        "InstitutionAddress": f"1 Hospital Plaza, {site.city}",
        "InstitutionalDepartmentName": "Neuroradiology",
        "StationName": f"{site.name[:4].upper()}MR{rng.integers(1, 9)}",
        "DeviceSerialNumber": f"{rng.integers(10000, 99999)}",
        "ImageComments": f"pt {p['first']} {p['last']} anxious, re-positioned",
        "RequestingPhysician": str(rng.choice(PHYSICIANS)),
        "ClinicalTrialSponsorName": "Virtual Trial Consortium",
        "ClinicalTrialProtocolID": "VT-2026",
        "ClinicalTrialSiteID": site.name.upper(),
        "ClinicalTrialSubjectID": pid,
        "ClinicalTrialTimePointID": timepoint,
    }
