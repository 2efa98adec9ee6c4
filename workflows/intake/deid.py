"""De-identification following DICOM PS3.15 Annex E, Basic Application Level
Confidentiality Profile, with the options

- Retain Longitudinal Temporal Information with Modified Dates (113107): every date of a
  subject is shifted by one keyed, per-subject offset, so intervals are kept;
- Retain Patient Characteristics (113108): sex, age (capped), size and weight kept;
- Clean Descriptors (113105): descriptions kept only after removing identifying text;
- Retain Safe Private (113111): private blocks on an explicit allow-list are kept, minus any
  value that contains one of the dataset's identifying strings; all others are removed.

Identifiers are replaced by keyed pseudonyms and UIDs are remapped consistently (HMAC of
the study key), so re-running intake gives the same outputs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from trialprep import __version__
from trialprep.keys import StudyKey

# Actions of PS3.15 Table E.1-1 as applied with the options above:
#   X remove, Z replace with empty, D replace with a dummy/pseudonym, U remap UID,
#   S shift date, C clean descriptor, K keep.
_ACTIONS: dict[int, str] = {}


def _set(action: str, *tags: int) -> None:
    for t in tags:
        _ACTIONS[t] = action


# Patient identification and history
_set("D", 0x00100010, 0x00100020)  # PatientName, PatientID -> pseudonym
_set("Z", 0x00100030)  # PatientBirthDate
_set("X", 0x00100032, 0x00101000, 0x00101001, 0x00101002, 0x00101005, 0x00101040,
     0x00101060, 0x00102154, 0x00102160, 0x00102180, 0x001021B0, 0x00104000, 0x001021F0,
     0x00101090, 0x00100050, 0x00100101, 0x00101080, 0x00101081, 0x00102150, 0x00102152,
     0x00102110, 0x001021A0, 0x001021C0, 0x00102297, 0x00102299, 0x00100021, 0x00100033,
     0x00100034, 0x00100035, 0x00100102, 0x00100200, 0x00101100, 0x00102000, 0x00102203,
     0x00380010, 0x00380300, 0x00380400, 0x00380500, 0x00384000, 0x00380050, 0x00381234,
     0x00380060, 0x00380014, 0x00380062, 0x00381000)
# Patient characteristics (retained by option 113108; age capped separately)
_set("K", 0x00100040, 0x00101010, 0x00101020, 0x00101030)
# Study/series identification
_set("Z", 0x00080050, 0x00080090, 0x00200010)  # AccessionNumber, ReferringPhysician, StudyID
_set("X", 0x00080080, 0x00080081, 0x00080082, 0x00080092, 0x00080094, 0x00080096,
     0x00081010, 0x00081040, 0x00081048, 0x00081049, 0x00081050, 0x00081052, 0x00081060,
     0x00081062, 0x00081070, 0x00081072, 0x00081080, 0x00081084, 0x00081110, 0x00081111,
     0x00081120, 0x00082111, 0x00204000, 0x00181000, 0x00184000, 0x00321032, 0x00321033,
     0x00321060, 0x00321070, 0x00324000, 0x00400006, 0x00400241, 0x00400242, 0x00400243,
     0x00400245, 0x00400251, 0x00400253, 0x00400254, 0x00400275, 0x00400280, 0x00401001,
     0x00401400, 0x00402016, 0x00402017, 0x0040A730, 0x00400009, 0x00400007, 0x00400001,
     0x00400010, 0x00400011, 0x00189424, 0x00084000, 0x00181004, 0x00181005, 0x00181007,
     0x0018700A, 0x00181008, 0x00080201, 0x00321020, 0x00321021, 0x00321030, 0x00321040,
     0x00321041, 0x00321050, 0x00321051, 0x00380020, 0x00380021, 0x00380030, 0x00380032,
     0x00380040, 0x00400003, 0x00400004, 0x00400005, 0x00400012, 0x00400100,
     0x00400310, 0x00400035, 0x0040A075, 0x0040A073, 0x0040A027, 0x0040A07A, 0x0040A07C,
     0x00404037, 0x00404036, 0x00404035, 0x00404034, 0x00404030, 0x00404028, 0x00404025,
     0x00080116, 0x00880140, 0x00880200, 0x00880904, 0x00880906, 0x00880910, 0x00880912,
     0x30060002, 0x30060004, 0x300E0008, 0x40000010, 0x40004000)
# Dates shifted (longitudinal option); times are kept
_set("S", 0x00080020, 0x00080021, 0x00080022, 0x00080023, 0x0008002A, 0x00080012,
     0x00400244, 0x00400250, 0x00181012, 0x00181200, 0x00080015, 0x00400002)
# Descriptors cleaned (option 113105)
_set("C", 0x00081030, 0x0008103E, 0x00181030, 0x00181400, 0x00120051)
# Clinical trial subject: keyed pseudonym; time point kept (it assigns the visit)
_set("D", 0x00120040)
_set("X", 0x00120010, 0x00120020, 0x00120021, 0x00120030, 0x00120031, 0x00120042,
     0x00120081, 0x00120082)
_set("K", 0x00120050)

#: UIDs that name standards (SOP classes, transfer syntaxes) rather than instances.
_STANDARD_UID_PREFIX = "1.2.840.10008."
#: Person-name-like and free-text VRs that are removed wherever the table does not apply.
_FREE_TEXT_VRS = {"PN"}

DEID_METHOD_CODES = [("113100", "Basic Application Confidentiality Profile"),
                     ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
                     ("113108", "Retain Patient Characteristics Option"),
                     ("113105", "Clean Descriptors Option"),
                     ("113111", "Retain Safe Private Option")]


@dataclass
class SubjectIdentity:
    """What intake derives for one (site, PatientID): pseudonym and date shift."""

    site: str
    subject: str  # BIDS label
    shift_days: int


def identity_for(key: StudyKey, site: str, patient_id: str,
                 shift_range: tuple[int, int]) -> SubjectIdentity:
    """Pseudonym of (site, PatientID) and the subject's date shift."""
    subject = key.label("subject", site, patient_id)
    return SubjectIdentity(site, subject, shift_for(key, subject, shift_range))


def shift_for(key: StudyKey, subject: str, shift_range: tuple[int, int]) -> int:
    """Per-subject date shift, derived from the pseudonym (so it can be undone with the key
    alone, for schedule checks, without ever storing it)."""
    lo, hi = sorted(shift_range)
    return lo + key.integer("dateshift", subject) % (hi - lo + 1)


def shift_date(value: str, days: int) -> str:
    """Shift a DA (YYYYMMDD) or the date part of a DT value; empty and invalid stay empty."""
    value = str(value).strip()
    if len(value) < 8 or not value[:8].isdigit():
        return ""
    try:
        d = datetime.strptime(value[:8], "%Y%m%d").date() + timedelta(days=days)
    except ValueError:
        return ""
    return d.strftime("%Y%m%d") + value[8:]


def age_years(birth: str | None, on: str | None, patient_age: str | None) -> float | None:
    """Age in years from birth and study dates (real, unshifted), else from PatientAge."""
    if birth and on and len(birth) >= 8 and len(on) >= 8:
        try:
            b = datetime.strptime(birth[:8], "%Y%m%d").date()
            o = datetime.strptime(on[:8], "%Y%m%d").date()
            return (o - b).days / 365.25
        except ValueError:
            pass
    m = re.fullmatch(r"(\d{1,3})([DWMY])", (patient_age or "").strip())
    if m:
        n, unit = int(m.group(1)), m.group(2)
        return n / {"D": 365.25, "W": 52.18, "M": 12.0, "Y": 1.0}[unit]
    return None


def capped_age(age: float | None, max_age: int) -> float | None:
    if age is None:
        return None
    return float(max_age + 1) if age > max_age else round(age, 1)


def identifying_strings(ds: Dataset) -> set[str]:
    """Identifying values of a dataset, to scan retained values and descriptors for."""
    out: set[str] = set()
    for kw in ("PatientName", "PatientID", "OtherPatientIDs", "PatientBirthDate",
               "AccessionNumber", "InstitutionName", "InstitutionAddress", "StationName",
               "DeviceSerialNumber", "ReferringPhysicianName", "PerformingPhysicianName",
               "OperatorsName", "PatientAddress", "StudyID", "RequestingPhysician",
               "PatientTelephoneNumbers", "InstitutionalDepartmentName", "PatientBirthName",
               "PatientMotherBirthName", "OtherPatientNames", "ClinicalTrialSubjectID"):
        val = ds.get(kw)
        if val is None:
            continue
        values = val if isinstance(val, (list, tuple, pydicom.multival.MultiValue)) else [val]
        for v in values:
            s = str(v).strip()
            if not s:
                continue
            out.add(s)
            out.update(p for p in re.split(r"[\^\s,;/\\]+", s) if len(p) >= 3)
    return {s for s in out if len(s) >= 3}


def real_dates(ds: Dataset) -> set[str]:
    """The dataset's real dates in the spellings a sidecar or table could carry them."""
    from trialprep.workflows.intake.dates import DATE_ATTRIBUTES

    out = set()
    for kw in (*DATE_ATTRIBUTES, "PatientBirthDate"):
        v = str(ds.get(kw, "") or "")
        if len(v) >= 8 and v[:8].isdigit():
            out |= {v[:8], f"{v[:4]}-{v[4:6]}-{v[6:8]}", f"{v[:4]}/{v[4:6]}/{v[6:8]}"}
    return out


def clean_descriptor(text: str, phi: Iterable[str]) -> str:
    """Remove identifying substrings and date-like numbers from a free-text descriptor."""
    cleaned = str(text)
    for s in sorted(phi, key=len, reverse=True):
        cleaned = re.sub(rf"(?<![A-Za-z0-9]){re.escape(s)}(?![A-Za-z0-9])", "", cleaned,
                         flags=re.I)
    cleaned = re.sub(r"\b(19|20)\d{2}[-./]?\d{2}[-./]?\d{2}\b", "", cleaned)  # dates
    cleaned = re.sub(r"\b\d{1,2}[-./]\d{1,2}[-./]\d{2,4}\b", "", cleaned)
    cleaned = re.sub(r"[^A-Za-z0-9 _+\-.=()/]", " ", cleaned)
    return re.sub(r"\s+", " ", cleaned).strip(" _-")


def phi_pattern(phi: Iterable[str]) -> re.Pattern[bytes] | None:
    """One case-insensitive pattern matching any identifying string as a whole token
    (not inside a longer alphanumeric run, so 'DEV' does not match 'DEVICE')."""
    tokens = sorted({p.encode("utf-8", "ignore") for p in phi if p}, key=len, reverse=True)
    if not tokens:
        return None
    body = b"|".join(re.escape(t) for t in tokens)
    return re.compile(rb"(?<![A-Za-z0-9])(?:" + body + rb")(?![A-Za-z0-9])", re.I)


def contains_phi(value: object, pattern: re.Pattern[bytes] | None) -> bool:
    if pattern is None or isinstance(value, Sequence):
        return False  # sequence items are handled recursively
    if isinstance(value, (bytes, bytearray)):
        blob = bytes(value)
    elif isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        blob = "\\".join(str(v) for v in value).encode("utf-8", "ignore")
    else:
        blob = str(value).encode("utf-8", "ignore")
    return pattern.search(blob) is not None


@dataclass
class DeidResult:
    removed_private: int = 0
    scrubbed_private: int = 0
    actions: dict[str, int] = field(default_factory=dict)


class Deidentifier:
    """Applies the profile to datasets of one subject (one identity, one date shift)."""

    def __init__(self, key: StudyKey, identity: SubjectIdentity, allowlist: Iterable[str],
                 max_age: int):
        self.key = key
        self.identity = identity
        self.allow = {c.strip().upper() for c in allowlist}
        self.max_age = max_age

    def apply(self, ds: Dataset) -> DeidResult:
        """De-identify ``ds`` in place."""
        result = DeidResult()
        phi = identifying_strings(ds)
        phi_bytes = phi_pattern(phi)
        age = age_years(str(ds.get("PatientBirthDate", "")), str(ds.get("StudyDate", "")),
                        str(ds.get("PatientAge", "")))
        self._walk(ds, phi, phi_bytes, result)
        # Replacements and the de-identification record (PS3.15 E.1.1 / Table CID 7050).
        ds.PatientName = f"{self.identity.site}^{self.identity.subject}"
        ds.PatientID = self.identity.subject
        if "ClinicalTrialSubjectID" in ds:
            ds.ClinicalTrialSubjectID = self.identity.subject
        ds.ClinicalTrialSiteID = self.identity.site
        capped = capped_age(age, self.max_age)
        if capped is not None:
            ds.PatientAge = f"{min(int(capped), 999):03d}Y"
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = f"trialprep {__version__}: PS3.15 Basic Profile + options"
        seq = []
        for code, meaning in DEID_METHOD_CODES:
            item = Dataset()
            item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code, "DCM", meaning
            seq.append(item)
        ds.DeidentificationMethodCodeSequence = seq
        ds.LongitudinalTemporalInformationModified = "MODIFIED"
        if hasattr(ds, "file_meta"):
            if "MediaStorageSOPInstanceUID" in ds.file_meta:
                ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.file_meta.ImplementationVersionName = "TRIALPREP"
        return result

    def _walk(self, ds: Dataset, phi: set[str], phi_bytes: re.Pattern[bytes] | None,
              result: DeidResult) -> None:
        creators: dict[tuple[int, int], str] = {}
        for elem in list(ds):
            tag = elem.tag
            if tag.is_private and 0x10 <= tag.element <= 0xFF:
                creators[(tag.group, tag.element)] = str(elem.value).strip().upper()
        for elem in list(ds):
            tag = elem.tag
            if tag.group in (0x0002,):
                continue
            if tag.is_private:
                self._private(ds, elem, creators, phi_bytes, result)
                continue
            if 0x5000 <= tag.group <= 0x501E or (0x6000 <= tag.group <= 0x601E
                                                 and tag.element in (0x3000, 0x4000)):
                del ds[tag]  # curves; overlay data and comments (burned-in text)
                continue
            action = _ACTIONS.get(int(tag))
            if elem.VR == "SQ" and action is None:
                for item in elem.value:
                    self._walk(item, phi, phi_bytes, result)
                continue
            if action is None:
                if elem.VR in _FREE_TEXT_VRS:
                    action = "X"
                elif elem.VR == "UI":
                    action = "U"
                elif elem.VR in ("DA", "DT"):
                    action = "S"
                else:
                    continue
            result.actions[action] = result.actions.get(action, 0) + 1
            if action == "X":
                del ds[tag]
            elif action == "Z":
                elem.value = ""
            elif action == "D":
                elem.value = self.identity.subject
            elif action == "U":
                elem.value = self._remap_uids(elem.value)
            elif action == "S":
                self._shift(elem)
            elif action == "C":
                elem.value = clean_descriptor(str(elem.value), phi)

    def _remap_uids(self, value):
        if isinstance(value, (list, pydicom.multival.MultiValue)):
            return [self._remap_uids(v) for v in value]
        v = str(value)
        if not v or v.startswith(_STANDARD_UID_PREFIX):
            return v
        return self.key.uid(v)

    def _shift(self, elem) -> None:
        days = self.identity.shift_days
        if isinstance(elem.value, (list, pydicom.multival.MultiValue)):
            elem.value = [shift_date(str(v), days) for v in elem.value]
        elif elem.value not in (None, ""):
            elem.value = shift_date(str(elem.value), days)

    def _private(self, ds: Dataset, elem, creators, phi_bytes, result) -> None:
        tag = elem.tag
        block = (tag.group, tag.element if tag.element <= 0xFF else tag.element >> 8)
        if tag.element <= 0xFF:  # a private creator element
            if tag.element >= 0x10 and str(elem.value).strip().upper() in self.allow:
                return
            del ds[tag]
            result.removed_private += 1
            return
        creator = creators.get(block)
        if creator is None or creator not in self.allow or elem.VR == "PN":
            del ds[tag]
            result.removed_private += 1
            return
        if elem.VR == "SQ":
            for item in elem.value:
                self._walk(item, set(), phi_bytes, result)
            return
        if contains_phi(elem.value, phi_bytes):
            del ds[tag]
            result.scrubbed_private += 1
            return
        if elem.VR in ("DA", "DT"):
            self._shift(elem)
