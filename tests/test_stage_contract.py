"""The stage contract (issue 17): a minimal extra stage, declared and registered here only,
reaches the gates (under its own modality's rules), the study table (its columns, with its
dictionary) and the reports, without any change to the gates, table or report modules.

The study folder is synthetic (no images are processed): a raw BIDS dataset with a T1w and a
FLAIR per session, intake's records, and session rows written through the shared writer by
the anatomical stage and by the extra ``toy`` stage, as their jobs would."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from trialprep.config import load_config
from trialprep.derivatives import SessionWriter, new_row, write_stage_dataset
from trialprep.harmonization.table import build_table
from trialprep.layout import StudyLayout
from trialprep.provenance import sha256_file
from trialprep.qc_reports.render import render_reports
from trialprep.stages import Stage, StageError, register, registered_stages, unregister
from trialprep.tables import write_table
from trialprep.workflows.anat.stage import ANAT_STAGE
from trialprep.workflows.qc.gates import run_gates

TOY = Stage(name="toy", modality="toy", datatype="anat", input_suffix="FLAIR",
            derivatives="trialprep-toy", row_suffix="toy", column_prefix="toy_",
            description="a test stage: lesion load from the FLAIR",
            iqm_descriptions={"toy_snr": "toy signal-to-noise; higher is better"},
            site_figure_metrics=("toy_snr",), bidsignore=("*_desc-biomarkers_toy.*",))
SITES = ("a", "b")
BAD = ("a01", "02")  # the one session whose FLAIR fails the toy gate


def _write_session(layout, stage, pid, ses, image, values, iqms):
    writer = SessionWriter(stage, layout, pid, ses, {"GeneratedBy": [{"Name": "test"}]})
    row = new_row(pid, ses, "0.1.0", "c" * 64)
    row["source"] = f"bids::{image.relative_to(layout.bids).as_posix()}"
    row["source_sha256"] = sha256_file(image)
    row.update(values)
    writer.iqms(iqms)
    fig = writer.figure("fig", "overview")
    fig.write_text('<svg xmlns="http://www.w3.org/2000/svg"><text>toy</text></svg>')
    units = {k: {"Description": f"test biomarker {k}", "Units": "mL"} for k in values}
    writer.row(row, units)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("contract")
    layout = StudyLayout(root / "out")
    register(TOY)
    toy_stage = TOY.__class__(**{**TOY.__dict__, "figures": (("overview", "Toy overview"),)})
    register(toy_stage)
    rng = np.random.default_rng(3)
    (qc := root / "qc.yaml").write_text(
        (__import__("trialprep.paths", fromlist=["config_dir"]).config_dir() / "qc.yaml")
        .read_text() + "toy:\n  absolute:\n    - {metric: toy_snr, min: 5, verdict: fail, "
                       "why: toy SNR too low}\n")
    (cfg := root / "study.yaml").write_text(json.dumps({
        "qc_gates": str(qc), "harmonization": {"covariates": ["age"], "categorical": []}}))
    config = load_config(cfg)
    write_stage_dataset(ANAT_STAGE, layout, "1.10.0")
    write_stage_dataset(toy_stage, layout, "1.10.0")
    participants, completeness, series = [], [], []
    for site in SITES:
        for i in range(4):
            pid = f"{site}{i:02d}"
            participants.append({"participant_id": f"sub-{pid}", "site": site, "age": "70"})
            sessions = []
            for v in ("01", "02"):
                anat = layout.bids / f"sub-{pid}" / f"ses-{v}" / "anat"
                anat.mkdir(parents=True, exist_ok=True)
                t1w = anat / f"sub-{pid}_ses-{v}_T1w.nii.gz"
                flair = anat / f"sub-{pid}_ses-{v}_FLAIR.nii.gz"
                t1w.write_bytes(f"t1w{pid}{v}".encode())
                flair.write_bytes(f"flair{pid}{v}".encode())
                shift = 300.0 if site == "b" else 0.0
                _write_session(layout, ANAT_STAGE, pid, v, t1w,
                               {"Left_Hippocampus_mm3": 3500 + shift + rng.normal(0, 50),
                                "GM_mm3": 6e5 + 10 * shift + rng.normal(0, 5e3)},
                               {"snr_wm": 20.0 + rng.normal(0, 1)})
                snr = 2.0 if (pid, v) == BAD else 12.0 + rng.normal(0, 1)
                _write_session(layout, toy_stage, pid, v, flair,
                               {"lesion_volume": 4.0 + shift / 100 + rng.normal(0, 0.3)},
                               {"toy_snr": snr})
                sessions.append({"session_id": f"ses-{v}", "acq_time":
                                 f"202{int(v)}-03-01T10:00:00", "age": "70", "site": site,
                                 "manufacturer": "Vendor", "model": f"M{site}",
                                 "software_version": "1"})
                completeness.append({"site": site, "subject": pid, "visit": v,
                                     "status": "received", "detail": ""})
                for img, kind in ((t1w, "T1w"), (flair, "FLAIR")):
                    series.append({"site": site, "series": f"{pid}{v}{kind}",
                                   "series_type": kind, "verdict": "ok", "deviations": "",
                                   "bids_files": img.relative_to(layout.bids).as_posix()})
            write_table(pd.DataFrame(sessions),
                        layout.bids / f"sub-{pid}" / f"sub-{pid}_sessions.tsv")
    write_table(pd.DataFrame(participants), layout.bids / "participants.tsv")
    write_table(pd.DataFrame(completeness), layout.completeness)
    write_table(pd.DataFrame(series), layout.series)
    gates = run_gates(layout.bids, config)
    table = build_table(layout.bids, config, layout.tables)
    render_reports(layout.bids, layout.tables, config, layout.reports)
    yield {"layout": layout, "gates": gates, "table": table, "stage": toy_stage,
           "config": config}
    unregister("toy")


def test_the_extra_stage_is_registered_beside_the_builtin_one(study):
    names = [s.name for s in registered_stages()]
    assert names[0] == "anat" and "toy" in names
    with pytest.raises(StageError, match="column prefix"):
        register(Stage(name="clash", modality="clash", input_suffix="T2w",
                       derivatives="clash", row_suffix="x", description="", column_prefix=""))


def test_its_images_are_gated_under_their_own_modality(study):
    images = study["gates"]["images"]
    toy = images[images["modality"] == "toy"]
    assert len(toy) == 16 and set(toy["image"].str.endswith("_FLAIR.nii.gz")) == {True}
    bad = toy[(toy["participant_id"] == f"sub-{BAD[0]}") & (toy["session_id"] == f"ses-{BAD[1]}")]
    assert bad["verdict"].tolist() == ["fail"]
    assert "toy SNR too low: toy_snr 2 < 5" in bad["rules_fired"].iloc[0]
    # the anatomical rules never judged the FLAIR, nor the toy rule the T1w
    anat = images[images["modality"] == "anat"]
    assert (anat["verdict"] == "pass").all() and not anat["rules_fired"].str.contains("toy").any()


def test_the_table_joins_both_stages_and_keeps_the_other_modality(study):
    harm, excluded = study["table"]["table"], study["table"]["excluded"]
    assert len(harm) == 16  # one row per session
    assert {"Left_Hippocampus_mm3", "GM_mm3", "toy_lesion_volume", "toy_qc_verdict",
            "toy_source", "anat_source", "anat_qc_verdict"} <= set(harm.columns)
    bad = harm[(harm["participant_id"] == f"sub-{BAD[0]}")
               & (harm["session_id"] == f"ses-{BAD[1]}")].iloc[0]
    assert np.isnan(bad["toy_lesion_volume"]) and np.isfinite(bad["Left_Hippocampus_mm3"])
    row = excluded[excluded["stage"] == "toy"]
    assert row[["participant_id", "modality"]].values.tolist() == [[f"sub-{BAD[0]}", "toy"]]
    assert "QC gate fail" in row["why"].iloc[0]
    # harmonized per stage: the planted site shift is gone from the toy biomarker too
    raw = study["table"]["raw"]
    for df, tol in ((raw, None), (harm, 0.5)):
        means = df.groupby("site", observed=True)["toy_lesion_volume"].mean()
        gap = abs(means["b"] - means["a"])
        assert gap > 2.5 if tol is None else gap < tol, (df is raw, gap)
    dictionary = json.loads((study["layout"].tables / "biomarkers_harmonized.json").read_text())
    entry = dictionary["toy_lesion_volume"]
    assert entry["Stage"] == "toy" and entry["Units"] == "mL"
    assert entry["Description"].startswith("test biomarker lesion_volume")
    assert dictionary["toy_qc_verdict"]["Stage"] == "toy"
    assert dictionary["Left_Hippocampus_mm3"]["Stage"] == "anat"


def test_the_reports_show_the_extra_stage(study):
    reports = study["layout"].reports
    page = (reports / "sessions" / f"sub-{BAD[0]}_ses-{BAD[1]}_FLAIR.html").read_text()
    assert "toy signal-to-noise" in page and "Toy overview" in page
    assert "toy SNR too low" in page
    site = (reports / "sites" / "a.html").read_text()
    assert f"sub-{BAD[0]}_ses-{BAD[1]}_FLAIR.nii.gz" in site
    dashboard = (reports / "index.html").read_text()
    assert f"sub-{BAD[0]}_ses-{BAD[1]}_FLAIR.nii.gz" in dashboard  # left out of the table


def test_only_the_layout_module_spells_the_study_folders():
    """Every path of a study comes from trialprep/layout.py: no other module of the package
    (nor a rule file) writes the literal folder name."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    offenders = []
    for folder in ("trialprep", "workflows", "harmonization", "qc_reports", "rules"):
        for path in (repo / folder).rglob("*"):
            if path.suffix not in (".py", ".smk") or path.name == "layout.py":
                continue
            text = path.read_text()
            if '"derivatives"' in text or "'derivatives'" in text:
                offenders.append(str(path.relative_to(repo)))
    assert offenders == []


def test_a_person_overrides_the_extra_stage_image_as_any_other(study):
    """Last (it changes the study): an override of the failed FLAIR brings its session's toy
    columns into the table."""
    from trialprep.audit import study_audit

    layout, image = study["layout"], f"sub-{BAD[0]}_ses-{BAD[1]}_FLAIR.nii.gz"
    study_audit(layout.bids).append("override", {"image": image, "verdict": "pass",
                                                 "reason": "checked by eye"}, actor="QC")
    images = run_gates(layout.bids, study["config"])["images"]
    row = images[images["image"] == image].iloc[0]
    assert (row["verdict"], row["verdict_auto"], row["modality"]) == ("pass", "fail", "toy")
    harm = build_table(layout.bids, study["config"], layout.tables)["table"]
    bad = harm[(harm["participant_id"] == f"sub-{BAD[0]}")
               & (harm["session_id"] == f"ses-{BAD[1]}")].iloc[0]
    assert np.isfinite(bad["toy_lesion_volume"]) and bad["toy_qc_verdict"] == "pass"


def test_a_bids_folder_of_any_name_is_the_layouts_raw_dataset(tmp_path):
    """A command given ``STUDY/raw-2024`` (not ``bids``) finds its sessions there and writes
    the derivatives inside it, as BIDS wants; the study folders go beside it."""
    layout = StudyLayout.from_bids(tmp_path / "raw-2024")
    assert layout.bids == tmp_path / "raw-2024"
    assert layout.derivatives == tmp_path / "raw-2024" / "derivatives"
    assert layout.out == tmp_path
    assert StudyLayout.from_bids(tmp_path / "bids") == StudyLayout(tmp_path)
    t1w = tmp_path / "raw-2024" / "sub-01" / "ses-01" / "anat" / "sub-01_ses-01_T1w.nii.gz"
    t1w.parent.mkdir(parents=True)
    t1w.write_bytes(b"")
    assert ANAT_STAGE.find_inputs(layout, "01", "01") == [t1w]
