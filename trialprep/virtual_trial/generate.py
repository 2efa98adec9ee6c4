"""`trialprep demo`: a virtual multi-site trial with known ground truth.

Per-site DICOM drops are built from real anatomy (nilearn's MNI152 tissue maps) with
per-subject variation and per-site scanner effects. Planted on purpose: a scanner software
upgrade between visits at one site (its scanner effect changes with it), one off-protocol
series, one missing visit, one corrupt file, a stray non-DICOM file, and realistic PHI in
patient, physician, institution, date and private tags. The ground truth goes to `truth/`,
which the pipeline never reads.
"""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import yaml

from trialprep import __version__
from trialprep.keys import StudyKey
from trialprep.virtual_trial import anatomy, phi
from trialprep.virtual_trial.dicom_writer import corrupt_copy, make_grid, write_series
from trialprep.virtual_trial.head import sample_head
from trialprep.virtual_trial.scanners import VENDORS, Site, spread_effects, synthesize_t1


@dataclass(frozen=True)
class Size:
    subjects_per_site: int
    voxel_mm: float
    template_resolution: int


SIZES = {
    "tiny": Size(subjects_per_site=1, voxel_mm=2.0, template_resolution=1),  # unit tests
    "tiny1mm": Size(subjects_per_site=1, voxel_mm=1.0, template_resolution=1),  # benchmarks
    "small": Size(subjects_per_site=3, voxel_mm=2.0, template_resolution=1),
    "default": Size(subjects_per_site=5, voxel_mm=2.0, template_resolution=1),
    "full": Size(subjects_per_site=20, voxel_mm=1.0, template_resolution=1),
}
#: Centre of the field of view on the template's head (RAS mm): the technologist centres
#: the field of view on the head, within a few millimetres.
FOV_CENTRE_MM = (0.0, -14.0, 4.0)
#: Planted biology (relative hippocampal volume).
AGE_SLOPE_PER_YEAR = -0.006  # -0.6 % per year of age
DX_EFFECT = -0.15  # AD vs CN: -15 %
AD_EXTRA_ANNUAL = -0.03  # extra atrophy per year in AD
VISIT_DAYS = (0, 365)
AGE_RANGE = (55.0, 85.0)  # at baseline
#: Planted cortical thinning (relative thickness of the grey-matter ribbon): with age
#: everywhere (from the youngest age, where the ribbon is the template's), and in AD in the
#: medial and inferior temporal cortex (the AD signature regions).
THICKNESS_AGE_SLOPE = -0.005  # -0.5 % per year of age above THICKNESS_REFERENCE_AGE
THICKNESS_REFERENCE_AGE = 55.0
THICKNESS_DX_EFFECT = -0.12  # AD vs CN in THICKNESS_DX_REGIONS: -12 %
THICKNESS_DX_REGIONS = ("Temporal_Pole", "Middle_Temporal_Gyrus_anterior",
                        "Middle_Temporal_Gyrus_posterior", "Inferior_Temporal_Gyrus_anterior",
                        "Inferior_Temporal_Gyrus_posterior", "Parahippocampal_Gyrus",
                        "Temporal_Fusiform_Cortex")


def _sites(rng: np.random.Generator) -> list[Site]:
    sites = [
        Site("boston", VENDORS["siemens_prisma"], "Beacon Hill Imaging Center", "Boston",
             [["syngo MR XA30"]]),
        Site("lyon", VENDORS["ge_mr750"], "Centre d'Imagerie Rhone", "Lyon",
             [["27", "LX", "MR Software release:DV26.0_R03_1831.b"]]),
        Site("munich", VENDORS["philips_ingenia"], "Isar Radiologie Klinikum", "Munich",
             [["5.4.1", "5.4.1.0"]]),
        Site("osaka", VENDORS["siemens_skyra"], "Naniwa Brain Imaging Institute", "Osaka",
             [["syngo MR E11"], ["syngo MR XA50"]], upgrade_after_visit=0),
    ]
    effects = spread_effects(rng, sum(len(site.software) for site in sites))
    for site in sites:
        site.effects = [effects.pop() for _ in site.software]
    return sites


def generate_trial(out: Path, size: str = "small", seed: int = 0,
                   workers: int = 2, noise_seed: int = 0, pose_seed: int | None = None) -> dict:
    """Write the trial under ``out``: drops/, clinical/, truth/, secrets/, study.yaml.
    ``noise_seed`` draws another realization of the scanners' noise for the same trial (the
    same people, anatomy, poses and scanners); ``pose_seed`` places every head anew in the
    scanner (another position, rotation and field of view for the same anatomy)."""
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r} (choose from {sorted(SIZES)})")
    cfg = SIZES[size]
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty")
    rng = np.random.default_rng(seed)
    sites = _sites(rng)
    # The trial is reproducible from its seed, pseudonyms included (synthetic people: there is
    # no one to protect). The key comes from its own stream, so the draws above do not move.
    key_secret = np.random.default_rng([seed, 0x6B6579]).bytes(32).hex()
    key = StudyKey(key_secret.encode())

    jobs, participants = [], []
    for s_idx, site in enumerate(sites):
        # Enrolment stratified by site, as in a randomised trial: every site recruits across
        # the whole age range (one participant per age stratum), diagnoses alternating in
        # age order, so that neither age nor diagnosis is confounded with site.
        for n in range(cfg.subjects_per_site):
            person = phi.person(rng)
            pid = phi.patient_id(rng, site.name)
            age0 = float(AGE_RANGE[0] + (AGE_RANGE[1] - AGE_RANGE[0]) *
                         (n + rng.uniform(0, 1)) / cfg.subjects_per_site)
            dx = "AD" if n % 2 == 1 else "CN"
            # MNI space is larger than a head (its brain mask holds 1.9 L): scaled to adult
            # intracranial volumes of about 1.25-1.9 L
            head_scale = float(rng.uniform(0.82, 0.94))
            base_day = date(2024, 1, 15) + timedelta(days=int(rng.integers(0, 240)))
            person["birth_date"] = base_day - timedelta(days=int(age0 * 365.25))
            subject_seed = int(rng.integers(0, 2**31))
            participants.append({
                "site": site.name, "patient_id": pid, "subject": key.label("subject",
                                                                           site.name, pid),
                "age": round(age0, 2), "dx": dx, "sex": person["sex"],
                "head_scale": round(head_scale, 4)})
            for v, day in enumerate(VISIT_DAYS):
                jitter = int(rng.integers(-20, 21)) if v else 0
                study_date = base_day + timedelta(days=day + jitter)
                jobs.append(dict(site_index=s_idx, subj_index=n, visit=v, pid=pid,
                                 person=person, age=age0 + (day + jitter) / 365.25, dx=dx,
                                 head_scale=head_scale, study_date=study_date,
                                 years=(day + jitter) / 365.25, subject_seed=subject_seed,
                                 seed=int(rng.integers(0, 2**31))))
    # Planted events.
    missing = next(j for j in jobs if sites[j["site_index"]].name == "munich" and j["visit"] == 1)
    jobs.remove(missing)
    off_protocol = next(j for j in jobs if sites[j["site_index"]].name == "lyon" and j["visit"]
                        == 1)
    off_protocol["slice_thickness"] = 3.0

    out.mkdir(parents=True, exist_ok=True)
    for sub in ("drops", "truth/labels", "clinical", "secrets"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    (out / "secrets" / "study.key").write_text(key_secret + "\n")
    (out / "secrets" / "study.key").chmod(0o600)
    anatomy.load_template(cfg.template_resolution)  # warm the cache before forking
    for job in jobs:
        job["noise_seed"] = noise_seed
        job["pose_seed"] = pose_seed
    args = [(job, sites, cfg, out, i) for i, job in enumerate(jobs)]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            sessions = list(pool.map(_session, args))
    else:
        sessions = [_session(a) for a in args]

    corrupt_src = sorted((out / "drops" / "boston").rglob("*.dcm"))[5]
    corrupt_dest = corrupt_src.with_name("IM_TRANSFER_0001.dcm")
    corrupt_copy(corrupt_src, corrupt_dest)
    (out / "drops" / "munich" / "Transfer notes.txt").write_text(
        "Shipment prepared by the site coordinator. Please confirm receipt.\n")

    truth = {
        "generator": f"trialprep {__version__}", "size": size, "seed": seed,
        "planted": {
            "age_slope_relative_per_year": AGE_SLOPE_PER_YEAR, "dx_effect_relative": DX_EFFECT,
            "ad_extra_atrophy_per_year": AD_EXTRA_ANNUAL,
            "cortical_thinning": {
                "age_slope_relative_per_year": THICKNESS_AGE_SLOPE,
                "reference_age": THICKNESS_REFERENCE_AGE,
                "dx_effect_relative": THICKNESS_DX_EFFECT,
                "dx_regions": sorted(n for n in anatomy.cortical_region_names().values()
                                     if any(r in n for r in THICKNESS_DX_REGIONS)),
                "per_region": "truth/cortical_thickness.tsv"},
            "software_upgrade": {"site": "osaka", "between_visits": ["01", "02"]},
            "off_protocol": {"site": "lyon", "patient_id": off_protocol["pid"], "visit": "02",
                             "deviation": "SliceThickness 3.0 mm (protocol 2.0 mm)"},
            "missing_visit": {"site": "munich", "patient_id": missing["pid"], "visit": "02"},
            "corrupt_file": corrupt_dest.relative_to(out).as_posix(),
            "non_dicom_file": "drops/munich/Transfer notes.txt",
        },
        "scanner_effects": {s.name: [{"software": sw, **e.to_dict()}
                                     for sw, e in zip(s.software, s.effects, strict=True)]
                            for s in sites},
    }
    (out / "truth" / "truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    pd.DataFrame(participants).to_csv(out / "truth" / "participants.tsv", sep="\t", index=False)
    pd.DataFrame(sessions).to_csv(out / "truth" / "sessions.tsv", sep="\t", index=False)
    _write_thickness_truth(out / "truth" / "cortical_thickness.tsv", sessions,
                           cfg.template_resolution)
    pd.DataFrame([{"site": p["site"], "patient_id": p["patient_id"], "dx": p["dx"]}
                  for p in participants]).to_csv(out / "clinical" / "clinical.tsv", sep="\t",
                                                 index=False)
    study = {
        "study": {"name": "trialprep virtual trial", "id": "VT"},
        "key": {"env": "TRIALPREP_STUDY_KEY", "file": "secrets/study.key"},
        "sites": {s.name: {"source": f"drops/{s.name}"} for s in sites},
        "clinical": "clinical/clinical.tsv",
    }
    (out / "study.yaml").write_text(yaml.safe_dump(study, sort_keys=False))
    return truth


def _write_thickness_truth(path: Path, sessions: list[dict], resolution: int) -> None:
    """Per session and cortical region: the planted factor and the thickness it gives the
    template's ribbon (its mean Laplacian thickness in the region, on its own 1 mm grid)."""
    template = anatomy.load_template(resolution)
    region = template.maps["cortex_region"].astype(int)
    thick = template.maps["cortex_thickness"]
    inside = (thick > 0) & (template.maps["gm"] >= 0.5) & (region > 0)
    sums = np.bincount(region[inside], weights=thick[inside], minlength=anatomy.HO_CORTICAL + 1)
    counts = np.bincount(region[inside], minlength=anatomy.HO_CORTICAL + 1)
    names = anatomy.cortical_region_names()
    rows = []
    for s in sessions:
        factors = thickness_factors(s["age"], s["dx"])
        for idx, name in names.items():
            base = sums[idx] / counts[idx] if counts[idx] else float("nan")
            rows.append({"site": s["site"], "patient_id": s["patient_id"], "visit": s["visit"],
                         "region": name, "factor": round(float(factors[idx]), 5),
                         "template_thickness_mm": round(float(base), 4),
                         "thickness_mm": round(float(base * factors[idx]), 4)})
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)


def _hippo_factor(age: float, dx: str, years_from_baseline: float) -> float:
    f = 1 + AGE_SLOPE_PER_YEAR * (age - 70)
    if dx == "AD":
        f *= (1 + DX_EFFECT) * (1 + AD_EXTRA_ANNUAL * years_from_baseline)
    return f


def thickness_factors(age: float, dx: str) -> np.ndarray:
    """Planted relative cortical thickness per Harvard-Oxford cortical region (index 0:
    outside the cortex, 1)."""
    factors = np.ones(anatomy.HO_CORTICAL + 1, np.float32)
    factors[1:] = 1 + THICKNESS_AGE_SLOPE * max(age - THICKNESS_REFERENCE_AGE, 0.0)
    if dx == "AD":
        for idx, name in anatomy.cortical_region_names().items():
            if any(r in name for r in THICKNESS_DX_REGIONS):
                factors[idx] *= 1 + THICKNESS_DX_EFFECT
    return factors


def dominant_tissue(tissue: np.ndarray) -> np.ndarray:
    """Truth labels (1 CSF, 2 GM, 3 WM, 0 none) from tissue fractions (3, ...): each voxel's
    largest component, counting what is not brain tissue (skull, scalp, face, air) as one
    more.
    The CSF around the brain (subarachnoid space) is CSF where it fills most of a voxel."""
    other = np.clip(1.0 - tissue.sum(axis=0), 0.0, 1.0)
    return np.concatenate([other[None], tissue]).argmax(axis=0).astype(np.uint8)


def _session(arg) -> dict:
    job, sites, cfg, out, index = arg
    site = sites[job["site_index"]]
    rng = np.random.default_rng(job["seed"])
    subj_rng = np.random.default_rng(job["subject_seed"])  # same anatomy at every visit
    epoch = 1 if site.upgrade_after_visit is not None and job["visit"] > \
        site.upgrade_after_visit else 0
    effect, software = site.effects[epoch], site.software[epoch]
    hf = _hippo_factor(job["age"], job["dx"], job["years"])
    lr = subj_rng.uniform(0.96, 1.04)
    anat = anatomy.random_subject(
        subj_rng, hippo_factor=(hf * lr, hf / lr),
        ventricle_factor=1 + 0.02 * (job["age"] - 55), head_scale=job["head_scale"])
    pose_rng = rng
    if job.get("pose_seed") is not None:  # the same head, placed anew in the scanner
        pose_rng = np.random.default_rng([job["pose_seed"], job["seed"], 0x706F7365])
        anat.rotation_deg, anat.translation_mm = anatomy.random_pose(pose_rng)
    anat.rotation_deg = anat.rotation_deg + np.clip(pose_rng.normal(0, 2, 3), -3, 3)  # visit
    anat.translation_mm = anat.translation_mm + np.clip(pose_rng.normal(0, 3, 3), -5, 5)
    factors = thickness_factors(job["age"], job["dx"])
    template = anatomy.thin_cortex(anatomy.load_template(cfg.template_resolution), factors)
    thickness = job.get("slice_thickness", cfg.voxel_mm)
    voxel = (cfg.voxel_mm, cfg.voxel_mm, thickness)
    centre = anat.from_template(np.asarray([FOV_CENTRE_MM])) + pose_rng.normal(0, 4, 3)
    grid = make_grid(site.vendor.orientation, site.vendor.fov_mm, voxel,
                     centre_ras=tuple(centre.ravel()))
    points = grid.points_ras()
    at_template = anat.to_template(points, template)
    maps = anatomy.sample_maps(at_template, template)
    head = sample_head(at_template, template.head)
    # the CSF round the brain up to the skull and down the spinal canal is the head's
    tissues = dict(head, csf=maps["csf"] + head["csf_rim"] + head["canal"], gm=maps["gm"],
                   wm=maps["wm"])
    noise = np.random.default_rng([job["seed"], job.get("noise_seed", 0), 0x6E6F69])
    image = synthesize_t1(tissues, points, effect, noise, shape=grid.shape,
                          voxel_mm=voxel).reshape(grid.shape)

    visit_id = f"{job['visit'] + 1:02d}"
    header = phi.dicom_header(job["person"], job["pid"], site, job["study_date"], visit_id,
                              rng)
    folder = out / "drops" / site.name / phi.folder_name(job["person"], job["study_date"])
    write_series(image, grid, folder / "T1", site.vendor, header, software, series_number=3,
                 uid_seed=f"{site.name}-{job['pid']}-{visit_id}")

    # Ground truth on the acquisition grid: the intracranial tissues (the CSF up to the skull,
    # above the foramen magnum).
    shape = grid.shape
    csf = maps["csf"] + head["csf_rim"]
    tissue = np.stack([csf, maps["gm"], maps["wm"]]).reshape(3, *shape)
    dseg = dominant_tissue(tissue)
    hippo = np.zeros(shape, np.uint8)
    hippo[maps["hippo_l"].reshape(shape) > 0.5] = 1
    hippo[maps["hippo_r"].reshape(shape) > 0.5] = 2
    stem = f"{site.name}_{job['pid']}_{visit_id}"
    nib.save(nib.Nifti1Image(dseg, grid.affine_ras), out / "truth" / "labels" /
             f"{stem}_dseg.nii.gz")
    nib.save(nib.Nifti1Image(hippo, grid.affine_ras), out / "truth" / "labels" /
             f"{stem}_hippocampus.nii.gz")
    vox_ml = float(np.prod(voxel))
    return {
        "site": site.name, "patient_id": job["pid"], "visit": visit_id, "epoch": epoch,
        "software": "\\".join(software), "age": round(job["age"], 3), "dx": job["dx"],
        "study_date": job["study_date"].isoformat(),
        "hippocampus_left_mm3": round(float(maps["hippo_l"].sum()) * vox_ml, 1),
        "hippocampus_right_mm3": round(float(maps["hippo_r"].sum()) * vox_ml, 1),
        # Tissue volumes, the CSF around the brain included; TIV is their sum.
        "gm_mm3": round(float(maps["gm"].sum()) * vox_ml, 1),
        "wm_mm3": round(float(maps["wm"].sum()) * vox_ml, 1),
        "csf_mm3": round(float(csf.sum()) * vox_ml, 1),
        "tiv_mm3": round(float(tissue.sum()) * vox_ml, 1),
        "off_protocol": bool("slice_thickness" in job),
        # where the head lay: rotation about x, y, z (degrees) and shift (mm, RAS)
        "pose_rotation_deg": " ".join(f"{v:.2f}" for v in anat.rotation_deg),
        "pose_translation_mm": " ".join(f"{v:.2f}" for v in anat.translation_mm),
        "labels": f"truth/labels/{stem}_dseg.nii.gz",
        "thickness_factor": round(float(factors[1]), 5),  # every region's age factor
        "thickness_factor_dx_regions": round(float(factors.min()), 5),
    }
