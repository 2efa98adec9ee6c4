"""One end-to-end run of the small virtual trial, shared by the acceptance tests:
site DICOM drops -> intake -> anatomy -> QC gates -> harmonized table -> reports, by
trialprep installed from its wheel into a fresh environment outside the checkout (issue 17:
every acceptance test then also checks the installed package)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from trialprep.virtual_trial.generate import generate_trial


def trialprep_run(trial: Path, out: Path, config: Path,
                  python: Path | str = sys.executable) -> subprocess.CompletedProcess:
    """``trialprep run`` of a study with ``python``'s trialprep (run outside the checkout)."""
    from tests.wheel import clean_env

    env = clean_env()
    env["PATH"] = f"{Path(python).parent}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run([str(python), "-m", "trialprep.cli", "run", "--config",
                           str(config), "--out", str(out), "--cores", "2"],
                          capture_output=True, text=True, env=env, timeout=3000,
                          cwd=Path(out).parent)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    return proc


@pytest.fixture(scope="session")
def small_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    trial = root / "trial"
    generate_trial(trial, "small", seed=11, workers=2)
    study = yaml.safe_load((trial / "study.yaml").read_text())
    # The study's own gate file (a copy of the defaults), so tests can tighten it in place.
    from trialprep.paths import config_dir

    (trial / "qc-test.yaml").write_text((config_dir() / "qc.yaml").read_text())
    study["qc_gates"] = "qc-test.yaml"
    config = trial / "test-study.yaml"
    config.write_text(yaml.safe_dump(study))
    from tests.wheel import install_wheel

    python, _ = install_wheel(root / "wheel")
    out = root / "study"
    proc = trialprep_run(trial, out, config, python)
    return {"root": root, "trial": trial, "out": out, "bids": out / "bids", "config": config,
            "stdout": proc.stdout, "qc": trial / "qc-test.yaml", "python": python}
