# Intake: one job per site drop, then one that checks the whole dataset.


def site_source(wildcards):
    return str(STUDY.resolve(STUDY["sites"][wildcards.site]["source"]))


rule intake_site:
    """De-identify, check and convert one site's DICOM drop into the study's BIDS dataset."""
    input:
        drop=site_source,
    output:
        summary=LAYOUT.intake_sites / "{site}.json",
    log:
        LAYOUT.logs("intake") / "{site}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    shell:
        "trialprep intake {input.drop:q} --site {wildcards.site} --bids {BIDS:q} "
        "--config {STUDY_FILE:q} --summary {output.summary:q} > {log:q} 2>&1"


checkpoint intake_complete:
    """All sites taken in: the dataset's completeness summary."""
    input:
        expand(LAYOUT.intake_sites / "{site}.json", site=SITES),
    output:
        LAYOUT.intake_complete,
    params:
        bids=BIDS,
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "trialprep status --bids {params.bids:q} --json {output:q}"
