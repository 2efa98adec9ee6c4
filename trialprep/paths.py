"""Where trialprep's own files live: the workflow (Snakefile and rules), the configuration
defaults, schemas and profiles, and the lock file. They ship inside the package
(``trialprep.rules`` and ``trialprep.config_data``, mapped from the repository's ``rules/``
and ``config/``) and are found with :mod:`importlib.resources`, so an installed wheel runs a
study as a checkout does."""

from __future__ import annotations

import sys
from importlib.resources import files
from pathlib import Path


def _package_dir(package: str) -> Path:
    # the resources are plain files (setuptools installs package data unzipped)
    return Path(str(files(package)))


def rules_dir() -> Path:
    """The Snakemake rules (``main.smk`` is the DAG's entry point)."""
    return _package_dir("trialprep.rules")


def snakefile() -> Path:
    return rules_dir() / "main.smk"


def config_dir() -> Path:
    """Configuration defaults, gate rules, protocol, schemas and Snakemake profiles."""
    return _package_dir("trialprep.config_data")


def lock_file() -> Path | None:
    """``constraints.txt``: the checkout's, else the copy a wheel installs under
    ``<prefix>/share/trialprep``; None when neither exists."""
    here = Path(__file__).resolve().parent.parent / "constraints.txt"
    installed = Path(sys.prefix) / "share" / "trialprep" / "constraints.txt"
    for path in (here, installed):
        if path.is_file():
            return path
    return None
