"""W3C PROV export of a study run: every harmonized table row traced back through its
per-session biomarker row and its BIDS T1w to the (pseudonymized) DICOM series it came from.

Entities: ``series:`` (a de-identified source series), ``bids:`` (a converted file),
``row:`` (a session's biomarker row), ``table:`` (the harmonized table). Activities: one intake
per site, one anatomical run per session, the harmonization. Agents: the trialprep software
(version, container or "native" with the lock hash) and the run's configuration hash.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prov.model import ProvDocument

from trialprep.provenance import environment_record, sha256_file
from trialprep.tables import read_table, write_text

NAMESPACES = {
    "trialprep": "https://github.com/trialprep/trialprep#",
    "series": "urn:trialprep:series:",
    "bids": "bids::",
    "row": "urn:trialprep:row:",
    "table": "urn:trialprep:table:",
    "run": "urn:trialprep:activity:",
}


def build_prov(bids: Path, tables: Path) -> ProvDocument:
    """The PROV document of the study in ``bids`` and its harmonized table in ``tables``."""
    bids, tables = Path(bids), Path(tables)
    doc = ProvDocument()
    for prefix, uri in NAMESPACES.items():
        doc.add_namespace(prefix, uri)
    env = environment_record()
    software = doc.agent("trialprep:trialprep", {
        "prov:type": "prov:SoftwareAgent", "trialprep:version": env["trialprep"],
        "trialprep:container": str(env["container"] or "native"),
        "trialprep:lock_sha256": env["lock_sha256"]})

    series = read_table(bids / "derivatives" / "intake" / "series.tsv", as_text=True)
    t1w_series = {}
    for site, group in series.groupby("site"):
        intake = doc.activity(f"run:intake-{site}", other_attributes={
            "trialprep:site": site, "trialprep:run_id": group["run_id"].iloc[0]})
        doc.wasAssociatedWith(intake, software)
        for s in group.itertuples():
            ent = doc.entity(f"series:{s.series}", {
                "trialprep:site": site, "trialprep:series_type": s.series_type,
                "trialprep:manufacturer": s.manufacturer, "trialprep:model": s.model,
                "trialprep:software": s.software, "trialprep:n_files": int(s.n_files),
                "trialprep:verdict": s.verdict})
            doc.used(intake, ent)
            for f in filter(None, str(s.bids_files).split(";")):
                if not f.endswith(".nii.gz"):
                    continue
                out = doc.entity(f"bids:{f}", {"trialprep:sha256": _sha(bids / f)})
                doc.wasGeneratedBy(out, intake)
                doc.wasDerivedFrom(out, ent)
                if s.series_type == "T1w":
                    t1w_series[f] = out

    harmonized = tables / "biomarkers_harmonized.parquet"
    table = pd.read_parquet(harmonized)
    harmonize = doc.activity("run:harmonization", other_attributes={
        "trialprep:config_sha256": table["config_sha256"].iloc[0] if len(table) else ""})
    doc.wasAssociatedWith(harmonize, software)
    table_ent = doc.entity(f"table:{harmonized.name}", {
        "trialprep:sha256": sha256_file(harmonized), "trialprep:rows": len(table)})
    doc.wasGeneratedBy(table_ent, harmonize)
    for r in table.itertuples():
        key = f"{r.participant_id}_{r.session_id}"
        source = str(r.source).removeprefix("bids::")
        t1w = t1w_series.get(source) or doc.entity(f"bids:{source}")
        anat = doc.activity(f"run:anat-{key}", other_attributes={
            "trialprep:anat_config_sha256": r.anat_config_sha256,
            "trialprep:pipeline_version": r.pipeline_version})
        doc.wasAssociatedWith(anat, software)
        doc.used(anat, t1w)
        row = doc.entity(f"row:{key}", {"trialprep:qc_verdict": r.qc_verdict,
                                        "trialprep:epoch": r.epoch,
                                        "trialprep:source_sha256": r.source_sha256})
        doc.wasGeneratedBy(row, anat)
        doc.wasDerivedFrom(row, t1w)
        doc.used(harmonize, row)
        doc.wasDerivedFrom(table_ent, row)
    return doc


def _sha(path: Path) -> str:
    return sha256_file(path) if path.exists() else ""


def write_prov(bids: Path, tables: Path, out: Path) -> Path:
    """Write the PROV document as PROV-JSON (``.json``) or PROV-N (``.provn``)."""
    doc = build_prov(bids, tables)
    fmt = "provn" if Path(out).suffix == ".provn" else "json"
    return write_text(doc.serialize(format=fmt, indent=1) if fmt == "json"
                      else doc.serialize(format=fmt), out)


def add_parser(sub) -> None:
    p = sub.add_parser("prov", help="export the study's W3C PROV graph (series -> table rows)")
    p.add_argument("bids", type=Path, help="the study's BIDS dataset")
    p.add_argument("--tables", type=Path, required=True, help="folder of the harmonized table")
    p.add_argument("--out", type=Path, required=True, help="PROV-JSON (.json) or PROV-N (.provn)")
    p.set_defaults(func=run)


def run(args) -> int:
    print(f"PROV: {write_prov(args.bids, args.tables, args.out)}")
    return 0
