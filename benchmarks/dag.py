"""Snakemake DAG build for large studies: `trialprep run --dry-run` (config validation, BIDS
indexing of every session's T1w after the intake checkpoint, one anatomical job per session
plus QC, table, reports and provenance) against pybids indexing the same dataset
(``BIDSLayout(validate=False)``), side by side, in one run.

The synthetic study: a virtual-trial configuration whose intake is marked complete, and a BIDS
dataset of N sessions (one empty T1w NIfTI and a one-field JSON sidecar each; a dry run never
opens the images). Goal (issue 6): 10 000 sessions in at most 60 s.
    python -m benchmarks.dag [--sessions 1000,10000] [--no-pybids]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.results import write_section
from trialprep.virtual_trial.generate import generate_trial


def synthetic_study(root: Path, sessions: int) -> tuple[Path, Path]:
    """(study.yaml, out) with ``sessions`` T1w sessions and the intake checkpoint done."""
    trial = root / "trial"
    if not trial.exists():
        generate_trial(trial, "tiny", seed=1, workers=2)
    out = root / f"study-{sessions}"
    bids = out / "bids"
    for i in range(sessions):
        sub, ses = f"S{i // 2:05d}", f"{i % 2 + 1:02d}"
        anat = bids / f"sub-{sub}" / f"ses-{ses}" / "anat"
        anat.mkdir(parents=True, exist_ok=True)
        (anat / f"sub-{sub}_ses-{ses}_T1w.nii.gz").touch()
        (anat / f"sub-{sub}_ses-{ses}_T1w.json").write_text('{"RepetitionTime": 2.3}')
    (bids / "dataset_description.json").write_text(json.dumps(
        {"Name": "synthetic", "BIDSVersion": "1.10.0"}))
    intake = bids / "derivatives" / "intake"
    (intake / "sites").mkdir(parents=True, exist_ok=True)
    for site in sorted(p.name for p in (trial / "drops").iterdir()):
        (intake / "sites" / f"{site}.json").write_text("{}")
    (intake / "intake_complete.json").write_text("{}")
    return trial / "study.yaml", out


def time_dry_run(study: Path, out: Path) -> float:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "trialprep.cli", "run", "--config", str(study),
                           "--out", str(out), "--cores", "2", "--dry-run"],
                          capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    if "anat_session" not in proc.stdout:
        raise RuntimeError("the dry run planned no anatomical jobs")
    return wall


def time_pybids(bids: Path) -> float | None:
    code = ("import sys, time; from bids import BIDSLayout; t=time.perf_counter(); "
            "BIDSLayout(sys.argv[1], validate=False); print(time.perf_counter()-t)")
    proc = subprocess.run([sys.executable, "-c", code, str(bids)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        return None
    return float(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", default="1000,10000")
    ap.add_argument("--no-pybids", action="store_true")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(s) for s in args.sessions.split(",")):
            study, out = synthetic_study(Path(tmp), n)
            ours = time_dry_run(study, out)
            ref = None if args.no_pybids else time_pybids(out / "bids")
            ratio = f"**{ref / ours:.1f}x**" if ref else "n/a"
            ref_txt = f"{ref:.1f}" if ref else "not run"
            rows.append(f"| {n} | {ours:.1f} | {ref_txt} | {ratio} |")
            print(rows[-1], flush=True)
    body = ("Synthetic BIDS dataset (one empty T1w NIfTI + a one-field sidecar per session, "
            "intake marked complete). trialprep: wall time of `trialprep run --dry-run` "
            "(process start, config validation, DAG with one anatomical job per session plus "
            "the study-level jobs). pybids 0.22: `BIDSLayout(validate=False)` indexing the "
            "same folder, the step a pybids-based DAG would start with. Ratio = pybids / "
            "trialprep. Goal (issue 6): 10 000 sessions in at most 60 s.\n\n"
            "| sessions | trialprep dry run (s) | pybids index (s) | ratio |\n"
            "|---|---|---|---|\n"
            + "\n".join(rows))
    write_section("Snakemake DAG build", body)


if __name__ == "__main__":
    main()
