"""`trialprep status`: where the study stands, in the terminal (and as JSON)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from trialprep.tables import read_table


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="completeness of the visit schedule, per site")
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


def run(args: argparse.Namespace) -> int:
    summary = summarize(args.bids)
    table = pd.DataFrame(summary["by_site_visit"]).set_index(["site", "visit"])
    print(f"{summary['sessions_expected']} scheduled session(s): " + ", ".join(
        f"{n} {k}" for k, n in sorted(summary["by_status"].items())))
    print(table.to_string())
    for p in summary["problems"]:
        print(f"  {p['site']} sub-{p['subject']} visit {p['visit']}: {p['status']}"
              + (f" - {p['detail']}" if p["detail"] else ""))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_name(args.json.name + ".tmp")
        tmp.write_text(json.dumps(summary, indent=2, default=int) + "\n")
        tmp.replace(args.json)
    return 0
