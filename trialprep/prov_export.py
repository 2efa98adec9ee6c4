"""W3C PROV export of a study run: every harmonized table row traced back through each
stage's per-session biomarker row and its BIDS image to the (pseudonymized) DICOM series it
came from.

Entities: ``series:`` (a de-identified source series), ``bids:`` (a converted file),
``row:`` (a stage's session row), ``table:`` (the harmonized table). Activities: one intake
per site, one run per stage and session, the harmonization. Agents: the trialprep software
(version, container or "native" with the lock hash) and the run's configuration hash.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from prov.model import ProvDocument

from trialprep.layout import StudyLayout
from trialprep.provenance import environment_record, sha256_file
from trialprep.stages import registered_stages
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

    series = read_table(StudyLayout.from_bids(bids).series, as_text=True)
    converted = {}
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
                converted[f] = out

    harmonized = tables / "biomarkers_harmonized.parquet"
    table = pd.read_parquet(harmonized)
    harmonize = doc.activity("run:harmonization", other_attributes={
        "trialprep:config_sha256": table["config_sha256"].iloc[0] if len(table) else ""})
    doc.wasAssociatedWith(harmonize, software)
    table_ent = doc.entity(f"table:{harmonized.name}", {
        "trialprep:sha256": sha256_file(harmonized), "trialprep:rows": len(table)})
    doc.wasGeneratedBy(table_ent, harmonize)
    for stage in registered_stages():
        cols = [stage.meta_column(c) for c in ("source", "config_sha256", "qc_verdict",
                                               "source_sha256")]
        if not set(cols) <= set(table.columns):
            continue
        for r in table[["participant_id", "session_id", "epoch", "pipeline_version",
                        *cols]].itertuples(index=False):
            source_uri, config_sha, verdict, source_sha = r[4:]
            if not isinstance(source_uri, str) or not source_uri:
                continue  # this stage's image of the session was left out
            key = f"{r.participant_id}_{r.session_id}"
            source = source_uri.removeprefix("bids::")
            image = converted.get(source) or doc.entity(f"bids:{source}")
            run = doc.activity(f"run:{stage.name}-{key}", other_attributes={
                "trialprep:stage": stage.name, "trialprep:config_sha256": config_sha,
                "trialprep:pipeline_version": r.pipeline_version})
            doc.wasAssociatedWith(run, software)
            doc.used(run, image)
            row = doc.entity(f"row:{stage.name}-{key}", {
                "trialprep:qc_verdict": str(verdict), "trialprep:epoch": str(r.epoch),
                "trialprep:source_sha256": source_sha})
            doc.wasGeneratedBy(row, run)
            doc.wasDerivedFrom(row, image)
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
