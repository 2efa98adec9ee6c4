"""Every real vendor series in ../shared/fixtures/dicom goes through intake: voxels and
affine equal dcm2niix's reference NIfTI, bvals/bvecs equal the reference."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.conftest import SHARED
from tests.intake.helpers import KEY
from trialprep.config import load_config
from trialprep.keys import StudyKey
from trialprep.workflows.intake.pipeline import run_intake

FIXTURES = SHARED / "fixtures" / "dicom"
SERIES = sorted(p.parent.relative_to(FIXTURES).as_posix() for p in FIXTURES.glob("*/*/dicom"))


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Each fixture series taken in as its own site drop, into its own BIDS dataset."""
    out = {}
    config = load_config()
    for name in SERIES:
        bids = tmp_path_factory.mktemp(name.replace("/", "_")) / "bids"
        summary = run_intake(FIXTURES / name / "dicom", "fx", bids, config,
                             StudyKey(KEY.encode()), visit="01")
        out[name] = (bids, summary)
    return out


def _niftis(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.nii.gz") if "derivatives" not in p.parts)


def test_all_twelve_fixture_series_are_present():
    assert len(SERIES) == 12


@pytest.mark.parametrize("name", SERIES)
def test_fixture_series_converts_like_reference(name, converted):
    bids, summary = converted[name]
    assert summary.converted_series == summary.series >= 1
    assert summary.counts.get("quarantined", 0) == 0
    outputs = _niftis(bids)
    assert outputs, f"no NIfTI written for {name}"
    ref_dir = FIXTURES / name / "ref"
    refs = sorted(ref_dir.glob("*.nii.gz"))
    for ref in refs:  # each reference image has an identical output (voxels and affine)
        r = nib.load(ref)
        rdata = np.asarray(r.dataobj)
        match = [o for o in outputs if nib.load(o).shape == r.shape and np.array_equal(
            np.asarray(nib.load(o).dataobj), rdata)]
        assert match, f"{ref.name}: no output with identical voxels"
        np.testing.assert_allclose(nib.load(match[0]).affine, r.affine, atol=1e-4)
    for ext in (".bval", ".bvec"):
        for ref in ref_dir.glob(f"*{ext}"):
            ours = [p for p in bids.rglob(f"*{ext}") if "derivatives" not in p.parts]
            assert len(ours) == 1, f"{name}: expected one {ext}"
            np.testing.assert_allclose(np.loadtxt(ours[0]), np.loadtxt(ref), atol=1e-5)
    if not refs:  # philips/dwi_dti_classic ships JSON/bval/bvec references only
        ref_json = json.loads(next(ref_dir.glob("*.json")).read_text())
        out_json = json.loads(outputs[0].with_name(
            outputs[0].name.replace(".nii.gz", ".json")).read_text())
        assert out_json["EchoTime"] == ref_json["EchoTime"]
        n_vols = nib.load(outputs[0]).shape[3]
        assert n_vols == len(np.loadtxt(next(ref_dir.glob("*.bval"))))


def test_fixture_sidecars_keep_acquisition_and_lose_identity(converted):
    for bids, _ in converted.values():
        for js in bids.rglob("sub-*/**/*.json"):
            meta = json.loads(js.read_text())
            assert "InstitutionName" not in meta and "DeviceSerialNumber" not in meta
            assert "StationName" not in meta and "InstitutionAddress" not in meta
            assert "RepetitionTime" in meta or "EchoTime" in meta or "EchoTime1" in meta


def test_phasediff_gets_echo_times_from_its_magnitudes(converted):
    bids, _ = converted["siemens/fmap_gre_xa30_enhanced"]
    (pd_json,) = bids.rglob("*_phasediff.json")
    meta = json.loads(pd_json.read_text())
    assert meta["EchoTime1"] == pytest.approx(0.01) and meta["EchoTime2"] == pytest.approx(0.01246)


def test_reverse_phase_encoding_pair_is_named_by_direction(converted):
    ap, _ = converted["siemens/epi_mosaic_pe-AP"]
    pa, _ = converted["siemens/epi_mosaic_pe-PA"]
    assert [p.name.split("_")[-2] for p in ap.rglob("*_epi.nii.gz")] == ["dir-AP"]
    assert [p.name.split("_")[-2] for p in pa.rglob("*_epi.nii.gz")] == ["dir-PA"]


ARCHIVED = ["ge/dwi_asset_r2", "siemens/epi_mosaic_pe-AP", "siemens/fmap_gre_xa30_enhanced",
            "uih/dwi_dti16_AP", "philips/fmap_b0_enhanced", "canon/dwi_dti_PA_enhanced"]


@pytest.mark.parametrize("name", ARCHIVED)
def test_deidentified_archive_still_converts_identically(name, tmp_path):
    """PS3.15 de-identification keeps what conversion needs (vendor private blocks on the
    allow-list): dcm2niix on the archived copy gives the same voxels as on the original."""
    import subprocess

    import dcm2niix

    cfg = load_config(overrides={"deid": {"archive_dicom": True}})
    bids = tmp_path / "bids"
    run_intake(FIXTURES / name / "dicom", "fx", bids, cfg, StudyKey(KEY.encode()), visit="01")
    archive = bids / "sourcedata" / "dicom"
    series_dirs = sorted({p.parent for p in archive.rglob("*.dcm")})
    assert series_dirs
    for d in series_dirs:
        for p in d.glob("*.dcm"):
            ds = __import__("pydicom").dcmread(p, stop_before_pixels=True)
            assert ds.PatientIdentityRemoved == "YES"
    out = tmp_path / "re"
    out.mkdir()
    for i, d in enumerate(series_dirs):
        subprocess.run([str(dcm2niix.bin_path), "-z", "y", "-f", f"s{i}_%s", "-o", str(out),
                        str(d)], check=True, capture_output=True)
    converted = [np.asarray(nib.load(p).dataobj) for p in sorted(out.glob("*.nii.gz"))]
    for ref in sorted((FIXTURES / name / "ref").glob("*.nii.gz")):
        rdata = np.asarray(nib.load(ref).dataobj)
        assert any(c.shape == rdata.shape and np.array_equal(c, rdata) for c in converted), ref
    bvecs = sorted(out.glob("*.bvec"))
    for ref in (FIXTURES / name / "ref").glob("*.bvec"):
        np.testing.assert_allclose(np.loadtxt(bvecs[0]), np.loadtxt(ref), atol=1e-5)


def test_masked_study_date_falls_back_to_the_acquisition_date(tmp_path):
    """UIH masks StudyDate, SeriesDate and ContentDate (``***``) and keeps AcquisitionDate(Time)
    per slice in a private sequence: without --visit the series still gets its visit from
    that date, the attribute used is recorded, and the conversion equals the reference."""
    import pandas as pd

    name = "uih/dwi_dti16_AP"
    bids = tmp_path / "bids"
    summary = run_intake(FIXTURES / name / "dicom", "fx", bids, load_config(),
                         StudyKey(KEY.encode()))
    assert summary.converted_series == summary.series == 1
    series = pd.read_csv(bids / "derivatives" / "intake" / "series.tsv", sep="\t", dtype=str,
                         keep_default_na=False)
    assert list(series["date_source"]) == ["AcquisitionDate"]
    assert list(series["session"]) == ["01"] and series["acq_date"].iloc[0] != ""
    (out,) = _niftis(bids)
    (ref,) = (FIXTURES / name / "ref").glob("*.nii.gz")
    assert np.array_equal(np.asarray(nib.load(out).dataobj), np.asarray(nib.load(ref).dataobj))
    (bval,) = bids.rglob("sub-*/**/*.bval")
    np.testing.assert_allclose(np.loadtxt(bval),
                               np.loadtxt(next((FIXTURES / name / "ref").glob("*.bval"))))
