"""Unit tests of intake's parts: keys, de-identification, protocol, schedule, BIDS names,
configuration."""

from __future__ import annotations

from datetime import date

import pydicom
import pytest
from pydicom.dataset import Dataset

from tests.intake.helpers import KEY, header, study_yaml, write
from trialprep.bids import bids_name, bids_path, parse_entities, sanitize_label
from trialprep.config import ConfigError, load_config
from trialprep.keys import StudyKey, StudyKeyError, load_study_key
from trialprep.workflows.intake.deid import (
    Deidentifier,
    clean_descriptor,
    identity_for,
    shift_date,
)
from trialprep.workflows.intake.protocol import check_series, check_value, classify
from trialprep.workflows.intake.schedule import assign_visit

KEYOBJ = StudyKey(KEY.encode())


def test_pseudonyms_are_keyed_stable_and_bids_safe():
    a = KEYOBJ.label("subject", "s1", "PID1")
    assert a == KEYOBJ.label("subject", "s1", "PID1") and a.isalnum() and len(a) == 8
    assert a != KEYOBJ.label("subject", "s2", "PID1")  # site is part of the identity
    assert a != StudyKey(b"another-key-0123456789").label("subject", "s1", "PID1")
    assert "hidden" in repr(KEYOBJ) and KEY not in repr(KEYOBJ)


def test_key_sources(tmp_path, monkeypatch):
    monkeypatch.delenv("TRIALPREP_STUDY_KEY", raising=False)
    with pytest.raises(StudyKeyError, match="no study key"):
        load_study_key("TRIALPREP_STUDY_KEY", None)
    (tmp_path / "k").write_text("short")
    with pytest.raises(StudyKeyError, match="at least 16 bytes"):
        load_study_key("TRIALPREP_STUDY_KEY", tmp_path / "k")
    monkeypatch.setenv("TRIALPREP_STUDY_KEY", KEY)
    assert load_study_key("TRIALPREP_STUDY_KEY").label("x") == KEYOBJ.label("x")


def test_date_shift_keeps_intervals_per_subject():
    ident = identity_for(KEYOBJ, "s1", "PID1", (-3650, -365))
    assert -3650 <= ident.shift_days <= -365
    d1, d2 = shift_date("20240101", ident.shift_days), shift_date("20250101", ident.shift_days)
    delta = (date.fromisoformat(f"{d2[:4]}-{d2[4:6]}-{d2[6:]}")
             - date.fromisoformat(f"{d1[:4]}-{d1[4:6]}-{d1[6:]}")).days
    assert delta == 366
    assert shift_date("20240101120000.5", 1) == "20240102120000.5"  # DT keeps its time
    assert shift_date("garbage", 5) == ""


def test_deidentifier_actions(tmp_path):
    (path,) = write(tmp_path, header("PID9", InstitutionName="Secret Clinic",
                                     OperatorsName="Op^Name"), slices=1)[:1]
    ds = pydicom.dcmread(path)
    uid, frame = ds.SOPInstanceUID, ds.FrameOfReferenceUID
    ds.ReferencedImageSequence = [Dataset()]
    ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID = uid
    ident = identity_for(KEYOBJ, "s1", "PID9", (-20, -10))
    Deidentifier(KEYOBJ, ident, ["SIEMENS MR HEADER"], 89).apply(ds)
    assert ds.PatientID == ident.subject and "InstitutionName" not in ds
    assert "OperatorsName" not in ds and ds.PatientBirthDate == ""
    assert ds.SOPInstanceUID == KEYOBJ.uid(uid) != uid
    assert ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID == ds.SOPInstanceUID
    assert ds.FrameOfReferenceUID == KEYOBJ.uid(frame)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4"  # standard UIDs kept
    assert ds.PatientIdentityRemoved == "YES"
    assert [c.CodeValue for c in ds.DeidentificationMethodCodeSequence][0] == "113100"
    creators = [str(e.value) for e in ds if e.tag.is_private and e.tag.element < 0x100]
    assert creators == ["SIEMENS MR HEADER"] * len(creators) and creators
    assert ds.PatientAge == "074Y"


def test_age_above_cap_is_reported_as_cap_plus_one(tmp_path):
    (path,) = write(tmp_path, header("OLD", PatientBirthDate="19200101"), slices=1)[:1]
    ds = pydicom.dcmread(path)
    Deidentifier(KEYOBJ, identity_for(KEYOBJ, "s", "OLD", (-2, -1)), [], 89).apply(ds)
    assert ds.PatientAge == "090Y"


def test_clean_descriptor():
    assert clean_descriptor("T1 for Doe 2024-03-01", {"Doe"}) == "T1 for"
    assert clean_descriptor("DEVICE scan", {"DEV"}) == "DEVICE scan"


def test_classification_and_protocol_messages(tmp_path):
    cfg = load_config()
    (path,) = write(tmp_path, header(), slices=1)[:1]
    ds = pydicom.dcmread(path)
    assert classify(ds, cfg.protocol) == "T1w"
    ds.SeriesDescription = "localizer"
    assert classify(ds, cfg.protocol) == "other"
    ds.SeriesDescription = "t1_mprage"
    verdict = check_series("T1w", ds, 44, cfg.protocol)
    assert not verdict.compliant
    assert "VoxelSize is [4, 4, 4], protocol requires [2, 2, 2] \u00b1 0.05" in verdict.deviations
    assert check_value("FlipAngle", 9.2, {"equals": 9, "tolerance": 0.5}) is None
    assert "missing" in check_value("InversionTime", None, {"equals": 900})
    assert "below" in check_value("Coverage", [100, 200, 170], {"min": [170, 200, 170]})


def test_visit_assignment():
    visits = load_config()["visits"]
    assert assign_visit(visits, "M12", None) == ("02", "")
    assert assign_visit(visits, "", 0) == ("01", "")
    assert assign_visit(visits, "", 380)[0] == "02"
    visit, reason = assign_visit(visits, "", 200)
    assert visit is None and "day 200" in reason


def test_bids_names():
    name = bids_name("T1w", ".nii.gz", sub="A1", ses="01", run=2)
    assert name == "sub-A1_ses-01_run-2_T1w.nii.gz"
    assert bids_name("bold", sub="A", task="rest", dir="AP") == "sub-A_task-rest_dir-AP_bold"
    assert sanitize_label("../../etc") == "etc"
    with pytest.raises(ValueError, match="cannot make a BIDS label"):
        sanitize_label("../")
    p = bids_path("/r", "anat", "T1w", ".nii.gz", sub="X", ses="01")
    assert p.as_posix() == "/r/sub-X/ses-01/anat/sub-X_ses-01_T1w.nii.gz"
    assert parse_entities(p.name) == {"sub": "X", "ses": "01", "suffix": "T1w",
                                      "extension": ".nii.gz"}


def test_config_errors_name_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("visits: [{id: '0-1', day: 0, window: 5}]\n")
    with pytest.raises(ConfigError, match=r"visits/0/id"):
        load_config(bad)
    bad.write_text("nonsense: 1\n")
    with pytest.raises(ConfigError, match="nonsense"):
        load_config(bad)
    cfg = load_config(study_yaml(tmp_path))
    assert len(cfg.hash) == 64 and cfg.hash != load_config().hash
