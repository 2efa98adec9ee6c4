"""`trialprep intake SOURCE_DIR --site SITE --bids BIDS_DIR`."""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path

from trialprep.config import load_config
from trialprep.keys import load_study_key
from trialprep.layout import StudyLayout
from trialprep.tables import write_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("intake", help="de-identify, check and convert one site's DICOM drop",
                       description="Take a site's DICOM drop into the study's BIDS dataset. "
                       "Originals are only read. Every file gets an outcome in "
                       "BIDS_DIR/derivatives/intake/manifest.tsv.")
    p.add_argument("source", type=Path, help="the site's DICOM drop folder")
    p.add_argument("--site", required=True, help="site label (letters and digits)")
    p.add_argument("--bids", required=True, type=Path, help="the study's BIDS dataset")
    p.add_argument("--config", type=Path, default=None, help="study YAML (default: built-in)")
    p.add_argument("--as-of", type=date.fromisoformat, default=None,
                   help="date the visit schedule is judged at (default: today)")
    p.add_argument("--visit", default=None,
                   help="assign the whole drop to this visit id (else from the headers)")
    p.add_argument("--summary", type=Path, default=None,
                   help="also write the run's summary as JSON (used by the Snakemake rule)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from trialprep.workflows.intake.pipeline import run_intake

    config = load_config(args.config)
    key = load_study_key(config["key"]["env"], config.resolve(config["key"]["file"]))
    summary = run_intake(args.source, args.site, args.bids, config, key, progress=True,
                         as_of=args.as_of, visit=args.visit)
    print(summary.line())
    if args.summary:
        args.summary.parent.mkdir(parents=True, exist_ok=True)
        write_json(summary.to_dict(), args.summary)
    print(f"BIDS dataset: {args.bids}  records: {StudyLayout.from_bids(args.bids).intake}")
    return 0
