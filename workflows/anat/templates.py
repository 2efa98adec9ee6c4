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
