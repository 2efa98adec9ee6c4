"""trialprep's Snakemake rules as package data (``trialprep.rules``; entry: main.smk)."""
