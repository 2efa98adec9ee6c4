"""A virtual trial through a real SLURM scheduler (single node on localhost, started by
scripts/slurm-local.sh): the jobs go through sbatch, and the outputs equal a local run's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from trialprep.audit import study_audit
from trialprep.provenance import sha256_file
from trialprep.virtual_trial.generate import generate_trial
from trialprep.workflows.anat.session import biomarker_row_path

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("slurm")]

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "slurm-local.sh"
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


def run(trial: Path, out: Path, *extra: str) -> str:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run([sys.executable, "-m", "trialprep.cli", "run", "--config",
                           str(trial / "study.yaml"), "--out", str(out), "--cores", "2",
                           *extra], capture_output=True, text=True, env=env, timeout=1500)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-5000:]
    return log


def test_trial_through_slurm_equals_the_local_run(slurm, tmp_path):
    trial = tmp_path / "trial"
    generate_trial(trial, "tiny", seed=4, workers=2)
    local, out = tmp_path / "local", tmp_path / "slurm"
    # Intake of every site, then the anatomical job of one session.
    run(trial, local, "--", "intake_complete")
    (t1w, *_) = sorted((local / "bids").glob("sub-*/ses-*/anat/*_T1w.nii.gz"))
    sub, ses = t1w.name.split("_")[0][4:], t1w.name.split("_")[1][4:]
    row = biomarker_row_path(local / "bids", sub, ses)
    run(trial, local, "--", str(row))
    before = len(_completed_jobs(slurm))
    log = run(trial, out, "--profile", "slurm-local", "--", "intake_complete",
              str(out / row.relative_to(local)))
    # Through the scheduler: one sbatch job per site intake and one for the session.
    n_sites = len(list((local / "bids" / "derivatives" / "intake" / "sites").glob("*.json")))
    assert log.count("SLURM jobid") >= n_sites + 1, log[-3000:]
    done = _completed_jobs(slurm)[before:]
    assert sum("JobState=COMPLETED" in line and "Partition=trialprep" in line
               for line in done) >= n_sites + 1
    # Same outputs as the local run: the BIDS dataset byte for byte, the same row.
    assert _raw_files(out / "bids") == _raw_files(local / "bids")
    pd.testing.assert_frame_equal(pd.read_csv(row, sep="\t"),
                                  pd.read_csv(out / row.relative_to(local), sep="\t"))
    started = [e for e in study_audit(out / "bids").latest("run")
               if e["data"]["event"] == "started"]
    assert started[-1]["data"]["profile"] == "slurm-local"
