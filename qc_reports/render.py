"""Self-contained HTML reports for QC staff: per session, per site, the study dashboard and
the harmonization before/after report. Every style, script and figure is inline, so a
report opens offline from a file and loads nothing from elsewhere."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd

from trialprep import __version__
from trialprep.layout import StudyLayout
from trialprep.provenance import utc_now
from trialprep.stages import Stage, get_stage, registered_stages
from trialprep.tables import read_table, write_text

TEMPLATES = Path(__file__).parent / "templates"
#: Biomarkers drawn per stage in the harmonization report (the first of each stage's).
SHOWN_PER_STAGE = 6


def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                              autoescape=jinja2.select_autoescape(["html"]),
                              undefined=jinja2.StrictUndefined)


def _inline_svg(text: str) -> str:
    """An SVG document as inline markup: no XML prolog or DOCTYPE, nothing external."""
    text = re.sub(r"<\?xml[^>]*\?>", "", text)
    text = re.sub(r"<!DOCTYPE[^>]*>", "", text, flags=re.S)
    if re.search(r"(?:href|src)=\"(?!data:|#)", text):
        raise ValueError("figure refers to an external resource")
    return text.strip()


def _fig_svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    return _inline_svg(buf.getvalue())


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _write(path: Path, html: str) -> Path:
    return write_text(html, path)


def _common(title: str, subtitle: str, config_hash: str, depth: int) -> dict:
    up = "../" * depth
    return {"title": title, "subtitle": subtitle, "version": __version__,
            "config_hash": config_hash, "generated": utc_now(),
            "nav": [("Dashboard", f"{up}index.html"),
                    ("Harmonization", f"{up}harmonization.html")]}


def _fmt(v) -> str:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return ""
    return f"{x:.4g}" if np.isfinite(x) else ""


def session_page(image: str) -> str:
    return image.replace(".nii.gz", ".html")


def render_session(env, row: pd.Series, images: pd.DataFrame, layout: StudyLayout,
                   out: Path, config_hash: str) -> Path:
    """One image's page: verdict, the stage's figures, its IQMs against site and study."""
    sub, ses = row["participant_id"], row["session_id"]
    stage = get_stage(row["stage"])
    figs = []
    for desc, title in stage.figures:
        f = stage.figure_path(layout, sub.removeprefix("sub-"), ses.removeprefix("ses-"), desc)
        if f.exists():
            figs.append((title, _inline_svg(f.read_text())))
    ok = images[(images["stage"] == stage.name) & (images["status"] == "ok")]
    site_rows = ok[ok["site"] == row["site"]]
    iqms = []
    for name, desc in stage.iqm_descriptions.items():
        if name in row and _fmt(row[name]):
            iqms.append({"name": name, "value": _fmt(row[name]), "description": desc,
                         "site": _fmt(pd.to_numeric(site_rows[name]).median()),
                         "study": _fmt(pd.to_numeric(ok[name]).median())})
    ctx = _common(f"{sub} {ses} {stage.input_suffix}",
                  f"site {row['site']} - {stage.name} session QC report", config_hash, 1)
    ctx.update(s=row.fillna("").to_dict(), figures=figs, iqms=iqms,
               rate_images=[{"image": row["image"], "verdict": row["verdict"]}],
               rating_scope=f"{sub}_{ses}")
    return _write(out / "sessions" / session_page(row["image"]),
                  env.get_template("session.html").render(**ctx))


def _iqm_figure(images: pd.DataFrame, site: str, stage: Stage) -> str | None:
    """The stage's site-figure IQMs of every site, this site's highlighted."""
    plt = _plt()
    ok = images[(images["status"] == "ok") & (images["stage"] == stage.name)]
    metrics = [m for m in stage.site_figure_metrics if m in ok]
    if not metrics or ok.empty:
        return None
    sites = sorted(ok["site"].unique())
    fig, axes = plt.subplots(1, len(metrics), figsize=(2.0 * len(metrics), 2.6))
    for ax, m in zip(np.atleast_1d(axes), metrics, strict=False):
        for i, s in enumerate(sites):
            v = pd.to_numeric(ok.loc[ok["site"] == s, m], errors="coerce").dropna()
            jitter = np.linspace(-0.15, 0.15, len(v)) if len(v) > 1 else np.zeros(len(v))
            ax.scatter(i + jitter, v, s=12, color="#d9480f" if s == site else "#8a94a6",
                       zorder=3)
        ax.set_xticks(range(len(sites)), sites, rotation=60, fontsize=7)
        ax.set_title(m, fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    return _fig_svg(fig)


def render_site(env, site: str, images: pd.DataFrame, sites: pd.DataFrame,
                drift: pd.DataFrame, completeness: pd.DataFrame, out: Path,
                config_hash: str) -> Path:
    g = images[images["site"] == site]
    s = sites[sites["site"] == site].iloc[0].to_dict()
    epochs = []
    for epoch, e in g.groupby("epoch", sort=False):
        epochs.append({"epoch": epoch, "manufacturer": e["manufacturer"].iloc[0],
                       "model": e["model"].iloc[0],
                       "software_version": e["software_version"].iloc[0], "n": len(e),
                       "first": str(e["acq_time"].min())[:10],
                       "last": str(e["acq_time"].max())[:10]})
    epochs.sort(key=lambda e: e["first"])
    comp = completeness[(completeness["site"] == site)
                        & ~completeness["status"].isin(["received"])]
    deviations = [{"subject": r["subject"], "visit": r["visit"], "status": r["status"],
                   "detail": r["detail"]} for _, r in comp.iterrows()]
    imgs = [{**r.fillna("").to_dict(), "page": session_page(r["image"])}
            for _, r in g.iterrows()]
    ctx = _common(f"Site {site}", "site QC report", config_hash, 1)
    ctx.update(site=s, epochs=epochs, drift=drift[drift["site"] == site].to_dict("records"),
               deviations=deviations, images=imgs,
               iqm_figures=[(st.name, fig) for st in registered_stages()
                            if (fig := _iqm_figure(images, site, st)) is not None],
               rate_images=[{"image": r["image"], "verdict": r["verdict"]} for r in imgs],
               rating_scope=f"site-{site}")
    return _write(out / "sites" / f"{site}.html", env.get_template("site.html").render(**ctx))


def render_dashboard(env, images, sites, completeness, excluded, n_table, out,
                     config_hash) -> Path:
    visits = sorted(completeness["visit"].unique())
    matrix = []
    for site in sorted(completeness["site"].unique()):
        cells = []
        for v in visits:
            c = completeness[(completeness["site"] == site) & (completeness["visit"] == v)]
            counts = c["status"].value_counts().to_dict()
            worst = next((k for k in ("missing", "overdue", "deviant", "pending",
                                      "unscheduled", "received") if counts.get(k)), "pending")
            text = " / ".join(f"{n} {k}" for k, n in sorted(counts.items()))
            cells.append({"css": f"cell-{worst}", "text": text})
        matrix.append((site, cells))
    problems = completeness[~completeness["status"].isin(["received"])].to_dict("records")
    ctx = _common("Study dashboard", "completeness, deviations and QC pass rates",
                  config_hash, 0)
    ctx["nav"] = [("Harmonization", "harmonization.html")] + [
        (f"Site {s}", f"sites/{s}.html") for s in sorted(sites["site"])]
    ctx.update(n_sessions=len(completeness), n_images=len(images),
               pass_rate=float(images["verdict"].isin(["pass", "warn"]).mean()),
               n_table=n_table, visits=visits, matrix=matrix, problems=problems,
               sites=sites.to_dict("records"), excluded=excluded.fillna("").to_dict("records"))
    return _write(out / "index.html", env.get_template("dashboard.html").render(**ctx))


def _distribution_figure(raw: pd.DataFrame, harm: pd.DataFrame, feature: str) -> str:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(8, 2.6), sharey=False)
    epochs = sorted(raw["epoch"].unique())
    for ax, df, title in ((axes[0], raw, "before"), (axes[1], harm, "after")):
        data = [pd.to_numeric(df.loc[df["epoch"] == e, feature]).to_numpy() for e in epochs]
        ax.boxplot(data, showfliers=True)
        ax.set_xticks(range(1, len(epochs) + 1), epochs, rotation=60, fontsize=7)
        ax.set_title(f"{feature} {title}", fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    return _fig_svg(fig)


def _shown_biomarkers(features: list[str], dictionary: dict) -> list[str]:
    """The first few biomarkers of each stage (by the dictionary's Stage)."""
    shown, per_stage = [], {}
    for f in features:
        stage = dictionary.get(f, {}).get("Stage", "")
        if per_stage.get(stage, 0) < SHOWN_PER_STAGE:
            shown.append(f)
            per_stage[stage] = per_stage.get(stage, 0) + 1
    return shown


def render_harmonization(env, tables: Path, config, out: Path) -> Path:
    diag = json.loads((tables / "harmonization_diagnostics.json").read_text())
    if diag.get("harmonized") is False:
        ctx = _common("Harmonization", "not harmonized", config.hash, 0)
        ctx.update(not_harmonized=diag["reason"])
        return _write(out / "harmonization.html",
                      env.get_template("harmonization.html").render(**ctx))
    raw = read_table(tables / "biomarkers_unharmonized.parquet")
    harm = read_table(tables / "biomarkers_harmonized.parquet")
    feats = diag["features"]
    dict_path = tables / "biomarkers_harmonized.json"
    dictionary = json.loads(dict_path.read_text()) if dict_path.exists() else {}
    shown = _shown_biomarkers([f for f in feats if f in raw], dictionary)
    effects = []
    before, after = diag.get("covariate_effects_before", {}), diag.get(
        "covariate_effects_after", {})
    se_before = diag.get("covariate_effects_before_se", {})
    se_after = diag.get("covariate_effects_after_se", {})
    for term in before:
        for f in shown:
            b, a = before[term].get(f), after.get(term, {}).get(f)
            if b is None or a is None:
                continue
            se_b = se_before.get(term, {}).get(f)
            # the change judged against the estimate's own uncertainty, not in percent
            # (an effect of -13 +- 2495 that moves to -920 has not changed "by -7000 %")
            change = (a - b) / se_b if se_b else None
            effects.append({"feature": f, "term": term, "before": b, "after": a,
                            "se_before": se_b, "se_after": se_after.get(term, {}).get(f),
                            "change": change})
    counts = raw["epoch"].value_counts()
    ctx = _common("Harmonization", f"{diag.get('model', 'ComBat')} across scanner epochs: "
                  "before and after", config.hash, 0)
    ctx.update(auc_before=diag["site_auc_before"], auc_after=diag["site_auc_after"],
               auc_note=diag.get("site_auc_note", ""),
               auc_in_sample=diag.get("site_auc_after_in_sample"),
               n_features=len(feats),
               batches=sorted(counts.index), covariates=config["harmonization"]["covariates"],
               distribution_figures=[(f, _distribution_figure(raw, harm, f)) for f in shown],
               effects=effects)
    return _write(out / "harmonization.html", env.get_template("harmonization.html").render(
        **ctx))


def render_reports(bids: Path, tables: Path, config, out: Path) -> dict[str, list[Path]]:
    """Write every report under ``out``: index.html, harmonization.html, sites/, sessions/."""
    bids, tables, out = Path(bids), Path(tables), Path(out)
    layout = StudyLayout.from_bids(bids)
    env = _env()
    images = read_table(layout.image_verdicts, as_text=True)
    for col in ("rules_fired", "decided_by", "decision_reason", "reason", "deviations"):
        images[col] = images[col].replace("n/a", "")
    sites = read_table(layout.site_verdicts)
    sites["flags"] = sites["flags"].fillna("")
    drift = read_table(layout.drift)
    completeness = read_table(layout.completeness, as_text=True)
    excluded = read_table(tables / "excluded_sessions.tsv", as_text=True)
    harmonized = tables / "biomarkers_harmonized.parquet"
    n_table = len(read_table(harmonized)) if harmonized.exists() else 0
    written = {"sessions": [], "sites": []}
    for _, row in images.iterrows():
        written["sessions"].append(render_session(env, row, images, layout, out, config.hash))
    for site in sorted(sites["site"]):
        written["sites"].append(render_site(env, site, images, sites, drift, completeness,
                                            out, config.hash))
    written["dashboard"] = [render_dashboard(env, images, sites, completeness, excluded,
                                             n_table, out, config.hash)]
    written["harmonization"] = [render_harmonization(env, tables, config, out)]
    return written
