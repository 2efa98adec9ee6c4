# QC gates, the harmonized biomarker table and the reports. Cheap steps: `trialprep run`
# removes the verdicts before each run, so new overrides and ratings are applied on the next run.
QC = BIDS / "derivatives" / "qc"
TABLES = OUT / "tables"
REPORTS = OUT / "reports"


rule qc_gates:
    """Verdicts per image (rules that fired), per site, scanner epochs and drift."""
    input:
        DERIV / "biomarkers_morph.tsv",
        INTAKE / "intake_complete.json",
    output:
        QC / "image_verdicts.tsv",
        QC / "site_verdicts.tsv",
        QC / "drift.tsv",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "trialprep qc gate {BIDS:q} --config {STUDY_FILE:q}"


rule biomarker_table:
    """Gate-passed sessions, ComBat across epochs: Parquet + TSV + data dictionary + model."""
    input:
        QC / "image_verdicts.tsv",
    output:
        TABLES / "biomarkers_harmonized.parquet",
        TABLES / "biomarkers_harmonized.tsv",
        TABLES / "biomarkers_unharmonized.parquet",
        TABLES / "excluded_sessions.tsv",
        TABLES / "harmonization_diagnostics.json",
    threads: 2
    resources:
        mem_mb=4000,
        runtime=20,
    shell:
        "trialprep table {BIDS:q} --config {STUDY_FILE:q} --out {TABLES:q}"


rule reports:
    """Self-contained HTML: dashboard, sites, sessions, harmonization."""
    input:
        QC / "image_verdicts.tsv",
        TABLES / "biomarkers_harmonized.parquet",
    output:
        REPORTS / "index.html",
        REPORTS / "harmonization.html",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    shell:
        "trialprep report {BIDS:q} --config {STUDY_FILE:q} --tables {TABLES:q} "
        "--out {REPORTS:q}"
