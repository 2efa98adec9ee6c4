"""`trialprep anat BIDS_DIR --participant-label SUB --session-label SES` and `--collect`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("anat", help="anatomical preprocessing of one session (or --collect)",
                       description="Run one session's T1w through the anatomical workflow "
                       "into BIDS_DIR/derivatives/trialprep; a session that cannot be "
                       "processed gets a biomarker row with status=failed and the reason. "
                       "With --collect, gather every session's row into one table.")
    p.add_argument("bids", type=Path, help="the study's BIDS dataset")
    p.add_argument("--participant-label", help="subject label (without sub-)")
    p.add_argument("--session-label", help="session label (without ses-)")
    p.add_argument("--config", type=Path, default=None, help="study YAML")
    p.add_argument("--work", type=Path, default=None, help="work folder (resumable)")
    p.add_argument("--threads", type=int, default=None,
                   help="ITK threads (only when anat.single_threaded is false)")
    p.add_argument("--collect", type=Path, default=None, metavar="TABLE",
                   help="write every session's biomarker row to TABLE (.tsv or .parquet)")
    p.add_argument("--strict", action="store_true", help="exit 1 when the session failed")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from trialprep.cli import UserError
    from trialprep.config import load_config

    config = load_config(args.config)
    if args.collect:
        from trialprep.layout import StudyLayout
        from trialprep.session_rows import collect_stage_rows
        from trialprep.workflows.anat.stage import ANAT_STAGE

        table = collect_stage_rows(ANAT_STAGE, StudyLayout.from_bids(args.bids), args.collect)
        print(f"{len(table)} session row(s) -> {args.collect}")
        return 0
    if not (args.participant_label and args.session_label):
        raise UserError("give --participant-label and --session-label (or --collect TABLE)")
    a = config["anat"]
    threads = 1 if a["single_threaded"] else (args.threads or a["threads"])
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(threads)  # before ITK starts
    os.environ["ANTS_RANDOM_SEED"] = str(a["seed"])
    from trialprep.workflows.anat.session import biomarker_row_path, run_anat_session

    row = run_anat_session(args.bids, args.participant_label, args.session_label, config,
                           work=args.work)
    where = biomarker_row_path(args.bids, row["participant_id"][4:], row["session_id"][4:])
    if row["status"] != "ok":
        print(f"{row['participant_id']} {row['session_id']}: FAILED - {row['reason']}",
              file=sys.stderr)
        return 1 if args.strict else 0
    print(f"{row['participant_id']} {row['session_id']}: ok -> {where}")
    return 0
