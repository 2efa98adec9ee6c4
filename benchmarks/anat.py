"""Anatomical preprocessing: wall time and peak memory per session at 2 mm and 1 mm.

One virtual-trial session per resolution (sizes ``tiny`` and ``tiny1mm``), taken through
intake, then ``trialprep anat`` as its own process on 2 cores (one job, ITK single-threaded
for reproducibility, as the pipeline runs it). Peak memory is the child's maximum RSS.
There is no reference tool to run beside it here (sMRIPrep needs FreeSurfer/ANTs binaries
that are not installed); the goals are absolute: a 1 mm session without thickness in at
most 6 minutes on 2 cores (issue 16), with the cost of the steps real heads need (deepbet,
the template-fit check, the CSF up to the skull) listed on their own.
    python -m benchmarks.anat [--thickness off|laplacian|direct] [--thickness-iterations N]
                              [--resolutions 2,1] [--threads N] [--thickness-processes N]

``--threads 2`` runs ITK on both cores (``anat.single_threaded: false``): faster, but
floating-point reductions then depend on the thread split, so reruns are not bit-identical.
``--thickness-processes 2`` runs DiReCT in two left-right slabs at once, one single-threaded
process each (``anat.thickness.processes``; reruns stay bit-identical).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.results import write_section
from trialprep.config import load_config
from trialprep.keys import StudyKey
from trialprep.virtual_trial.generate import generate_trial
from trialprep.workflows.intake.pipeline import run_intake


def one_session(root: Path, size: str, method: str, iterations: int, threads: int = 1,
                processes: int = 1) -> dict:
    trial = root / size
    generate_trial(trial, size, seed=3, workers=2)
    key = StudyKey((trial / "secrets" / "study.key").read_text().strip().encode())
    study = yaml.safe_load((trial / "study.yaml").read_text())
    study["anat"] = {"thickness": {"enabled": method != "off",
                                   "method": "laplacian" if method == "off" else method,
                                   "iterations": iterations, "processes": processes},
                     "single_threaded": threads == 1, "threads": threads}
    config = trial / "bench.yaml"
    config.write_text(yaml.safe_dump(study))
    bids = root / f"{size}-bids"
    run_intake(trial / "drops" / "boston", "boston", bids, load_config(config), key)
    (t1w,) = bids.glob("sub-*/ses-01/anat/*_T1w.nii.gz")
    sub = t1w.name.split("_")[0][4:]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "trialprep.cli", "anat", str(bids),
                           "--participant-label", sub, "--session-label", "01", "--config",
                           str(config), "--work", str(root / f"{size}-work")],
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode != 0 or "FAILED" in proc.stderr:
        raise RuntimeError(proc.stderr[-2000:])
    meta = next(bids.glob("derivatives/trialprep/sub-*/ses-01/anat/*_desc-biomarkers_morph.json"))
    nodes = json.loads(meta.read_text())["_provenance"]["NodeWallTimeSeconds"]
    return {"wall": wall, "peak_mb": max(peak_kb, before) / 1024, "nodes": nodes}


#: Steps real heads need (issue 16), reported on their own: brain extraction, its check, the
#: CSF up to the skull, and the local SyN round the hippocampi.
REAL_HEAD_STEPS = ("brain_extraction", "template_fit", "external_csf", "refine_hippocampi")
#: The thickness step (issue 19: at most 2 minutes at 1 mm): the map and its regional means.
THICKNESS_STEPS = ("thickness", "regional_thickness")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--thickness", choices=["off", "laplacian", "direct"], default="off")
    ap.add_argument("--thickness-iterations", type=int, default=45, help="DiReCT iterations")
    ap.add_argument("--resolutions", default="2,1")
    ap.add_argument("--threads", type=int, default=1, help="ITK threads (1: reproducible)")
    ap.add_argument("--thickness-processes", type=int, default=1,
                    help="DiReCT slabs run at once, one process each")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for res in args.resolutions.split(","):
            size = "tiny" if res == "2" else "tiny1mm"
            r = one_session(Path(tmp), size, args.thickness, args.thickness_iterations,
                            args.threads, args.thickness_processes)
            slow = sorted(r["nodes"].items(), key=lambda kv: -kv[1])[:4]
            new = ", ".join(f"{k} {r['nodes'].get(k, 0):.0f} s" for k in REAL_HEAD_STEPS)
            thick = sum(r["nodes"].get(k, 0) for k in THICKNESS_STEPS)
            rows.append(f"| {res} mm | {r['wall'] / 60:.1f} | {r['peak_mb']:.0f} | "
                        + ", ".join(f"{k} {v:.0f} s" for k, v in slow)
                        + f" | {new} | {thick:.0f} s |")
            print(rows[-1], flush=True)
    what = {"off": "thickness off", "laplacian": "Laplacian thickness",
            "direct": f"DiReCT thickness {args.thickness_iterations} iterations"}[args.thickness]
    body = (
        "One session per resolution (a virtual-trial head: scalp, skull, face, neck, a pose "
        "of its own), `trialprep anat` in its own process, "
        + ("ITK single-threaded (the reproducible setting)" if args.threads == 1 else
           f"ITK on {args.threads} threads (`single_threaded: false`; not bit-identical "
           "across reruns)")
        + f", {what}"
        + (f" in {args.thickness_processes} left-right slabs run at once (one process each)"
           if args.thickness_processes > 1 and args.thickness == "direct" else "") + ";"
        f" machine has {os.cpu_count()} cores. Goals: a 1 mm session without thickness in at "
        "most 6 minutes on 2 cores (issue 16); with Laplacian thickness, the thickness step "
        "at most 2 minutes and the whole 1 mm session at most 6 (issue 19).\n\n"
        "| T1w voxels | wall (min) | peak memory (MB) | slowest steps | steps for real heads "
        "| thickness step |\n|---|---|---|---|---|---|\n" + "\n".join(rows))
    title = f"Anatomical preprocessing ({what}"
    if args.thickness_processes > 1 and args.thickness == "direct":
        title += f", {args.thickness_processes} slabs"
    write_section(title + (")" if args.threads == 1 else f", {args.threads} threads)"), body)


if __name__ == "__main__":
    main()
