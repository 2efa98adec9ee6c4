# trialprep: the study DAG. Run through `trialprep run` (it passes study= and out=).
#   snakemake -s Snakefile --config study=STUDY.yaml out=OUT_DIR --cores N
from pathlib import Path

from trialprep.config import load_config

STUDY_FILE = Path(config["study"]).resolve()
STUDY = load_config(STUDY_FILE)
OUT = Path(config["out"]).resolve()
BIDS = OUT / "bids"
INTAKE = BIDS / "derivatives" / "intake"
SITES = sorted(STUDY["sites"])


# Every job runs in the pipeline image when Snakemake is given `--sdm apptainer` and the
# study names one (containers/trialprep.def); otherwise in the current environment.
container: STUDY["container"]


# Bookkeeping steps run where Snakemake runs, not as cluster jobs.
localrules:
    all,
    intake_complete,
    qc_decisions,


include: "rules/intake.smk"
include: "rules/anat.smk"
include: "rules/qc.smk"
include: "rules/provenance.smk"


rule all:
    input:
        INTAKE / "intake_complete.json",
        DERIV / "biomarkers_morph.tsv",
        TABLES / "biomarkers_harmonized.parquet",
        REPORTS / "index.html",
        OUT / "provenance" / "study.prov.json",
