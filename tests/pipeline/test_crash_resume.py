"""A run killed with SIGKILL in the middle of the anatomical stage is started again, completes,
and gives the same biomarker table as the uninterrupted run of the shared fixture."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import nibabel as nib
import pandas as pd
import pytest

from tests.pipeline.conftest import trialprep_run

pytestmark = pytest.mark.xdist_group("pipeline")

REDONE = 2  # sessions whose anatomical outputs the interrupted run has to produce


def _copy_study(src: Path, dst: Path) -> list[str]:
    """A copy of the finished study without its QC verdicts, tables, reports and the
    anatomical derivatives of REDONE sessions (as if the run had stopped before them: the
    gates, which read every session's row, had not run)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".snakemake", "work", "tables",
                                                            "reports", "provenance", "logs",
                                                            "qc"))
    deriv = dst / "bids" / "derivatives" / "trialprep"
    rows = sorted(deriv.glob("sub-*/ses-*/anat/*_desc-biomarkers_morph.tsv"))[:REDONE]
    logs = []
    for row in rows:
        shutil.rmtree(row.parent)
        sub, ses = row.parent.parent.parent.name, row.parent.parent.name
        logs.append(f"{sub}_{ses}.log")
    return logs


def test_sigkill_mid_run_then_rerun_gives_the_uninterrupted_table(small_study, tmp_path):
    out = tmp_path / "study"
    logs = _copy_study(small_study["out"], out)
    from tests.wheel import clean_env

    env = clean_env()  # the installed package (as the study was made), outside the checkout
    env["PATH"] = f"{small_study['python'].parent}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.Popen([str(small_study["python"]), "-m", "trialprep.cli", "run",
                             "--config", str(small_study["config"]), "--out", str(out),
                             "--cores", "2"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env, start_new_session=True,
                            cwd=tmp_path)
    log_dir = out / "logs" / "anat"
    deadline = time.monotonic() + 600
    while not any((log_dir / name).exists() for name in logs):
        assert proc.poll() is None, "the run ended before its anatomical jobs started"
        assert time.monotonic() < deadline
        time.sleep(0.5)
    time.sleep(8)  # the job has started (its log exists): in the middle of registration
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(1)
    assert not (out / "tables" / "biomarkers_harmonized.parquet").exists()

    rerun = trialprep_run(small_study["trial"], out, small_study["config"],
                          small_study["python"])
    assert "interrupted; resuming" in rerun.stdout
    first = pd.read_parquet(small_study["out"] / "tables" / "biomarkers_harmonized.parquet")
    resumed = pd.read_parquet(out / "tables" / "biomarkers_harmonized.parquet")
    pd.testing.assert_frame_equal(first, resumed)
    deriv = out / "bids" / "derivatives" / "trialprep"
    from trialprep.atomic import TMP_PREFIX

    assert not list(out.rglob(f"{TMP_PREFIX}*")) and not list(deriv.rglob("*.tmp"))
    for nifti in deriv.rglob("*.nii.gz"):  # nothing half-written is left behind
        nib.load(nifti).get_fdata(dtype="float32")
