# The study's W3C PROV graph: DICOM series -> BIDS T1w -> session row -> harmonized table.


rule provenance:
    """PROV-JSON of the run, rebuilt whenever the harmonized table changes."""
    input:
        TABLES / "biomarkers_harmonized.parquet",
        INTAKE / "intake_complete.json",
    output:
        OUT / "provenance" / "study.prov.json",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "trialprep prov {BIDS:q} --tables {TABLES:q} --out {output:q}"
