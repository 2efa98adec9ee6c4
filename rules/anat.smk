# Anatomical preprocessing: one job per session with a T1w (the anatomical stage's contract:
# workflows/anat/stage.py).
from trialprep.workflows.anat.stage import ANAT_STAGE

ANAT = STUDY["anat"]
# ITK threads, or DiReCT's slab processes when more (each single-threaded).
ANAT_THREADS = max(1 if ANAT["single_threaded"] else ANAT["threads"],
                   ANAT["thickness"]["processes"] if ANAT["thickness"]["enabled"]
                   and ANAT["thickness"]["method"] == "direct" else 1)


def anat_rows(wildcards):
    """Every session's biomarker row; known once intake has finished (a checkpoint)."""
    checkpoints.intake_complete.get()
    return [str(ANAT_STAGE.row_path(LAYOUT, sub, ses)) for sub, ses in
            ANAT_STAGE.sessions(LAYOUT)]


def session_t1w(wildcards):
    checkpoints.intake_complete.get()
    return str(ANAT_STAGE.find_inputs(LAYOUT, wildcards.sub, wildcards.ses)[0])


STAGE_ROWS.append(anat_rows)


rule anat_session:
    """N4, brain extraction, MNI152 registration, Atropos, cortical thickness, IQMs, figures."""
    input:
        t1w=session_t1w,
    output:
        row=ANAT_STAGE.row_path(LAYOUT, "{sub}", "{ses}"),
    log:
        LAYOUT.logs("anat") / "sub-{sub}_ses-{ses}.log",
    params:
        work=LAYOUT.work("anat"),
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
        "--work {params.work:q} > {log:q} 2>&1"
