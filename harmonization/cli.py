"""`trialprep harmonize`: ComBat on a table, or a saved model applied to new rows."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from trialprep.harmonization import core, diagnostics
from trialprep.harmonization.design import HarmonizationError
from trialprep.harmonization.model import ComBatModel
from trialprep.tables import read_table, write_table


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("harmonize", help="ComBat-harmonize a feature table",
                       description="Harmonize the numeric feature columns of TABLE across "
                       "batches (ComBat family); other columns are carried through.")
    p.add_argument("table", type=Path, help="input table (.tsv, .csv, .parquet)")
    p.add_argument("--batch", required=True, help="column holding the batch label")
    p.add_argument("--covariates", default="", help="comma-separated protected covariates")
    p.add_argument("--categorical", default="", help="which covariates are categorical")
    p.add_argument("--smooth", default="", help="continuous covariates fitted with a spline")
    p.add_argument("--features", default="",
                   help="comma-separated feature columns (default: every other numeric column)")
    p.add_argument("--nonparametric", action="store_true", help="non-parametric EB prior")
    p.add_argument("--no-eb", action="store_true", help="no empirical Bayes shrinkage")
    p.add_argument("--mean-only", action="store_true", help="adjust location only")
    p.add_argument("--ref-batch", default=None, help="batch left unchanged (reference)")
    p.add_argument("--apply", type=Path, default=None, metavar="MODEL",
                   help="apply a saved model instead of fitting")
    p.add_argument("--model-out", type=Path, default=None,
                   help="where to save the fitted model (default: OUT with .combat.npz)")
    p.add_argument("--diagnostics", type=Path, default=None,
                   help="write before/after diagnostics (JSON)")
    p.add_argument("--out", type=Path, required=True, help="output table")
    p.set_defaults(func=run)


def _split(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def feature_columns(df: pd.DataFrame, exclude: list[str]) -> list[str]:
    return [c for c in df.columns if c not in exclude and pd.api.types.is_numeric_dtype(df[c])
            and not pd.api.types.is_bool_dtype(df[c])]


def run(args: argparse.Namespace) -> int:
    df = read_table(args.table)
    if args.batch not in df.columns:
        raise HarmonizationError(f"batch column {args.batch!r} not in {args.table}")
    covs = _split(args.covariates)
    cat, smooth = _split(args.categorical), _split(args.smooth)
    if args.apply:
        model = ComBatModel.load(args.apply)
        covs = model.covariates
        features = model.features
    else:
        features = _split(args.features) or feature_columns(df, [args.batch, *covs])
    missing = [c for c in [*covs, *features] if c not in df.columns]
    if missing:
        raise HarmonizationError(f"column(s) {missing} not in {args.table}")
    if not features:
        raise HarmonizationError(f"no numeric feature columns in {args.table}")
    X = df[features]
    cov = df[covs] if covs else None
    batch = df[args.batch].astype(str).to_numpy()
    settings = None  # fitted elsewhere (--apply): plain cross-validation is not leaky
    if args.apply is None:
        settings = dict(smooth=smooth, parametric=not args.nonparametric, eb_=not args.no_eb,
                        mean_only=args.mean_only, ref_batch=args.ref_batch)
        model = core.fit(X, batch, cov, categorical=cat, **settings)
        model.provenance["source_table"] = str(args.table)
        model_out = args.model_out or args.out.with_suffix(".combat.npz")
        model.save(model_out)
        print(f"model: {model_out}")
    H = core.apply(model, X, batch, cov)
    out = df.copy()
    out[features] = H
    write_table(out, args.out)
    print(f"harmonized {len(features)} feature(s) x {len(df)} row(s) -> {args.out}")
    if args.diagnostics:
        d = diagnostics.summarize(X.to_numpy(float), H, batch, cov, cat, features,
                                  settings=settings)
        args.diagnostics.write_text(json.dumps(d, indent=1))
        auc = ("not computed" if d["site_auc_after"] is None else
               f"{d['site_auc_before']:.3f} -> {d['site_auc_after']:.3f}")
        print(f"site AUC {auc}; diagnostics: {args.diagnostics}")
    return 0
