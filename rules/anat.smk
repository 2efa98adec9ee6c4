# Anatomical preprocessing: one job per session with a T1w, then the study's table.
from trialprep.workflows.anat.session import (
    biomarker_row_path,
    derivatives_root,
    find_t1w,
    sessions_with_t1w,
)

DERIV = derivatives_root(BIDS)
ANAT = STUDY["anat"]
# ITK threads, or DiReCT's slab processes when more (each single-threaded).
ANAT_THREADS = max(1 if ANAT["single_threaded"] else ANAT["threads"],
                   ANAT["thickness"]["processes"] if ANAT["thickness"]["enabled"]
                   and ANAT["thickness"]["method"] == "direct" else 1)


def anat_rows(wildcards):
    """Every session's biomarker row; known once intake has finished (a checkpoint)."""
    checkpoints.intake_complete.get()
    return [str(biomarker_row_path(BIDS, sub, ses)) for sub, ses in sessions_with_t1w(BIDS)]


def session_t1w(wildcards):
    checkpoints.intake_complete.get()
    return str(find_t1w(BIDS, wildcards.sub, wildcards.ses)[0])


rule anat_session:
    """N4, brain extraction, MNI152 registration, Atropos, cortical thickness, IQMs, figures."""
    input:
        t1w=session_t1w,
    output:
        row=DERIV / "sub-{sub}" / "ses-{ses}" / "anat" / "sub-{sub}_ses-{ses}_desc-biomarkers_morph.tsv",
    log:
        OUT / "logs" / "anat" / "sub-{sub}_ses-{ses}.log",
    wildcard_constraints:
        sub="[A-Za-z0-9]+",
        ses="[A-Za-z0-9]+",
    threads: ANAT_THREADS
    resources:
        mem_mb=ANAT["resources"]["mem_mb"],
        runtime=ANAT["resources"]["runtime"],
        # deepbet's U-Net on a GPU when the study asks for one (anat.gpu); the CPU is the
        # default and gives the same mask
        gpu=1 if ANAT["gpu"] else 0,
    shell:
        "trialprep anat {BIDS:q} --participant-label {wildcards.sub} "
        "--session-label {wildcards.ses} --config {STUDY_FILE:q} --threads {threads} "
        "--work {OUT}/work/anat > {log:q} 2>&1"


rule anat_collect:
    """All sessions' biomarker rows (failed sessions included, with their reason)."""
    input:
        anat_rows,
    output:
        DERIV / "biomarkers_morph.tsv",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "trialprep anat {BIDS:q} --config {STUDY_FILE:q} --collect {output:q}"
