# trialprep's study DAG lives in rules/main.smk (shipped inside the package as
# trialprep.rules); this file lets `snakemake -s Snakefile` work from a checkout.
include: "rules/main.smk"
