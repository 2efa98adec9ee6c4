"""Voxel-wise ComBat: harmonize a stack of NIfTI maps within a mask."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from trialprep.harmonization import core
from trialprep.harmonization.design import HarmonizationError
from trialprep.harmonization.model import ComBatModel


def load_masked(images: Sequence[str | Path],
                mask: str | Path) -> tuple[np.ndarray, nib.Nifti1Image]:
    """Stack the in-mask voxels of each image into a samples x voxels matrix."""
    mask_img = nib.load(str(mask))
    m = np.asarray(mask_img.dataobj) > 0
    if not m.any():
        raise HarmonizationError(f"mask {mask} is empty")
    rows = []
    for path in images:
        img = nib.load(str(path))
        if img.shape[:3] != m.shape or not np.allclose(img.affine, mask_img.affine, atol=1e-4):
            raise HarmonizationError(f"{path} is not on the mask's grid {m.shape}")
        rows.append(np.asarray(img.dataobj, dtype=np.float64)[m])
    return np.vstack(rows), mask_img


def harmonize_images(images: Sequence[str | Path], mask: str | Path, batch, out_dir: str | Path,
                     covariates=None, model: ComBatModel | None = None,
                     **fit_kwargs) -> tuple[list[Path], ComBatModel]:
    """Fit (or use ``model``) and write one harmonized map per input into ``out_dir``.

    Voxels outside the mask are zero in the outputs. Returns (output paths, model).
    """
    Y, mask_img = load_masked(images, mask)
    if model is None:
        model = core.fit(Y, batch, covariates, **fit_kwargs)
    H = core.apply(model, Y, batch, covariates)
    m = np.asarray(mask_img.dataobj) > 0
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = []
    for path, row in zip(images, H, strict=True):
        vol = np.zeros(m.shape, dtype=np.float32)
        vol[m] = row
        name = Path(path).name.replace(".nii.gz", "").replace(".nii", "")
        dest = out_dir / f"{name}_desc-combat.nii.gz"
        nib.save(nib.Nifti1Image(vol, mask_img.affine), str(dest))
        outputs.append(dest)
    return outputs, model
