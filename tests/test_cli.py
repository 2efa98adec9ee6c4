"""The `trialprep` entry point: every subcommand is registered, and a named subcommand
imports only its own module."""

from __future__ import annotations

import subprocess
import sys

from trialprep import __version__
from trialprep.cli import COMMANDS, build_parser


def _commands(parser) -> set[str]:
    (action,) = [a for a in parser._actions if a.dest == "command"]
    return set(action.choices)


def test_help_lists_every_registered_subcommand():
    assert _commands(build_parser()) == set(COMMANDS)
    assert _commands(build_parser(["--verbose", "bogus"])) == set(COMMANDS)


def test_each_subcommand_is_there_when_named():
    for name in COMMANDS:
        assert name in _commands(build_parser(["-v", name]))
    args = build_parser(["anat", "bids", "--collect", "t.tsv"]).parse_args(
        ["anat", "bids", "--collect", "t.tsv"])
    assert args.command == "anat" and str(args.collect) == "t.tsv"


def test_a_session_job_does_not_import_the_harmonization_stack():
    code = ("import sys; from trialprep.cli import build_parser; "
            "build_parser(['anat', 'x']).parse_args(['anat', 'x', '--collect', 'y.tsv']); "
            "print(sorted(m for m in ('sklearn', 'pandas', 'statsmodels') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_version_imports_no_subcommand():
    code = ("import sys; from trialprep.cli import COMMANDS, main\n"
            "try:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in set(COMMANDS.values()) if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert proc.stdout.splitlines() == [f"trialprep {__version__}", "[]"]
