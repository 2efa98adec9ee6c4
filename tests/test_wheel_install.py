"""Issue 17: trialprep installed from its wheel (no source tree) runs a study.

The wheel is built from the repository and installed into a fresh virtual environment outside
the checkout; that environment borrows the test environment's third-party packages (a path
entry, so no download and no second copy of PyTorch) but not trialprep, which it imports from
the wheel alone. It then generates the tiny virtual trial and runs it from DICOM to the
harmonized table: the Snakefile, the rules, the configuration defaults, the schemas and the
report templates all come from the installed package."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("wheel")]


def _run(cmd, cwd, env, timeout=1500):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    root = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "TRIALPREP_HOME", "VIRTUAL_ENV")}
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
          "-w", root / "dist", REPO], cwd=root, env=env)
    (wheel,) = (root / "dist").glob("trialprep-*.whl")
    venv.create(root / "venv", with_pip=False)
    python = root / "venv" / "bin" / "python"
    site = Path(subprocess.check_output(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        text=True).strip())
    # the test environment's dependencies, appended after the venv's own site-packages
    (site / "zz_borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q",
          wheel], cwd=root, env=env)
    env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"
    return {"root": root, "python": python, "env": env, "wheel": wheel}


def test_the_wheel_carries_the_workflow_and_its_configuration(installed):
    import zipfile

    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    for member in ("trialprep/rules/main.smk", "trialprep/rules/anat.smk",
                   "trialprep/config_data/defaults.yaml", "trialprep/config_data/qc.yaml",
                   "trialprep/config_data/schemas/study.schema.json",
                   "trialprep/config_data/profiles/local/config.yaml",
                   "trialprep/qc_reports/templates/session.html"):
        assert member in names, member
    probe = _run([installed["python"], "-c",
                  "import json, trialprep; from trialprep.paths import snakefile, config_dir;"
                  "from trialprep.provenance import lock_hash;"
                  "print(json.dumps([trialprep.__file__, str(snakefile()), str(config_dir()),"
                  " lock_hash()]))"], cwd=installed["root"], env=installed["env"])
    module, snake, config, lock = json.loads(probe.stdout)
    prefix = str(installed["root"] / "venv")
    assert module.startswith(prefix) and snake.startswith(prefix) and config.startswith(prefix)
    assert str(REPO) not in module + snake + config
    assert lock == hashlib.sha256((REPO / "constraints.txt").read_bytes()).hexdigest()


def test_the_installed_package_runs_the_tiny_trial_to_the_harmonized_table(installed):
    root, env = installed["root"], installed["env"]
    exe = installed["python"].parent / "trialprep"
    _run([exe, "demo", "trial", "--size", "tiny", "--seed", "5"], cwd=root, env=env)
    _run([exe, "run", "--trial", "trial", "--out", "study", "--cores", "2"], cwd=root, env=env)
    tables = root / "study" / "tables"
    assert (tables / "biomarkers_harmonized.parquet").stat().st_size > 0
    assert (root / "study" / "reports" / "index.html").exists()
    import pandas as pd

    harm = pd.read_parquet(tables / "biomarkers_harmonized.parquet")
    assert len(harm) >= 4 and harm["Left_Hippocampus_mm3"].notna().all()
    desc = json.loads((root / "study" / "bids" / "derivatives" / "trialprep" /
                       "dataset_description.json").read_text())
    assert desc["EnvironmentLockSHA256"] == hashlib.sha256(
        (REPO / "constraints.txt").read_bytes()).hexdigest()
