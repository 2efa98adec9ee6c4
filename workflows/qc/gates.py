"""QC gates: a verdict for every image a stage processed (pass / warn / fail with the rules
that fired, under its modality's rules), per-site summaries, scanner epochs and drift across
epoch boundaries, and people's overrides."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from trialprep.audit import AuditLog, study_audit
from trialprep.layout import StudyLayout
from trialprep.session_rows import load_stage_rows, read_iqms
from trialprep.stages import Stage, registered_stages
from trialprep.tables import read_table, write_table

SEVERITY = {"pass": 0, "warn": 1, "fail": 2}
EPOCH_KEYS = ("site", "manufacturer", "model", "software_version")


def qc_dir(bids: Path) -> Path:
    return StudyLayout.from_bids(bids).qc


def image_key(name: str) -> str:
    """The key an image is known by in verdicts and overrides: its file name."""
    return Path(str(name).removeprefix("bids::")).name


def session_image(stage: Stage, participant_id: str, session_id: str, source: str) -> str:
    """The image key of a stage's session row (named from the session when the stage
    failed before it found its input)."""
    return image_key(source) if source else (
        f"{participant_id}_{session_id}_{stage.input_suffix}.nii.gz")


def load_sessions(bids: Path, stages: list[Stage] | None = None) -> pd.DataFrame:
    """One row per processed image of every registered stage: its stage and modality, the
    row's status, the IQMs, the scanner and the intake verdict."""
    bids = Path(bids)
    layout = StudyLayout.from_bids(bids)
    records = []
    for stage in stages or registered_stages():
        for row in load_stage_rows(stage, layout).itertuples():
            rec = {"participant_id": row.participant_id, "session_id": row.session_id,
                   "stage": stage.name, "modality": stage.modality, "status": row.status,
                   "reason": row.reason,
                   "image": session_image(stage, row.participant_id, row.session_id,
                                          row.source)}
            rec.update(read_iqms(stage, layout, row.participant_id.removeprefix("sub-"),
                                 row.session_id.removeprefix("ses-")))
            records.append(rec)
    if not records:
        raise FileNotFoundError(f"no stage has written a session row under "
                                f"{layout.derivatives}")
    df = pd.DataFrame(records)
    scans = _session_scanners(bids)
    df = df.merge(scans, on=["participant_id", "session_id"], how="left")
    series = _intake_verdicts(bids)
    df = df.merge(series, on="image", how="left")
    df["intake_verdict"] = df["intake_verdict"].fillna("unknown")
    df["deviations"] = df["deviations"].fillna("")
    return df.sort_values(["site", "participant_id", "session_id"]).reset_index(drop=True)


def _session_scanners(bids: Path) -> pd.DataFrame:
    frames = []
    for path in sorted(bids.glob("sub-*/sub-*_sessions.tsv")):
        t = read_table(path, as_text=True)
        t.insert(0, "participant_id", path.parent.name)
        frames.append(t)
    if not frames:
        raise FileNotFoundError(f"no sessions.tsv files in {bids}")
    t = pd.concat(frames, ignore_index=True)
    keep = ["participant_id", "session_id", "acq_time", *EPOCH_KEYS]
    return t[[c for c in keep if c in t.columns]]


def _intake_verdicts(bids: Path) -> pd.DataFrame:
    series = read_table(StudyLayout.from_bids(bids).series, as_text=True)
    rows = []
    for _, s in series.iterrows():
        for f in str(s["bids_files"]).split(";"):
            if f.endswith(".nii.gz"):
                rows.append({"image": image_key(f), "intake_verdict": s["verdict"],
                             "deviations": s["deviations"]})
    return pd.DataFrame(rows, columns=["image", "intake_verdict", "deviations"])


def assign_epochs(df: pd.DataFrame) -> pd.DataFrame:
    """Batch epochs: site x manufacturer x model x software, numbered per site in order of
    first acquisition (``boston-e1``, ``boston-e2``...)."""
    df = df.copy()
    keys = list(EPOCH_KEYS)
    first = (df.groupby(keys, dropna=False)["acq_time"].min().reset_index()
             .sort_values(["site", "acq_time"]))
    first["epoch"] = first.groupby("site").cumcount().add(1)
    first["epoch"] = first["site"] + "-e" + first["epoch"].astype(str)
    return df.merge(first[[*keys, "epoch"]], on=keys, how="left")


def _robust_z(values: pd.Series) -> pd.Series:
    x = pd.to_numeric(values, errors="coerce")
    med = x.median()
    mad = 1.4826 * (x - med).abs().median()
    if not np.isfinite(mad) or mad == 0:
        return pd.Series(np.nan, index=values.index)
    return (x - med) / mad


def evaluate_images(df: pd.DataFrame, rules: dict) -> pd.DataFrame:
    """Automatic verdicts: ``verdict_auto`` and ``rules_fired`` (``; ``-separated); each
    image under the rules of every image and of its own modality (``rules[modality]``)."""
    if "modality" not in df:
        df = df.assign(modality="anat")
    parts = [_evaluate_modality(g, rules, rules.get(modality, {}))
             for modality, g in df.groupby("modality", sort=False)]
    return pd.concat(parts).loc[df.index] if parts else df.assign(verdict_auto=[],
                                                                   rules_fired=[])


def _evaluate_modality(df: pd.DataFrame, rules: dict, modality_rules: dict) -> pd.DataFrame:
    img_rules = rules["image"]
    fired: list[list[tuple[str, str]]] = [[] for _ in range(len(df))]
    ok = df["status"] == "ok"
    for i in np.flatnonzero(~ok.to_numpy()):
        fired[i].append((img_rules["processing_failed"],
                         f"processing failed: {df['reason'].iloc[i]}"))
    for i in np.flatnonzero((df["intake_verdict"] == "deviant").to_numpy()):
        if img_rules["protocol_deviation"] != "pass":
            fired[i].append((img_rules["protocol_deviation"],
                             f"protocol deviation: {df['deviations'].iloc[i]}"))
    for rule in modality_rules.get("absolute", []):
        if rule["metric"] not in df:
            continue
        x = pd.to_numeric(df[rule["metric"]], errors="coerce")
        why = rule.get("why", rule["metric"])
        if "min" in rule:
            for i in np.flatnonzero((ok & (x < rule["min"])).to_numpy()):
                fired[i].append((rule["verdict"], f"{why}: {rule['metric']} {x.iloc[i]:.3g} < "
                                                  f"{rule['min']}"))
        if "max" in rule:
            for i in np.flatnonzero((ok & (x > rule["max"])).to_numpy()):
                fired[i].append((rule["verdict"], f"{why}: {rule['metric']} {x.iloc[i]:.3g} > "
                                                  f"{rule['max']}"))
    rz = modality_rules.get("robust_z", {"scopes": []})
    for scope in rz["scopes"]:
        groups = df[ok].groupby("site") if scope == "site" else [("study", df[ok])]
        for name, g in groups:
            if len(g) < rz["min_n"]:
                continue
            for metric in rz["metrics"]:
                if metric not in g:
                    continue
                z = _robust_z(g[metric])
                for idx, value in z.items():
                    if not np.isfinite(value) or abs(value) < rz["warn"]:
                        continue
                    level = "fail" if abs(value) >= rz["fail"] else "warn"
                    if scope == "study" and rz.get("study_max_verdict", "fail") == "warn":
                        level = "warn"
                    fired[df.index.get_loc(idx)].append(
                        (level, f"{metric} outlier in {scope} {name}: robust z {value:+.1f}"))
    out = df.copy()
    out["verdict_auto"] = [max((v for v, _ in f), key=SEVERITY.get, default="pass")
                           for f in fired]
    out["rules_fired"] = ["; ".join(w for _, w in f) for f in fired]
    return out


def latest_decisions(audit: AuditLog) -> dict[str, dict]:
    """The most recent human decision (override or imported rating) per image."""
    out = {}
    for e in audit.entries():
        if e["kind"] in ("override", "rating"):
            out[image_key(e["data"]["image"])] = {**e["data"], "by": e["actor"],
                                                  "when": e["time"], "seq": e["seq"]}
    return out


DECISION_COLUMNS = ("image", "verdict", "reason", "by", "when", "seq")


def write_decisions(bids: Path, audit: AuditLog | None = None) -> Path:
    """People's latest QC decisions (the layout's ``decisions.tsv``). The gate rule reads
    it, so recording an override or a rating re-runs the gates (and the table, the reports)."""
    decisions = latest_decisions(audit or study_audit(bids))
    df = pd.DataFrame([{"image": img, **{c: d[c] for c in DECISION_COLUMNS[1:]}}
                       for img, d in sorted(decisions.items())], columns=list(DECISION_COLUMNS))
    return write_table(df, StudyLayout.from_bids(bids).decisions)


def apply_decisions(df: pd.DataFrame, decisions: dict[str, dict]) -> pd.DataFrame:
    out = df.copy()
    out["verdict"] = out["verdict_auto"]
    out["decided_by"] = ""
    out["decision_reason"] = ""
    for i, img in enumerate(out["image"]):
        d = decisions.get(img)
        if d:
            out.loc[out.index[i], ["verdict", "decided_by", "decision_reason"]] = [
                d["verdict"], f"{d['by']} ({d['when']})", d["reason"]]
    return out


def site_summary(df: pd.DataFrame, completeness: pd.DataFrame, rules: dict) -> pd.DataFrame:
    r = rules["site"]
    rows = []
    for site, g in df.groupby("site"):
        comp = completeness[completeness["site"] == site]
        received = comp["status"].isin(["received", "deviant"]).sum()
        completeness_rate = received / len(comp) if len(comp) else float("nan")
        pass_rate = float(g["verdict"].isin(["pass", "warn"]).mean())
        deviations = int((g["intake_verdict"] == "deviant").sum())
        flags = []
        if pass_rate < r["min_pass_rate"]:
            flags.append(f"pass rate {pass_rate:.0%} < {r['min_pass_rate']:.0%}")
        if deviations > r["max_deviations"]:
            flags.append(f"{deviations} protocol deviation(s) > {r['max_deviations']}")
        if completeness_rate < r["min_completeness"]:
            flags.append(f"completeness {completeness_rate:.0%} < {r['min_completeness']:.0%}")
        rows.append({"site": site, "images": len(g),
                     "pass": int((g["verdict"] == "pass").sum()),
                     "warn": int((g["verdict"] == "warn").sum()),
                     "fail": int((g["verdict"] == "fail").sum()), "pass_rate": pass_rate,
                     "deviations": deviations, "completeness": completeness_rate,
                     "epochs": g["epoch"].nunique(), "verdict": "warn" if flags else "pass",
                     "flags": "; ".join(flags)})
    return pd.DataFrame(rows)


def detect_drift(df: pd.DataFrame, rules: dict) -> pd.DataFrame:
    """IQM shifts across each site's epoch boundaries (standardised mean difference), for
    each modality's ``drift_metrics``."""
    d = rules["drift"]
    rows = []
    if "modality" not in df:
        df = df.assign(modality="anat")
    ok = df[df["status"] == "ok"]
    for (modality, site), g in ok.groupby(["modality", "site"]):
        order = g.groupby("epoch")["acq_time"].min().sort_values().index.tolist()
        for before, after in zip(order, order[1:], strict=False):
            a, b = g[g["epoch"] == before], g[g["epoch"] == after]
            for metric in rules.get(modality, {}).get("drift_metrics", []):
                if metric not in g:
                    continue
                xa = pd.to_numeric(a[metric], errors="coerce").dropna()
                xb = pd.to_numeric(b[metric], errors="coerce").dropna()
                if len(xa) < d["min_n"] or len(xb) < d["min_n"]:
                    continue
                pooled = np.sqrt((xa.var(ddof=1) + xb.var(ddof=1)) / 2) if (
                    len(xa) > 1 and len(xb) > 1) else np.nan
                smd = (xb.mean() - xa.mean()) / pooled if pooled and pooled > 0 else np.inf
                rows.append({"site": site, "modality": modality, "epoch_before": before,
                             "epoch_after": after, "metric": metric, "mean_before": xa.mean(),
                             "mean_after": xb.mean(), "smd": smd,
                             "flagged": bool(abs(smd) > d["smd"])})
    return pd.DataFrame(rows, columns=["site", "modality", "epoch_before", "epoch_after",
                                       "metric", "mean_before", "mean_after", "smd",
                                       "flagged"])


def run_gates(bids: Path, config, audit: AuditLog | None = None) -> dict[str, pd.DataFrame]:
    """Evaluate every image and site; write the QC verdicts; log to the audit."""
    bids = Path(bids)
    layout = StudyLayout.from_bids(bids)
    audit = audit or study_audit(bids)
    df = assign_epochs(load_sessions(bids))
    df = apply_decisions(evaluate_images(df, config.qc), latest_decisions(audit))
    completeness = read_table(layout.completeness, as_text=True)
    sites = site_summary(df, completeness, config.qc)
    drift = detect_drift(df, config.qc)
    write_table(df, layout.image_verdicts)
    write_table(sites, layout.site_verdicts)
    write_table(drift, layout.drift)
    audit.append("gate", {
        "config_sha256": config.hash,
        "verdicts": {img: v for img, v in zip(df["image"], df["verdict"], strict=True)},
        "overridden": sorted(df.loc[df["decided_by"] != "", "image"]),
        "sites": {s: v for s, v in zip(sites["site"], sites["verdict"], strict=True)},
        "drift_flags": int(drift["flagged"].sum()) if len(drift) else 0})
    return {"images": df, "sites": sites, "drift": drift}
