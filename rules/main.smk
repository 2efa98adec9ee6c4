# trialprep: the study DAG. Run through `trialprep run` (it passes study= and out=):
#   snakemake -s rules/main.smk --config study=STUDY.yaml out=OUT_DIR --cores N
# Every path comes from the study layout (trialprep/layout.py) and the stages' contract
# (trialprep/stages.py); per-session outputs are declared with the BIDS path helper and
# Snakemake wildcards.
from pathlib import Path

from trialprep.config import load_config
from trialprep.layout import StudyLayout

STUDY_FILE = Path(config["study"]).resolve()
STUDY = load_config(STUDY_FILE)
LAYOUT = StudyLayout(Path(config["out"]).resolve())
BIDS = LAYOUT.bids
SITES = sorted(STUDY["sites"])
#: Each stage's rule file adds the function listing its sessions' rows (the gates' input).
STAGE_ROWS = []


# Every job runs in the pipeline image when Snakemake is given `--sdm apptainer` and the
# study names one (containers/trialprep.def); otherwise in the current environment.
container: STUDY["container"]


# Bookkeeping steps run where Snakemake runs, not as cluster jobs.
localrules:
    all,
    intake_complete,
    qc_decisions,


include: "intake.smk"
include: "anat.smk"
include: "qc.smk"
include: "provenance.smk"


rule all:
    input:
        LAYOUT.intake_complete,
        LAYOUT.tables / "biomarkers_harmonized.parquet",
        LAYOUT.reports / "index.html",
        LAYOUT.provenance,
