"""`trialprep harmonize`: the ComBat family on a table, a saved model applied to new rows,
and federated ComBat (per-site summaries, combined into one model).

Only what the chosen options use is imported: scikit-learn for ``--diagnostics``, SciPy for
``--longitudinal``; pyarrow reads and writes Parquet tables as one feature matrix.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("harmonize", help="ComBat-harmonize a feature table",
                       description="Harmonize the numeric feature columns of TABLE across "
                       "batches (ComBat family); other columns are carried through.")
    p.add_argument("table", type=Path, nargs="?", help="input table (.tsv, .csv, .parquet)")
    p.add_argument("--batch", help="column holding the batch label")
    p.add_argument("--covariates", default="", help="comma-separated protected covariates")
    p.add_argument("--categorical", default="", help="which covariates are categorical")
    p.add_argument("--smooth", default="", help="continuous covariates fitted with a spline")
    p.add_argument("--features", default="",
                   help="comma-separated feature columns (default: every other numeric column)")
    p.add_argument("--nonparametric", action="store_true", help="non-parametric EB prior")
    p.add_argument("--no-eb", action="store_true", help="no empirical Bayes shrinkage")
    p.add_argument("--mean-only", action="store_true", help="adjust location only")
    p.add_argument("--ref-batch", default=None, help="batch left unchanged (reference)")
    g = p.add_argument_group("CovBat (covariance harmonization after ComBat)")
    g.add_argument("--covbat", action="store_true", help="also harmonize the covariance")
    g.add_argument("--covbat-variance", type=float, default=0.95,
                   help="share of the residual variance whose components are harmonized")
    g.add_argument("--covbat-components", type=int, default=None,
                   help="harmonize this many leading components instead")
    g = p.add_argument_group("longitudinal ComBat (repeated visits, linear mixed model)")
    g.add_argument("--longitudinal", action="store_true",
                   help="longitudinal ComBat (Beer et al. 2020): a random effect per subject")
    g.add_argument("--subject", default=None, help="column identifying the subject")
    g.add_argument("--time", default=None, help="column of the visit time (e.g. years)")
    g.add_argument("--formula", default=None,
                   help="fixed effects, e.g. 'time + age + sex + dx*time' (default: time + "
                        "the covariates)")
    g.add_argument("--random-slope", action="store_true", help="random slope in time too")
    g.add_argument("--sigma", choices=("reml", "msr"), default="reml",
                   help="residual SD: REML estimate or mean squared residual")
    g = p.add_argument_group("federated ComBat (no data leave a site)")
    g.add_argument("--site-summary", type=Path, default=None, metavar="JSON",
                   help="write this site's aggregates (no rows, no identifiers) and stop")
    g.add_argument("--combine", type=Path, nargs="+", default=None, metavar="JSON",
                   help="build the model from site summaries (writes --model-out)")
    p.add_argument("--apply", type=Path, default=None, metavar="MODEL",
                   help="apply a saved model instead of fitting")
    p.add_argument("--model-out", type=Path, default=None,
                   help="where to save the fitted model (default: OUT with .combat.npz)")
    p.add_argument("--diagnostics", type=Path, default=None,
                   help="write before/after diagnostics (JSON)")
    p.add_argument("--out", type=Path, default=None, help="output table")
    p.set_defaults(func=run)


def _split(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def _settings(args: argparse.Namespace) -> dict:
    return dict(smooth=_split(args.smooth), parametric=not args.nonparametric,
                eb_=not args.no_eb, mean_only=args.mean_only, ref_batch=args.ref_batch)


def run(args: argparse.Namespace) -> int:
    from trialprep.harmonization.design import HarmonizationError

    if args.combine:
        return _combine(args)
    if args.table is None or args.batch is None:
        raise HarmonizationError("give TABLE and --batch (or --combine SUMMARY...)")
    if args.site_summary is None and args.out is None:
        raise HarmonizationError("give --out (or --site-summary)")
    if args.longitudinal and not (args.subject and args.time):
        raise HarmonizationError("--longitudinal needs --subject and --time")
    if args.apply:
        return _apply(args)
    from trialprep.harmonization.frames import read_feature_table

    covs = _split(args.covariates)
    meta_cols = [args.batch, *covs] + ([args.subject, args.time] if args.longitudinal else [])
    table = read_feature_table(args.table, meta_cols, _split(args.features) or None)
    if args.batch not in table.others.columns:
        raise HarmonizationError(f"batch column {args.batch!r} not in {args.table}")
    missing = [c for c in meta_cols if c not in table.others.columns]
    if missing:
        raise HarmonizationError(f"column(s) {missing} not in {args.table}")
    batch = table.others[args.batch].astype(str).to_numpy()
    cov = table.others[covs] if covs else None
    X = table.frame(table.features)
    cat = _split(args.categorical)
    if args.site_summary:
        from trialprep.harmonization.federated import site_summary

        summary = site_summary(X, batch, cov, cat)
        args.site_summary.write_text(json.dumps(summary))
        print(f"site summary of {len(batch)} row(s), {len(summary['batches'])} batch(es): "
              f"{args.site_summary}")
        return 0
    if args.longitudinal:
        from trialprep.harmonization import longitudinal

        formula = args.formula or " + ".join([args.time, *covs])
        H, model = longitudinal.harmonize(
            X, batch, table.others, subject=args.subject, time=args.time, formula=formula,
            categorical=cat, random_slope=args.random_slope, sigma=args.sigma)
        settings = None
    elif args.covbat:
        from trialprep.harmonization import covbat

        settings = _settings(args)
        H, model = covbat.harmonize(X, batch, cov, categorical=cat,
                                    variance=args.covbat_variance,
                                    n_components=args.covbat_components, **settings)
        settings = None  # the in-fold AUC refits plain ComBat: not this model
    else:
        from trialprep.harmonization import core

        settings = _settings(args)
        H, model = core.harmonize(X, batch, cov, categorical=cat, **settings)
    (model.combat if args.covbat else model).provenance["source_table"] = str(args.table)
    model_out = args.model_out or args.out.with_suffix(".combat.npz")
    model.save(model_out)
    print(f"model: {model_out}")
    return _write(args, table, H, batch, cov, cat, settings)


def _write(args, table, H, batch, cov, cat, settings) -> int:
    from trialprep.harmonization.frames import write_feature_table

    write_feature_table(table, H, args.out)
    print(f"harmonized {len(table.features)} feature(s) x {len(batch)} row(s) -> {args.out}")
    if args.diagnostics:
        from trialprep.harmonization import diagnostics

        d = diagnostics.summarize(table.matrix, H, batch, cov, cat, table.features,
                                  settings=settings)
        args.diagnostics.write_text(json.dumps(d, indent=1))
        auc = ("not computed" if d["site_auc_after"] is None else
               f"{d['site_auc_before']:.3f} -> {d['site_auc_after']:.3f}")
        print(f"site AUC {auc}; diagnostics: {args.diagnostics}")
    return 0


def _apply(args: argparse.Namespace) -> int:
    from trialprep.harmonization.frames import read_feature_table
    from trialprep.harmonization.model import load_any

    model = load_any(args.apply)
    covs = list(getattr(model, "covariates", []))
    table = read_feature_table(args.table, [args.batch, *covs], list(model.features))
    batch = table.others[args.batch].astype(str).to_numpy()
    X = table.frame(table.features)
    kind = type(model).__name__
    if kind == "LongitudinalModel":
        from trialprep.harmonization import longitudinal

        H = longitudinal.apply(model, X, batch, table.others,
                               subject=model.settings["subject"])
        cov = None
    elif kind == "CovBatModel":
        from trialprep.harmonization import covbat

        cov = table.others[covs] if covs else None
        H = covbat.apply(model, X, batch, cov)
    else:
        from trialprep.harmonization import core

        cov = table.others[covs] if covs else None
        H = core.apply(model, X, batch, cov)
    return _write(args, table, H, batch, cov, [t.name for t in getattr(
        model, "terms", []) if t.kind == "categorical"], None)


def _combine(args: argparse.Namespace) -> int:
    from trialprep.harmonization.design import HarmonizationError
    from trialprep.harmonization.federated import combine

    if args.model_out is None:
        raise HarmonizationError("--combine needs --model-out")
    summaries = [json.loads(p.read_text()) for p in args.combine]
    model = combine(summaries, ref_batch=args.ref_batch, parametric=not args.nonparametric,
                    eb_=not args.no_eb, mean_only=args.mean_only)
    model.save(args.model_out)
    print(f"model from {len(summaries)} site summaries ({len(model.batches)} batches, "
          f"{len(model.features)} features): {args.model_out}")
    return 0
