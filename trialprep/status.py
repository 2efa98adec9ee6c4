"""`trialprep status`: where the study stands, in the terminal (and as JSON)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from trialprep.layout import StudyLayout
from trialprep.tables import read_table, write_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="completeness of the visit schedule and QC gates")
    p.add_argument("--bids", type=Path, required=True, help="the study's BIDS dataset")
    p.add_argument("--json", type=Path, default=None, help="also write the summary as JSON")
    p.set_defaults(func=run)


def summarize(bids: Path) -> dict:
    path = StudyLayout.from_bids(bids).completeness
    if not path.exists():
        raise FileNotFoundError(f"no intake records in {bids} (run `trialprep intake` first)")
    table = read_table(path, as_text=True)
    counts = (table.groupby(["site", "visit", "status"]).size().unstack(fill_value=0)
              .reset_index())
    problems = table[table["status"] != "received"]
    return {
        "sessions_expected": int(len(table)),
        "by_status": {k: int(v) for k, v in table["status"].value_counts().items()},
        "by_site_visit": counts.to_dict("records"),
        "problems": problems[["site", "subject", "visit", "status", "detail"]].to_dict(
            "records"),
    }


def stage_summary(bids: Path) -> list[dict]:
    """Per registered stage: sessions with its input, rows written, rows failed."""
    from trialprep.session_rows import load_stage_rows
    from trialprep.stages import registered_stages

    layout = StudyLayout.from_bids(bids)
    out = []
    for stage in registered_stages():
        rows = load_stage_rows(stage, layout)
        out.append({"stage": stage.name, "modality": stage.modality,
                    "sessions": len(stage.sessions(layout)), "processed": int(len(rows)),
                    "failed": int((rows["status"] != "ok").sum())})
    return out


def gate_summary(bids: Path) -> dict | None:
    """The QC gate summary, once the gates have run."""
    layout = StudyLayout.from_bids(bids)
    if not layout.image_verdicts.exists():
        return None
    images = read_table(layout.image_verdicts, as_text=True)
    sites = read_table(layout.site_verdicts)
    sites["flags"] = sites["flags"].fillna("")
    drift = read_table(layout.drift)
    failed = images[images["verdict"] == "fail"]
    by_modality = images.groupby("modality")["verdict"].value_counts()
    return {
        "images": int(len(images)),
        "by_verdict": {k: int(v) for k, v in images["verdict"].value_counts().items()},
        "by_modality": {m: {v: int(n) for (mm, v), n in by_modality.items() if mm == m}
                        for m in images["modality"].unique()},
        "sites": sites[["site", "verdict", "pass_rate", "epochs", "flags"]].to_dict("records"),
        "drift": drift[drift["flagged"].astype(bool)].to_dict("records") if len(drift) else [],
        "failed": failed[["image", "rules_fired"]].to_dict("records"),
    }


def run(args: argparse.Namespace) -> int:
    summary = summarize(args.bids)
    table = pd.DataFrame(summary["by_site_visit"]).set_index(["site", "visit"])
    print(f"{summary['sessions_expected']} scheduled session(s): " + ", ".join(
        f"{n} {k}" for k, n in sorted(summary["by_status"].items())))
    print(table.to_string())
    for p in summary["problems"]:
        print(f"  {p['site']} sub-{p['subject']} visit {p['visit']}: {p['status']}"
              + (f" - {p['detail']}" if p["detail"] else ""))
    stages = stage_summary(args.bids)
    summary["stages"] = stages
    if any(st["sessions"] or st["processed"] for st in stages):
        print()
        for st in stages:
            print(f"stage {st['stage']:<6} {st['processed']}/{st['sessions']} session(s) "
                  f"processed, {st['failed']} failed")
    gates = gate_summary(args.bids)
    if gates:
        summary["gates"] = gates
        print(f"\nQC gates: {gates['images']} image(s): " + ", ".join(
            f"{n} {k}" for k, n in sorted(gates["by_verdict"].items())))
        for modality, counts in sorted(gates["by_modality"].items()):
            print(f"  {modality:<10} " + ", ".join(f"{n} {k}"
                                                   for k, n in sorted(counts.items())))
        for s in gates["sites"]:
            print(f"  {s['site']:<10} {s['verdict']:<5} pass rate {s['pass_rate']:.0%}, "
                  f"{s['epochs']} epoch(s)" + (f" - {s['flags']}" if s["flags"] else ""))
        for d in gates["drift"]:
            print(f"  drift at {d['site']}: {d['metric']} {d['epoch_before']} -> "
                  f"{d['epoch_after']} (SMD {d['smd']:+.2f})")
        for f in gates["failed"]:
            print(f"  FAIL {f['image']}: {f['rules_fired']}")
    if args.json:
        write_json(summary, args.json)
    return 0
