"""Issue 17: trialprep installs as a package. The wheel carries the workflow, the
configuration and the templates, and an installation from it (a fresh environment outside
the checkout, tests/wheel.py) finds them there, with the lock file for provenance.

The small trial's end-to-end run, on which every acceptance test rests, is made by such an
installation (tests/pipeline/conftest.py; tests/pipeline/test_acceptance.py checks that the
run came from the wheel: from DICOM to the harmonized table with no source tree)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import zipfile

import pytest

from tests.wheel import REPO, clean_env, install_wheel

pytestmark = pytest.mark.xdist_group("wheel")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    root = tmp_path_factory.mktemp("wheel")
    python, wheel = install_wheel(root)
    return {"root": root, "python": python, "wheel": wheel}


def test_the_wheel_carries_the_workflow_and_its_configuration(installed):
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    for member in ("trialprep/rules/main.smk", "trialprep/rules/anat.smk",
                   "trialprep/config_data/defaults.yaml", "trialprep/config_data/qc.yaml",
                   "trialprep/config_data/schemas/study.schema.json",
                   "trialprep/config_data/profiles/local/config.yaml",
                   "trialprep/qc_reports/templates/session.html"):
        assert member in names, member
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)


def test_the_installed_package_finds_its_files_and_the_lock(installed):
    probe = subprocess.run(
        [str(installed["python"]), "-c",
         "import json, trialprep; from trialprep.paths import snakefile, config_dir;"
         "from trialprep.provenance import lock_hash; from trialprep.config import load_config;"
         "load_config(); print(json.dumps([trialprep.__file__, str(snakefile()),"
         " str(config_dir()), lock_hash()]))"],
        cwd=installed["root"], env=clean_env(), capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr[-3000:]
    module, snake, config, lock = json.loads(probe.stdout)
    prefix = str(installed["root"] / "venv")
    assert module.startswith(prefix) and snake.startswith(prefix) and config.startswith(prefix)
    assert str(REPO) not in module + snake + config
    assert lock == hashlib.sha256((REPO / "constraints.txt").read_bytes()).hexdigest()
