"""`trialprep` command line: one entry point, a subcommand per stage."""

from __future__ import annotations

import argparse
import logging
import sys

from trialprep import __version__


class UserError(Exception):
    """An error caused by the user's input, printed without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    from trialprep.harmonization import cli as harmonize_cli

    parser = argparse.ArgumentParser(prog="trialprep", description=__doc__)
    parser.add_argument("--version", action="version", version=f"trialprep {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    harmonize_cli.add_parser(sub)
    for mod in _optional_commands():
        mod.add_parser(sub)
    return parser


def _optional_commands() -> list:
    """Subcommand modules of the other stages (each has ``add_parser``)."""
    import importlib

    names = ["trialprep.virtual_trial.cli", "trialprep.workflows.intake.cli", "trialprep.run"]
    mods = []
    for name in names:
        try:
            mods.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
    return mods


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
