"""The anatomical stage's declaration (the stage contract, trialprep/stages.py): its input
(the session's T1w), its derivative dataset (``derivatives/trialprep``) and what its sessions
yield. Light on purpose: the gates, table and reports import it without Nipype or ANTs."""

from __future__ import annotations

from trialprep.stages import Stage

#: Every metric written per image, with its direction (for QC gates and reports).
IQM_DESCRIPTIONS = {
    "snr_csf": "SNR in CSF: median / (sd * sqrt(n / (n - 1))); higher is better",
    "snr_gm": "SNR in GM; higher is better",
    "snr_wm": "SNR in WM; higher is better",
    "snr_total": "mean of the three tissue SNRs; higher is better",
    "snrd_wm": "Dietrich SNR in WM: median / (sigma_air * sqrt(2 / (4 - pi))); higher is "
               "better",
    "cnr": "contrast-to-noise ratio |mu_WM - mu_GM| / sqrt(s_air^2 + s_GM^2 + s_WM^2); higher "
           "is better",
    "cjv": "coefficient of joint variation (MAD_WM + MAD_GM) / |mu_WM - mu_GM|; lower is "
           "better",
    "efc": "entropy focus criterion, 0 (all energy in one voxel) .. 1 (uniform); lower is "
           "better",
    "fber": "foreground-background energy ratio median|F|^2 / median|B|^2; higher is better",
    "wm2max": "median WM intensity / 99.95th percentile of the image; close to 1 is better",
    "inu_range": "bias-field range in the brain, P95 - P5; closer to 0 is better",
    "inu_med": "bias-field median in the brain; close to 1 is better",
    "reg_cost": "final Mattes mutual information with the template (more negative is "
                "better)",
}


#: The anatomical stage: N4, brain extraction, MNI152 registration, Atropos, volumes and
#: cortical thickness, one job per session with a T1w. Its biomarker columns keep their
#: historic names in the study table (no prefix; each ends in its unit, ``_mm3`` or
#: ``_thickness_mm``); every other stage prefixes its own.
ANAT_STAGE = Stage(
    name="anat", modality="anat", input_suffix="T1w", derivatives="trialprep",
    row_suffix="morph", column_prefix="",
    description="anatomical preprocessing: N4, brain extraction, MNI152 registration, "
                "Atropos, volumes, cortical thickness, IQMs",
    iqm_descriptions=IQM_DESCRIPTIONS,
    figures=(("brainmask", "Brain mask on the whole head"),
             ("seg", "Brain mask and tissue boundaries"),
             ("registration", "Template edges on the registered T1w")),
    site_figure_metrics=("snr_wm", "cnr", "cjv", "efc", "fber", "wm2max", "inu_range",
                         "reg_correlation"),
    packages=("antspyx", "nipype", "nibabel", "nilearn", "deepbet"),
    # BIDS 1.10 has no rule for transforms (BEP014), cortical-thickness maps, per-session
    # tables or IQM records, nor for the figures folder (fMRIPrep's convention).
    bidsignore=("*_xfm.*", "*_thickness.*", "*_desc-biomarkers_morph.*",
                "*_desc-iqms_T1w.json", "/sub-*/figures"),
)
