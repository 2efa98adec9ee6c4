"""`trialprep report BIDS_DIR --tables DIR --out DIR`: the HTML reports."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write the self-contained HTML QC reports")
    p.add_argument("bids", type=Path)
    p.add_argument("--config", type=Path, default=None)
    p.add_argument("--tables", type=Path, required=True, help="folder of `trialprep table`")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from trialprep.config import load_config
    from trialprep.qc_reports.render import render_reports

    written = render_reports(args.bids, args.tables, load_config(args.config), args.out)
    n = sum(len(v) for v in written.values())
    print(f"{n} report(s); open {args.out / 'index.html'}")
    return 0
