"""The study table's harmonization choices (longitudinal by default with repeated visits,
fit_on subsets applied to all) and its typed columns, on a synthetic study folder with
planted site, age, diagnosis and subject effects (no images: rows as the anatomical stage
writes them)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from trialprep.config import load_config
from trialprep.harmonization import core
from trialprep.harmonization.table import build_table
from trialprep.workflows.anat.session import biomarker_row_path

FEATURES = [f"region{j}_mm3" for j in range(12)]
AGE_SLOPE, DX_EFFECT = -20.0, -300.0


def _study(root, n_per_site=8, seed=5):
    """A BIDS folder with two visits per participant at four sites (one site upgrades its
    software between visits: its own epoch), rows, verdicts, sessions and participants."""
    rng = np.random.default_rng(seed)
    bids = root / "bids"
    verdicts, participants = [], []
    site_shift = {s: rng.normal(0, 400, len(FEATURES)) for s in ("a", "b", "c", "d")}
    site_scale = {s: rng.uniform(0.7, 1.4, len(FEATURES)) for s in ("a", "b", "c", "d")}
    for s in ("a", "b", "c", "d"):
        for i in range(n_per_site):
            pid = f"{s}{i:02d}"
            dx = "AD" if i % 2 else "CN"
            sex = "F" if (i // 2) % 2 else "M"
            age0 = rng.uniform(60, 80)
            subject = rng.normal(0, 500, len(FEATURES))
            participants.append({"participant_id": f"sub-{pid}", "site": s, "sex": sex,
                                 "age": f"{age0:.1f}", "dx": dx})
            sessions = []
            for v, years in ((1, 0.0), (2, rng.uniform(0.9, 1.2))):
                epoch = f"{s}-e{2 if (s == 'd' and v == 2) else 1}"
                age = age0 + years
                y = 10000 + subject + AGE_SLOPE * (age - 70) + DX_EFFECT * (dx == "AD") \
                    + rng.normal(0, 150, len(FEATURES))
                y = y * site_scale[s] + site_shift[s] + (250 if epoch == "d-e2" else 0)
                t1w = bids / f"sub-{pid}" / f"ses-0{v}" / "anat" / f"sub-{pid}_ses-0{v}_T1w.nii.gz"
                t1w.parent.mkdir(parents=True, exist_ok=True)
                t1w.write_bytes(f"{pid}{v}".encode())
                from trialprep.provenance import sha256_file

                row = {"participant_id": f"sub-{pid}", "session_id": f"ses-0{v}",
                       "status": "ok", "reason": "", "source": "bids::" + t1w.relative_to(
                           bids).as_posix(), "source_sha256": sha256_file(t1w),
                       "pipeline_version": "0.1.0", "config_sha256": "x" * 64,
                       **dict(zip(FEATURES, y, strict=True))}
                path = biomarker_row_path(bids, pid, f"0{v}")
                path.parent.mkdir(parents=True, exist_ok=True)
                pd.DataFrame([row]).to_csv(path, sep="\t", index=False)
                verdicts.append({"image": t1w.name, "site": s, "epoch": epoch,
                                 "verdict": "pass", "rules_fired": "", "decided_by": "",
                                 "decision_reason": ""})
                day = pd.Timestamp("2020-01-01") + pd.Timedelta(days=365.25 * years)
                sessions.append({"session_id": f"ses-0{v}",
                                 "acq_time": day.strftime("%Y-%m-%dT10:00:00"),
                                 "age": f"{age:.1f}"})
            pd.DataFrame(sessions).to_csv(bids / f"sub-{pid}" / f"sub-{pid}_sessions.tsv",
                                          sep="\t", index=False)
    pd.DataFrame(participants).to_csv(bids / "participants.tsv", sep="\t", index=False)
    qc = bids / "derivatives" / "qc"
    qc.mkdir(parents=True)
    pd.DataFrame(verdicts).to_csv(qc / "image_verdicts.tsv", sep="\t", index=False)
    return bids


def _config(root, **harmonization):
    path = root / "study.yaml"
    path.write_text(json.dumps({"harmonization": harmonization}))
    return load_config(path)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("table")
    return root, _study(root)


def test_repeated_visits_get_longitudinal_combat_and_typed_columns(study):
    root, bids = study
    res = build_table(bids, _config(root), root / "tables")
    diag, harm = res["diagnostics"], res["table"]
    assert diag["harmonization"]["model"] == "longitudinal"
    assert diag["harmonization"]["formula"] == "time + age + sex + dx"
    # the epoch effect is gone, the planted effects are kept
    auc = diag["site_auc_before"], diag["site_auc_after"]
    assert auc[0] > 0.9 and auc[1] < 0.7, auc
    t = harm
    design = np.column_stack([np.ones(len(t)), t["age"] - 70, t["dx"] == "AD"]).astype(float)
    beta = np.linalg.lstsq(design, t[FEATURES].to_numpy(), rcond=None)[0]
    assert np.median(beta[1]) == pytest.approx(AGE_SLOPE, rel=0.35)
    assert np.median(beta[2]) == pytest.approx(DX_EFFECT, rel=0.25)
    # a statistician's types: floats, categoricals with their levels
    schema = pq.read_schema(root / "tables" / "biomarkers_harmonized.parquet")
    assert str(schema.field("age").type) == "double" and str(schema.field("time").type) == \
        "double"
    for col in ("sex", "dx", "site", "epoch", "anat_qc_verdict"):
        assert str(schema.field(col).type).startswith("dictionary<values=string"), col
    assert all(str(schema.field(f).type) == "double" for f in FEATURES)
    dictionary = json.loads((root / "tables" / "biomarkers_harmonized.json").read_text())
    assert dictionary["dx"]["Levels"] == {"AD": "AD", "CN": "CN"}
    assert dictionary["age"]["Units"] == "years" and dictionary["age"]["DataType"] == "float64"
    assert dictionary["_table"]["harmonization"]["model"] == "longitudinal"
    model = np.load(root / "tables" / "biomarkers_harmonized.combat.npz")
    assert "longitudinal" in str(model["meta"])


def test_cross_sectional_when_asked_equals_plain_combat(study):
    root, bids = study
    res = build_table(bids, _config(root, model="cross_sectional"), root / "cs")
    assert res["diagnostics"]["harmonization"]["model"] == "cross_sectional"
    raw = res["raw"]
    expected, _ = core.harmonize(raw[FEATURES], raw["epoch"].astype(str),
                                 raw[["age", "sex", "dx"]], categorical=["sex", "dx"])
    np.testing.assert_allclose(res["table"][FEATURES].to_numpy(), expected, rtol=1e-10)


def test_fit_on_controls_applies_to_everyone(study):
    root, bids = study
    res = build_table(bids, _config(root, fit_on={"column": "dx", "values": ["CN"]}),
                      root / "cn")
    record = res["diagnostics"]["harmonization"]
    assert record["fitted_sessions"] == 32 and len(res["table"]) == 64
    assert record["covariates_left_out"] == {"dx": "constant among the fitting sessions"}
    harm = res["table"]
    assert harm[FEATURES].notna().all().all()
    # the diagnosis effect was not protected by the model yet survives, since the model
    # never saw it: AD sessions are harmonized with the controls' site effects
    ad = (harm["dx"] == "AD").to_numpy()
    diff = harm.loc[ad, FEATURES].mean() - harm.loc[~ad, FEATURES].mean()
    assert np.median(diff) == pytest.approx(DX_EFFECT, rel=0.4)


def test_fit_on_baseline_is_cross_sectional_and_applied_to_follow_up(study):
    root, bids = study
    res = build_table(bids, _config(root, fit_on="baseline"), root / "bl")
    record = res["diagnostics"]["harmonization"]
    assert record["model"] == "cross_sectional" and record["fitted_sessions"] == 32
    # the upgraded epoch (d-e2) holds follow-up visits only: it cannot be harmonized
    excluded = res["excluded"]
    assert (excluded["why"].str.contains("no session in the fitting set")).sum() == 8
    assert len(res["table"]) == 56


def test_one_participant_per_batch_is_never_a_table_of_nan():
    """With one participant per scanner epoch (the tiny trial), a participant's random
    intercept is the batch effect: ``auto`` takes cross-sectional ComBat and says why; a
    longitudinal model forced on it raises instead of writing NaN for every value."""
    from trialprep.harmonization.design import HarmonizationError
    from trialprep.harmonization.table_model import choose_model, harmonize_table

    rng = np.random.default_rng(1)
    batch = np.repeat(["a", "b"], 2)
    time = np.tile([0.0, 1.1], 2)
    cov = pd.DataFrame({"participant_id": np.repeat(["p1", "p2"], 2), "time": time,
                        "age": np.repeat([64.0, 77.0], 2) + time})
    kind, why = choose_model("auto", cov["participant_id"], batch)
    assert kind == "cross_sectional" and "one participant" in why
    assert choose_model("auto", pd.Series(["p1", "p1", "p2", "p2"]),
                        np.array(["a", "a", "a", "a"]))[0] == "longitudinal"
    values = rng.normal(1000, 50, (4, 3)) + np.repeat([0.0, 200.0], 2)[:, None]
    h = {"covariates": ["age"], "categorical": [], "smooth": [], "parametric": True, "eb": True,
         "ref_batch": None, "model": "auto"}
    res = harmonize_table(values, ["f1", "f2", "f3"], batch, cov, h, mean_only=True)
    assert np.isfinite(res.values).all() and res.record["model"] == "cross_sectional"
    with pytest.raises(HarmonizationError):  # confounded, or non-finite: never NaN
        harmonize_table(values, ["f1", "f2", "f3"], batch, cov, {**h, "model": "longitudinal"},
                        mean_only=True)
