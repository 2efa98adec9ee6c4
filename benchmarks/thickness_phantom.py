"""Cortical thickness (the pipeline's DiReCT step) on phantoms of known thickness.

A white-matter ball (radius 18 mm) in a grey-matter shell of known thickness in 3 mm of CSF,
sampled at 1, 1.5 and 2 mm voxels with partial-volume posteriors (each voxel's tissue
fractions from 5 x 5 x 5 sub-samples; labels = the largest fraction), then put through
``CorticalThickness`` with the pipeline's settings (``anat.thickness`` defaults). There is no
reference tool to run beside it here (FreeSurfer is not installed); the reference is the
phantom's true thickness. It shows how far DiReCT's value depends on the voxel grid, which
is why a trial locks its voxel size (intake's protocol check) and why thickness is not
computed on a coarser grid than the image's to save time.
    python -m benchmarks.thickness_phantom [--thickness 2.5,4.0] [--voxels 1,1.5,2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from benchmarks.results import write_section

WM_RADIUS_MM = 18.0
CSF_MM = 3.0
SUBSAMPLES = 5


def phantom(voxel: float, thickness: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels 0-3, GM fraction, WM fraction) of the shell phantom on a ``voxel`` mm grid."""
    extent = WM_RADIUS_MM + thickness + CSF_MM + 2 * voxel + 2
    n = int(np.ceil(2 * extent / voxel))
    centres = (np.arange(n) - (n - 1) / 2) * voxel
    offsets = (np.arange(SUBSAMPLES) - (SUBSAMPLES - 1) / 2) * voxel / SUBSAMPLES
    frac = np.zeros((4, n, n, n))  # background, CSF, GM, WM
    for dx in offsets:
        for dy in offsets:
            for dz in offsets:
                x, y, z = np.meshgrid(centres + dx, centres + dy, centres + dz, indexing="ij")
                r = np.sqrt(x**2 + y**2 + z**2)
                frac[3] += r < WM_RADIUS_MM
                frac[2] += (r >= WM_RADIUS_MM) & (r < WM_RADIUS_MM + thickness)
                frac[1] += (r >= WM_RADIUS_MM + thickness) & (
                    r < WM_RADIUS_MM + thickness + CSF_MM)
                frac[0] += r >= WM_RADIUS_MM + thickness + CSF_MM
    frac /= SUBSAMPLES**3
    return np.argmax(frac, axis=0).astype(np.uint8), frac[2], frac[3]


def measure(voxel: float, thickness: float, work: Path) -> tuple[float, float, float]:
    """Mean and median DiReCT thickness over the GM-labelled voxels, and wall time (s)."""
    from trialprep.workflows.anat.thickness import CorticalThickness

    labels, gm, wm = phantom(voxel, thickness)
    affine = np.diag([voxel, voxel, voxel, 1.0])
    work.mkdir(parents=True)
    paths = {}
    for name, data in (("dseg", labels), ("csf", (labels == 1).astype(np.float32)),
                       ("gm", gm.astype(np.float32)), ("wm", wm.astype(np.float32))):
        paths[name] = str(work / f"{name}.nii.gz")
        nib.save(nib.Nifti1Image(data, affine), paths[name])
    node = CorticalThickness(dseg=paths["dseg"],
                             probseg=[paths["csf"], paths["gm"], paths["wm"]])
    cwd = os.getcwd()
    os.chdir(work)
    try:
        t0 = time.perf_counter()
        result = node.run()
        wall = time.perf_counter() - t0
    finally:
        os.chdir(cwd)
    thick = np.asarray(nib.load(result.outputs.thickness).dataobj)[labels == 2]
    return float(thick.mean()), float(np.median(thick)), wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--thickness", default="2.5,4.0", help="true GM thickness (mm)")
    ap.add_argument("--voxels", default="1,1.5,2", help="voxel sizes (mm)")
    args = ap.parse_args()
    from trialprep.workflows.anat.thickness import CorticalThickness

    spec = CorticalThickness().inputs
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for true in (float(t) for t in args.thickness.split(",")):
            for voxel in (float(v) for v in args.voxels.split(",")):
                mean, median, wall = measure(voxel, true, Path(tmp) / f"{true}_{voxel}")
                rows.append(f"| {true:g} | {voxel:g} | {mean:.2f} | {median:.2f} | "
                            f"{mean / true:.2f} | {wall:.1f} |")
                print(rows[-1], flush=True)
    body = (
        f"Spherical shell phantoms (white-matter ball of radius {WM_RADIUS_MM:g} mm, grey "
        f"shell of the true thickness, {CSF_MM:g} mm of CSF), partial-volume posteriors from "
        f"{SUBSAMPLES}^3 sub-samples per voxel; the pipeline's `CorticalThickness` node with "
        f"its defaults ({spec.iterations} iterations, gradient step {spec.gradient_step}, "
        f"smoothing variance {spec.smoothing}, one ITK thread). Thickness is the mean and "
        "median over grey-labelled voxels; no reference tool is installed, the reference is "
        "the true thickness. DiReCT reads thin: the more so the coarser the grid, so values "
        "are comparable only between images of the same voxel size (which the trial's "
        "protocol locks) and a coarser thickness grid is no way to save time.\n\n"
        "| true thickness (mm) | voxel (mm) | DiReCT mean (mm) | median (mm) | mean / true "
        "| wall (s) |\n|---|---|---|---|---|---|\n" + "\n".join(rows))
    write_section("Cortical thickness on phantoms of known thickness", body)


if __name__ == "__main__":
    main()
