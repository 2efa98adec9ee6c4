# QC gates, the harmonized biomarker table and the reports. Cheap steps, re-run when what
# they read changes: every stage's session rows, people's decisions (decisions.tsv,
# rewritten by `trialprep qc override` and `trialprep qc import`), the gate rules or the
# harmonization settings (params).
from trialprep.provenance import sha256_json

TABLES = LAYOUT.tables


def stage_rows(wildcards):
    return [row for rows in STAGE_ROWS for row in rows(wildcards)]


rule qc_decisions:
    """People's latest QC decisions (overrides, report ratings) from the audit trail."""
    output:
        LAYOUT.decisions,
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "trialprep qc decisions {BIDS:q}"


rule qc_gates:
    """Verdicts per image (rules that fired, per modality), per site, scanner epochs, drift."""
    input:
        stage_rows,
        LAYOUT.intake_complete,
        LAYOUT.decisions,
    output:
        LAYOUT.image_verdicts,
        LAYOUT.site_verdicts,
        LAYOUT.drift,
    params:
        gates=sha256_json(STUDY.qc),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "trialprep qc gate {BIDS:q} --config {STUDY_FILE:q}"


rule biomarker_table:
    """Gate-passed sessions, ComBat across epochs: Parquet + TSV + data dictionary + model."""
    input:
        LAYOUT.image_verdicts,
    output:
        TABLES / "biomarkers_harmonized.parquet",
        TABLES / "biomarkers_harmonized.tsv",
        TABLES / "biomarkers_unharmonized.parquet",
        TABLES / "excluded_sessions.tsv",
        TABLES / "harmonization_diagnostics.json",
    params:
        harmonization=sha256_json(STUDY["harmonization"]),
    threads: 2
    resources:
        mem_mb=4000,
        runtime=20,
    shell:
        "trialprep table {BIDS:q} --config {STUDY_FILE:q} --out {TABLES:q}"


rule reports:
    """Self-contained HTML: dashboard, sites, sessions, harmonization."""
    input:
        LAYOUT.image_verdicts,
        TABLES / "biomarkers_harmonized.parquet",
    output:
        LAYOUT.reports / "index.html",
        LAYOUT.reports / "harmonization.html",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    shell:
        "trialprep report {BIDS:q} --config {STUDY_FILE:q} --tables {TABLES:q} "
        "--out {LAYOUT.reports:q}"
