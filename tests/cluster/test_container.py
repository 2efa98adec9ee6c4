"""The pipeline image, built with podman from Debian's archive and the lock
(scripts/build-containers.sh), runs the intake rules (Snakemake inside the container) on a
virtual trial's site drops and produces the same BIDS dataset as the native run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from trialprep.provenance import lock_hash, sha256_file
from trialprep.virtual_trial.generate import generate_trial

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("container")]

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "containers" / "containers.conf"


@pytest.fixture(scope="module")
def image() -> str:
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "build-containers.sh")],
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout.strip().splitlines()[-1]


def intake_command(trial: Path, out: Path) -> list[str]:
    """The intake rules (rules/intake.smk: one job per site, then the checkpoint)."""
    return ["trialprep", "run", "--config", str(trial / "study.yaml"), "--out", str(out),
            "--cores", "2", "--", "intake_complete"]


def raw_files(bids: Path) -> dict[str, str]:
    return {str(p.relative_to(bids)): sha256_file(p) for p in sorted(bids.rglob("*"))
            if p.is_file() and "derivatives" not in p.parts}


def test_intake_in_the_container_equals_the_native_run(image, tmp_path):
    trial = tmp_path / "trial"
    generate_trial(trial, "tiny", seed=2, workers=2)
    native, boxed = tmp_path / "native" / "bids", tmp_path / "boxed" / "bids"
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run(intake_command(trial, native.parent), capture_output=True,
                          text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    boxed.parent.mkdir()
    digest = subprocess.run(["podman", "image", "inspect", "--format", "{{.Digest}}", image],
                            capture_output=True, text=True, check=True,
                            env={**os.environ, "CONTAINERS_CONF": str(CONF)}).stdout.strip()
    # The trial read-only, the output writable, both at the same paths as natively; no
    # network, as on a cluster node.
    proc = subprocess.run(
        ["podman", "run", "--rm", "--network=none",
         "-v", f"{trial}:{trial}:ro", "-v", f"{boxed.parent}:{boxed.parent}",
         "-e", f"TRIALPREP_CONTAINER_DIGEST={image}@{digest}", image,
         *intake_command(trial, boxed.parent)],
        capture_output=True, text=True, timeout=900,
        env={**os.environ, "CONTAINERS_CONF": str(CONF)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert raw_files(boxed) == raw_files(native)
    cols = ["source_id", "sha256", "outcome", "reason", "bids_files"]
    manifest = [pd.read_csv(b / "derivatives" / "intake" / "manifest.tsv", sep="\t",
                            dtype=str, keep_default_na=False)[cols]
                .sort_values("source_id", ignore_index=True) for b in (native, boxed)]
    pd.testing.assert_frame_equal(*manifest)
    desc = json.loads((boxed / "derivatives" / "intake" / "dataset_description.json")
                      .read_text())
    assert desc["GeneratedBy"][0]["Container"]["Tag"] == f"{image}@{digest}"
    assert desc["EnvironmentLockSHA256"] == lock_hash()  # the image holds the same lock
