"""Where trialprep's own files (config, rules, Snakefile) live."""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """Root holding `Snakefile`, `rules/` and `config/` (``TRIALPREP_HOME`` overrides)."""
    env = os.environ.get("TRIALPREP_HOME")
    if env:
        return Path(env).resolve()
    return Path(__file__).resolve().parent.parent


def config_dir() -> Path:
    return project_root() / "config"
