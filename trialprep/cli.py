"""`trialprep` command line: one entry point, a subcommand per stage."""

from __future__ import annotations

import argparse
import logging
import sys

from trialprep import __version__


class UserError(Exception):
    """An error caused by the user's input, printed without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    from trialprep import prov_export, run, status
    from trialprep.harmonization import cli as harmonize_cli
    from trialprep.harmonization import table_cli
    from trialprep.qc_reports import cli as report_cli
    from trialprep.virtual_trial import cli as demo_cli
    from trialprep.workflows.anat import cli as anat_cli
    from trialprep.workflows.intake import cli as intake_cli
    from trialprep.workflows.qc import cli as qc_cli

    parser = argparse.ArgumentParser(prog="trialprep", description=__doc__)
    parser.add_argument("--version", action="version", version=f"trialprep {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (demo_cli, intake_cli, anat_cli, qc_cli, harmonize_cli, table_cli,
                   report_cli, prov_export, run, status):
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    from trialprep.config import ConfigError
    from trialprep.harmonization.design import HarmonizationError
    from trialprep.keys import StudyKeyError

    try:
        return int(args.func(args) or 0)
    except (UserError, HarmonizationError, FileNotFoundError, ConfigError,
            StudyKeyError, ValueError) as exc:
        print(f"trialprep {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
