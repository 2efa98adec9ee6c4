"""`trialprep demo OUT_DIR [--size small|default|full] [--seed N]`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from trialprep.virtual_trial.generate import SIZES


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="write a virtual multi-site trial (DICOM drops + truth)",
                       description="Write a virtual multi-site trial with known ground truth.")
    p.add_argument("out", type=Path, help="output folder (must be new or empty)")
    p.add_argument("--size", choices=sorted(SIZES), default="small")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="parallel processes")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from trialprep.virtual_trial.generate import generate_trial

    t0 = time.perf_counter()
    truth = generate_trial(args.out, args.size, args.seed, args.workers)
    planted = truth["planted"]
    print(f"virtual trial ({args.size}, seed {args.seed}) written in "
          f"{time.perf_counter() - t0:.0f} s: {args.out}")
    print(f"  DICOM drops: {args.out / 'drops'}  study config: {args.out / 'study.yaml'}")
    print(f"  ground truth (never read by the pipeline): {args.out / 'truth'}")
    print(f"  planted: upgrade at {planted['software_upgrade']['site']}, off-protocol series at "
          f"{planted['off_protocol']['site']}, missing visit at "
          f"{planted['missing_visit']['site']}, corrupt file, non-DICOM file")
    return 0
