"""`trialprep table BIDS_DIR --out DIR`: the harmonized, QC-gated biomarker table."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("table", help="build the harmonized biomarker table (gate-passed only)")
    p.add_argument("bids", type=Path)
    p.add_argument("--config", type=Path, default=None)
    p.add_argument("--out", type=Path, required=True, help="folder for the tables and model")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from trialprep.audit import study_audit
    from trialprep.config import load_config
    from trialprep.harmonization.table import build_table

    config = load_config(args.config)
    res = build_table(args.bids, config, args.out)
    d = res["diagnostics"]
    study_audit(args.bids).append("table", {
        "rows": len(res["table"]), "excluded": len(res["excluded"]),
        "features": len(res["features"]), "config_sha256": config.hash,
        "site_auc_before": d["site_auc_before"], "site_auc_after": d["site_auc_after"]})
    if not res.get("harmonized", True):
        print(f"not harmonized: {d['reason']}; {len(res['raw'])} session(s) in the "
              f"unharmonized table, {len(res['excluded'])} excluded")
        print(f"tables: {args.out}")
        return 0
    if d["site_auc_after"] is not None:
        auc = (f"site-prediction AUC {d['site_auc_before']:.2f} -> {d['site_auc_after']:.2f} "
               "(ComBat fitted within the folds)")
    else:
        auc = f"site-prediction AUC not computed ({d['site_auc_note']})"
    print(f"{len(res['table'])} session(s) harmonized over {len(res['features'])} biomarkers, "
          f"{len(res['excluded'])} excluded; {auc}")
    print(f"tables: {args.out}")
    return 0
