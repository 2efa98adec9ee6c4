"""`trialprep` command line: one entry point, a subcommand per stage."""

from __future__ import annotations

import argparse
import logging
import sys

from trialprep import __version__


class UserError(Exception):
    """An error caused by the user's input, printed without a traceback."""


#: Subcommand -> the module whose ``add_parser(sub)`` adds it (in help order).
COMMANDS = {
    "demo": "trialprep.virtual_trial.cli",
    "intake": "trialprep.workflows.intake.cli",
    "anat": "trialprep.workflows.anat.cli",
    "qc": "trialprep.workflows.qc.cli",
    "audit": "trialprep.workflows.qc.cli",
    "harmonize": "trialprep.harmonization.cli",
    "table": "trialprep.harmonization.table_cli",
    "report": "trialprep.qc_reports.cli",
    "prov": "trialprep.prov_export",
    "run": "trialprep.run",
    "status": "trialprep.status",
}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with ``argv`` naming a subcommand, only that subcommand's module is
    imported (some pull in scikit-learn or pandas, seconds per Snakemake job otherwise),
    and none for ``--version``."""
    from importlib import import_module

    parser = argparse.ArgumentParser(prog="trialprep", description=__doc__)
    parser.add_argument("--version", action="version", version=f"trialprep {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    argv = argv or []
    named = next((a for a in argv if not a.startswith("-")), None)
    if named in COMMANDS:
        wanted = [COMMANDS[named]]
    elif named is None and "--version" in argv and not {"-h", "--help"} & set(argv):
        wanted = []  # argparse prints the version and exits before any subcommand is needed
    else:
        wanted = COMMANDS.values()
    for module in dict.fromkeys(wanted):
        import_module(module).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    from trialprep.keys import StudyKeyError

    try:
        return int(args.func(args) or 0)
    except (UserError, FileNotFoundError, StudyKeyError, ValueError) as exc:
        # ValueError covers ConfigError and HarmonizationError (its subclasses)
        print(f"trialprep {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
