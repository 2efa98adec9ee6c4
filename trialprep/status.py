"""`trialprep status`: where the study stands, in the terminal (and as JSON)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from trialprep.tables import read_table, write_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="completeness of the visit schedule and QC gates")
    p.add_argument("--bids", type=Path, required=True, help="the study's BIDS dataset")
    p.add_argument("--json", type=Path, default=None, help="also write the summary as JSON")
    p.set_defaults(func=run)


def summarize(bids: Path) -> dict:
    path = bids / "derivatives" / "intake" / "completeness.tsv"
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


def gate_summary(bids: Path) -> dict | None:
    """The QC gate summary, once the gates have run."""
    qc = bids / "derivatives" / "qc"
    if not (qc / "image_verdicts.tsv").exists():
        return None
    images = read_table(qc / "image_verdicts.tsv", as_text=True)
    sites = read_table(qc / "site_verdicts.tsv")
    sites["flags"] = sites["flags"].fillna("")
    drift = read_table(qc / "drift.tsv")
    failed = images[images["verdict"] == "fail"]
    return {
        "images": int(len(images)),
        "by_verdict": {k: int(v) for k, v in images["verdict"].value_counts().items()},
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
    gates = gate_summary(args.bids)
    if gates:
        summary["gates"] = gates
        print(f"\nQC gates: {gates['images']} image(s): " + ", ".join(
            f"{n} {k}" for k, n in sorted(gates["by_verdict"].items())))
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
