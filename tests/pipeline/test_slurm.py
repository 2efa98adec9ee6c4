"""The small trial through a real SLURM scheduler (single node on localhost, started by
scripts/slurm-local.sh): the jobs go through sbatch, and the outputs equal the local run's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from trialprep.audit import study_audit
from trialprep.paths import project_root
from trialprep.provenance import sha256_file

pytestmark = pytest.mark.xdist_group("pipeline")

SCRIPT = project_root() / "scripts" / "slurm-local.sh"
STATE = Path(os.environ.get("TRIALPREP_SLURM_STATE", "/tmp/trialprep-slurm"))


@pytest.fixture(scope="module")
def slurm():
    running = subprocess.run(["pgrep", "-x", "slurmctld"], capture_output=True).returncode == 0
    proc = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True)
    assert proc.returncode == 0, f"could not start the local SLURM: {proc.stderr}"
    yield STATE
    if not running:
        subprocess.run(["bash", str(SCRIPT), "stop"], capture_output=True)


def _completed_jobs(state: Path) -> list[str]:
    log = state / "log" / "jobcomp.txt"
    return log.read_text().splitlines() if log.exists() else []


def _raw_files(bids: Path) -> dict[str, str]:
    files = [p for p in bids.rglob("*") if p.is_file() and "derivatives" not in p.parts]
    return {str(p.relative_to(bids)): sha256_file(p) for p in files}


def test_small_trial_through_slurm_equals_the_local_run(small_study, slurm, tmp_path):
    local = small_study["out"]
    rows = sorted((local / "bids" / "derivatives" / "trialprep").glob(
        "sub-*/ses-*/anat/*_desc-biomarkers_morph.tsv"))[:1]
    out = tmp_path / "study"
    targets = [str(out / r.relative_to(local)) for r in rows]
    before = len(_completed_jobs(slurm))
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run([sys.executable, "-m", "trialprep.cli", "run", "--profile",
                           "slurm-local", "--config", str(small_study["config"]), "--out",
                           str(out), "--cores", "2", "--", "intake_complete", *targets],
                          capture_output=True, text=True, env=env, timeout=1500)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-5000:]
    # Through the scheduler: one sbatch job per site intake and per anatomical session.
    n_sites = len(list((local / "bids" / "derivatives" / "intake" / "sites").glob("*.json")))
    assert log.count("SLURM jobid") >= n_sites + len(rows), log[-3000:]
    done = _completed_jobs(slurm)[before:]
    assert sum("JobState=COMPLETED" in line and "Partition=trialprep" in line
               for line in done) >= n_sites + len(rows)
    # Same outputs as the local run: the BIDS dataset byte for byte, the same rows.
    assert _raw_files(out / "bids") == _raw_files(local / "bids")
    for row in rows:
        pd.testing.assert_frame_equal(pd.read_csv(row, sep="\t"),
                                      pd.read_csv(out / row.relative_to(local), sep="\t"))
    started = [e for e in study_audit(out / "bids").latest("run")
               if e["data"]["event"] == "started"]
    assert started[-1]["data"]["profile"] == "slurm-local"
