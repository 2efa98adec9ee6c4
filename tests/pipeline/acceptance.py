"""Issue 5's acceptance measures, computed from a run's tables alone (the truth is only
used to name the planted effects): shared by the small-trial short form (CI) and the
default-demo test (marker ``demo``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from trialprep.harmonization.diagnostics import (
    combat_in_folds,
    longitudinal_in_folds,
    site_prediction_auc,
)
from trialprep.keys import StudyKey

#: What the generator planted (log scale for the slope, as the regression below).
PLANTED_AGE_SLOPE = float(np.log1p(-0.006))
PLANTED_DX_EFFECT = -0.15


def load_truth(trial: Path) -> pd.DataFrame:
    key = StudyKey((trial / "secrets" / "study.key").read_text().strip().encode())
    t = pd.read_csv(trial / "truth" / "sessions.tsv", sep="\t", dtype={"visit": str})
    t["participant_id"] = ["sub-" + key.label("subject", s, p)
                           for s, p in zip(t["site"], t["patient_id"], strict=True)]
    t["session_id"] = "ses-" + t["visit"]
    return t


def tissue_dice(trial: Path, bids: Path, truth: pd.DataFrame) -> pd.DataFrame:
    """Per processed session: Dice of the pipeline's CSF, GM and WM labels against the
    generator's truth labels (taken onto the segmentation's grid, nearest neighbour)."""
    import nibabel as nib
    from nilearn.image import resample_to_img

    rows = []
    for _, r in truth.iterrows():
        anat = bids / "derivatives" / "trialprep" / r["participant_id"] / r["session_id"] / "anat"
        segs = [p for p in anat.glob("*_dseg.nii.gz") if "_desc-" not in p.name]
        if not segs:
            continue
        seg_img = nib.load(segs[0])
        seg = np.asarray(seg_img.dataobj).astype(int)
        ref = np.asarray(resample_to_img(nib.load(trial / r["labels"]), seg_img,
                                         interpolation="nearest", force_resample=True,
                                         copy_header=True).dataobj).astype(int)
        row = {"site": r["site"], "visit": r["visit"], "off_protocol": bool(r["off_protocol"])}
        for k, name in ((1, "CSF"), (2, "GM"), (3, "WM")):
            a, b = seg == k, ref == k
            row[name] = 2 * float((a & b).sum()) / float(a.sum() + b.sum())
        rows.append(row)
    return pd.DataFrame(rows)


def brain_mask_dice(trial: Path, bids: Path, truth: pd.DataFrame) -> pd.DataFrame:
    """Per processed session: Dice of the pipeline's brain mask (intracranial: the brain
    and the CSF round it) against the truth's intracranial labels."""
    import nibabel as nib
    from nilearn.image import resample_to_img

    rows = []
    for _, r in truth.iterrows():
        anat = bids / "derivatives" / "trialprep" / r["participant_id"] / r["session_id"] / "anat"
        masks = list(anat.glob("*_desc-brain_mask.nii.gz"))
        if not masks:
            continue
        mask_img = nib.load(masks[0])
        mask = np.asarray(mask_img.dataobj) > 0
        ref = np.asarray(resample_to_img(nib.load(trial / r["labels"]), mask_img,
                                         interpolation="nearest", force_resample=True,
                                         copy_header=True).dataobj) > 0
        rows.append({"site": r["site"], "visit": r["visit"],
                     "off_protocol": bool(r["off_protocol"]),
                     "dice": 2 * float((mask & ref).sum()) / float(mask.sum() + ref.sum())})
    return pd.DataFrame(rows)


def load_tables(out: Path) -> dict:
    d = out / "tables"
    return {"raw": pd.read_parquet(d / "biomarkers_unharmonized.parquet"),
            "harm": pd.read_parquet(d / "biomarkers_harmonized.parquet"),
            "tsv": pd.read_csv(d / "biomarkers_harmonized.tsv", sep="\t"),
            "dict": json.loads((d / "biomarkers_harmonized.json").read_text()),
            "diagnostics": json.loads((d / "harmonization_diagnostics.json").read_text()),
            "excluded": pd.read_csv(d / "excluded_sessions.tsv", sep="\t")}


def features(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if c.endswith("_mm3") or c.endswith("_thickness_mm")]


def scanner_auc(tables: dict, folds: int) -> dict[str, float]:
    """Cross-validated AUC of predicting the scanner epoch (the harmonization batch: site x
    scanner x software) from the volumes relative to TIV and the cortical thicknesses (in
    mm: a length divided by the head's volume would mostly measure head size); folds keep
    each participant's
    sessions together (else the person, not the scanner, would be recognised); the mean over
    10 random splits into folds (one split of a dozen participants is a noisy measure).

    ``after``: ComBat with the table's settings (the defaults: covariates age, sex, dx) is
    fitted on each fold's training sessions and applied to the held-out ones;
    ``after_longitudinal``: the same with longitudinal ComBat (the table's default model
    with repeated visits; held-out participants' random effects from their own visits).
    ``after_table``: the harmonized table cross-validated as a whole, which leaks (held-out
    participants sit opposite their site's mean) and lands below chance."""
    raw, harm = tables["raw"], tables["harm"]
    feats = [c for c in features(raw) if c != "TIV_mm3"]
    volume = np.array([c.endswith("_mm3") for c in feats])

    def relative(values: np.ndarray, tiv: np.ndarray) -> np.ndarray:
        return np.where(volume, values / tiv[:, None], values)

    def rel(df: pd.DataFrame) -> np.ndarray:
        return relative(df[feats].to_numpy(float), df["TIV_mm3"].to_numpy(float))

    def auc(X, harmonizer=None) -> float:
        return site_prediction_auc(X, raw["epoch"], folds=folds, groups=raw["participant_id"],
                                   harmonizer=harmonizer, repeats=10)

    combat = combat_in_folds(raw[["TIV_mm3", *feats]].to_numpy(), raw["epoch"],
                             raw[["age", "sex", "dx"]], categorical=["sex", "dx"])

    def harmonized_rel(train, test):
        return tuple(relative(h[:, 1:], h[:, 0]) for h in combat(train, test))

    longitudinal = longitudinal_in_folds(
        raw[["TIV_mm3", *feats]].to_numpy(), raw["epoch"],
        raw[["participant_id", "time", "age", "sex", "dx"]], subject="participant_id",
        time="time", formula="time + age + sex + dx", categorical=["sex", "dx"])

    def longitudinal_rel(train, test):
        return tuple(relative(h[:, 1:], h[:, 0]) for h in longitudinal(train, test))

    return {"before": auc(rel(raw)), "after": auc(rel(raw), harmonized_rel),
            "after_longitudinal": auc(rel(raw), longitudinal_rel),
            "after_table": auc(rel(harm))}


def thickness_effects(harm: pd.DataFrame, truth: pd.DataFrame, planted: dict) -> tuple[
        float, float]:
    """(age slope of the global mean cortical thickness per year, relative to the thickness
    at the generator's reference age; relative AD effect on the mean thickness of the
    planted regions) from the harmonized table. Planted: thickness x (1 - 0.005 (age - 55))
    everywhere, x 0.88 in AD in the medial and inferior temporal regions."""
    harm = harm.merge(truth[["participant_id", "session_id", "age", "dx"]],
                      on=["participant_id", "session_id"], suffixes=("", "_truth"))
    ad = (harm["dx_truth"] == "AD").astype(float)
    age = harm["age_truth"] - planted["reference_age"]
    design = np.column_stack([np.ones(len(harm)), age, ad])
    beta, *_ = np.linalg.lstsq(design, harm["mean_cortical_thickness_mm"], rcond=None)
    columns = [f"{r}_thickness_mm" for r in planted["dx_regions"]
               if f"{r}_thickness_mm" in harm.columns]
    regional = np.log(harm[columns].mean(axis=1))
    gamma, *_ = np.linalg.lstsq(design, regional, rcond=None)
    return float(beta[1] / beta[0]), float(np.expm1(gamma[2]))


def hippocampal_effects(harm: pd.DataFrame, truth: pd.DataFrame) -> tuple[float, float]:
    """(age slope of log hippocampal volume per year, relative AD effect) from the
    harmonized table. Planted: volume x (1 - 0.006 (age - 70)), x 0.85 for AD and a further
    -3 %/year in AD after baseline."""
    harm = harm.merge(truth[["participant_id", "session_id", "age", "dx"]],
                      on=["participant_id", "session_id"], suffixes=("", "_truth"))
    hippo = np.log(harm["Left_Hippocampus_mm3"] + harm["Right_Hippocampus_mm3"])
    ad = (harm["dx_truth"] == "AD").astype(float)
    years = harm["age_truth"] - harm.groupby("participant_id")["age_truth"].transform("min")
    design = np.column_stack([np.ones(len(harm)), harm["age_truth"] - 70, ad, ad * years,
                              np.log(harm["TIV_mm3"])])
    beta, *_ = np.linalg.lstsq(design, hippo, rcond=None)
    return float(beta[1]), float(np.expm1(beta[2]))
