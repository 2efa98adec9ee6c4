# The study's W3C PROV graph: DICOM series -> BIDS image -> stage session row -> table.


rule provenance:
    """PROV-JSON of the run, rebuilt whenever the harmonized table changes."""
    input:
        LAYOUT.tables / "biomarkers_harmonized.parquet",
        LAYOUT.intake_complete,
    output:
        LAYOUT.provenance,
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "trialprep prov {BIDS:q} --tables {LAYOUT.tables:q} --out {output:q}"
