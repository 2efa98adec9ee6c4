"""`trialprep run`: the whole study through Snakemake (local cores or a cluster profile)."""

from __future__ import annotations

import argparse
import fcntl
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from trialprep.paths import snakefile


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the pipeline for a study (Snakemake)",
                       description="Run every stage for every site and session of a study.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", type=Path, help="the study YAML")
    src.add_argument("--trial", type=Path, help="a virtual trial folder (uses its study.yaml)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    p.add_argument("--profile", default="local",
                   help="Snakemake profile: a name in config/profiles (local, slurm, "
                   "slurm-local) or a profile folder (default: local)")
    p.add_argument("--dry-run", action="store_true", help="show the jobs, run nothing")
    p.add_argument("snakemake_args", nargs=argparse.REMAINDER,
                   help="after --: extra Snakemake arguments")
    p.set_defaults(func=run)


def profile_dir(profile: str | Path) -> Path:
    """A profile by name (``config/profiles/NAME``) or by path; it must hold config.yaml."""
    from trialprep.paths import config_dir

    path = Path(profile)
    if not path.is_dir():
        path = config_dir() / "profiles" / str(profile)
    if not (path / "config.yaml").is_file():
        known = sorted(p.name for p in (config_dir() / "profiles").iterdir() if p.is_dir())
        raise FileNotFoundError(f"profile {profile!r} not found (a folder with config.yaml, "
                                f"or one of: {', '.join(known)})")
    return path.resolve()


def snakemake_command(study: Path, out: Path, cores: int, dry_run: bool = False,
                      extra: list[str] | None = None,
                      profile: str | Path = "local") -> list[str]:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(snakefile()),
           "--profile", str(profile_dir(profile)),
           "--directory", str(out), "--config", f"study={study.resolve()}",
           f"out={out.resolve()}", "--cores", str(cores), "--rerun-incomplete",
           "--printshellcmds"]
    if dry_run:
        cmd.append("--dry-run")
    return cmd + [a for a in (extra or []) if a != "--"]


@contextmanager
def exclusive_run(out: Path) -> Iterator[bool]:
    """Hold ``OUT/.trialprep-run.lock`` for the run (the kernel drops it if the process
    dies). Yields whether Snakemake's own lock is stale: it exists although no run holds
    ours, i.e. the last run was killed."""
    from trialprep.cli import UserError

    with open(out / ".trialprep-run.lock", "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"another trialprep run is using {out}; wait for it to "
                            "finish") from None
        locks = out / ".snakemake" / "locks"
        yield locks.is_dir() and any(locks.iterdir())


def _audit_run(bids: Path, study: Path, cmd: list[str], profile: Path) -> None:
    """Record the run (configuration, versions, environment) before it starts."""
    from trialprep.audit import study_audit
    from trialprep.config import load_config
    from trialprep.provenance import environment_record, sha256_file

    config = load_config(study)
    env = environment_record()
    study_audit(bids).append("run", {
        "event": "started", "config_sha256": config.hash, "trialprep": env["trialprep"],
        "snakemake": env["packages"]["snakemake"], "lock_sha256": env["lock_sha256"],
        "container": env["container"], "profile": profile.name,
        "profile_sha256": sha256_file(profile / "config.yaml"),
        "command": [c for c in cmd[1:] if not c.startswith("study=")]})


def run(args: argparse.Namespace) -> int:
    study = args.config or args.trial / "study.yaml"
    if not study.exists():
        raise FileNotFoundError(f"study configuration {study} not found")
    args.out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    profile = profile_dir(args.profile)
    cmd = snakemake_command(study, args.out, args.cores, args.dry_run, args.snakemake_args,
                            profile)
    from trialprep.layout import StudyLayout

    bids = StudyLayout(args.out).bids
    with exclusive_run(args.out) as stale:
        if stale and not args.dry_run:
            # The previous run was killed (its lock survived it): release Snakemake's lock;
            # --rerun-incomplete then redoes the jobs it left half-done.
            print("trialprep run: the previous run in this folder was interrupted; resuming")
            subprocess.call([*cmd, "--unlock"], env=env, stdout=subprocess.DEVNULL)
        if not args.dry_run:
            _audit_run(bids, study, cmd, profile)
        rc = subprocess.call(cmd, env=env)
    if not args.dry_run:
        from trialprep.audit import study_audit

        study_audit(bids).append("run", {"event": "finished", "returncode": rc})
    if rc == 0 and not args.dry_run:
        from trialprep.layout import StudyLayout
        from trialprep.stages import registered_stages

        lay = StudyLayout(args.out.resolve())
        print(f"\ntrialprep run finished. Outputs in {lay.out}:")
        print(f"  BIDS dataset:        {lay.bids}")
        print(f"  intake records:      {lay.intake}")
        print(f"  completeness table:  {lay.completeness}")
        for stage in registered_stages():
            print(f"  {stage.name + ' derivatives:':<21}{stage.dataset(lay)}")
        print(f"  QC verdicts:         {lay.qc}")
        print(f"  biomarker tables:    {lay.tables}")
        print(f"  reports:             {lay.reports / 'index.html'}")
        print(f"  audit trail:         {lay.audit}")
        print(f"  logs:                {lay.logs_root}")
    return rc
