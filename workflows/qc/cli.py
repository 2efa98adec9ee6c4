"""`trialprep qc gate|override|import` and `trialprep audit verify`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("qc", help="QC gates and people's QC decisions")
    qc = p.add_subparsers(dest="qc_command", required=True)
    g = qc.add_parser("gate", help="evaluate the QC gates on every processed image")
    g.add_argument("bids", type=Path)
    g.add_argument("--config", type=Path, default=None)
    g.set_defaults(func=run_gate)
    o = qc.add_parser("override", help="record a person's verdict for one image",
                      description="Record a QC decision (who, when, why) in the audit trail; "
                      "the gates apply it on their next run.")
    o.add_argument("image", help="the T1w (BIDS path or file name)")
    o.add_argument("--verdict", required=True, choices=["pass", "fail"])
    o.add_argument("--reason", required=True)
    o.add_argument("--by", required=True, help="who decides")
    o.add_argument("--bids", type=Path, required=True)
    o.set_defaults(func=run_override)
    i = qc.add_parser("import", help="import a ratings file exported from an HTML report")
    i.add_argument("ratings", type=Path)
    i.add_argument("--bids", type=Path, required=True)
    i.set_defaults(func=run_import)
    d = qc.add_parser("decisions", help="write the latest QC decisions (derivatives/qc/"
                      "decisions.tsv) from the audit trail")
    d.add_argument("bids", type=Path)
    d.set_defaults(func=run_decisions)

    a = sub.add_parser("audit", help="the study's audit trail")
    av = a.add_subparsers(dest="audit_command", required=True)
    v = av.add_parser("verify", help="check the hash chain: any edit, removal or reordering")
    v.add_argument("bids", type=Path, help="the study's BIDS dataset (or the log file)")
    v.set_defaults(func=run_verify)
    s = av.add_parser("show", help="print the audit entries")
    s.add_argument("bids", type=Path)
    s.add_argument("--kind", default=None)
    s.set_defaults(func=run_show)


def _known_image(bids: Path, image: str) -> str:
    from trialprep.cli import UserError
    from trialprep.tables import read_table
    from trialprep.workflows.qc.gates import image_key, qc_dir

    key = image_key(image)
    verdicts = qc_dir(bids) / "image_verdicts.tsv"
    if not verdicts.exists():
        raise UserError(f"no QC verdicts yet in {verdicts.parent}: run the gates first")
    known = set(read_table(verdicts, as_text=True)["image"])
    if key not in known:
        raise UserError(f"unknown image {key!r} (not among the {len(known)} gated images)")
    return key


def run_gate(args: argparse.Namespace) -> int:
    from trialprep.config import load_config
    from trialprep.workflows.qc.gates import qc_dir, run_gates

    res = run_gates(args.bids, load_config(args.config))
    counts = res["images"]["verdict"].value_counts().to_dict()
    print(f"{len(res['images'])} image(s): " + ", ".join(f"{n} {k}" for k, n in
                                                        sorted(counts.items())))
    print(f"verdicts: {qc_dir(args.bids)}")
    return 0


def run_override(args: argparse.Namespace) -> int:
    from trialprep.audit import study_audit
    from trialprep.workflows.qc.gates import write_decisions

    key = _known_image(args.bids, args.image)
    audit = study_audit(args.bids)
    entry = audit.append(
        "override", {"image": key, "verdict": args.verdict, "reason": args.reason},
        actor=args.by)
    write_decisions(args.bids, audit)
    print(f"{key}: {args.verdict} by {args.by} (audit entry {entry['seq']}); applied at the "
          "next gate run")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from trialprep.audit import study_audit
    from trialprep.cli import UserError
    from trialprep.workflows.qc.gates import write_decisions

    try:
        data = json.loads(args.ratings.read_text())
        rater, ratings = data["rater"], data["ratings"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise UserError(f"{args.ratings}: not a trialprep ratings file ({exc})") from None
    if not str(rater).strip():
        raise UserError(f"{args.ratings}: the rater's name is empty")
    audit = study_audit(args.bids)
    n = 0
    for r in ratings:
        if r.get("verdict") not in ("pass", "fail"):
            raise UserError(f"{args.ratings}: rating for {r.get('image')!r} has verdict "
                            f"{r.get('verdict')!r} (pass or fail)")
        key = _known_image(args.bids, r["image"])
        audit.append("rating", {"image": key, "verdict": r["verdict"],
                                "reason": r.get("reason") or "rated in the HTML report",
                                "rated_at": data.get("exported")}, actor=str(rater))
        n += 1
    write_decisions(args.bids, audit)
    print(f"{n} rating(s) by {rater} recorded; applied at the next gate run")
    return 0


def run_decisions(args: argparse.Namespace) -> int:
    from trialprep.workflows.qc.gates import write_decisions

    print(f"decisions: {write_decisions(args.bids)}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from trialprep.audit import AuditError, AuditLog, study_audit

    log = AuditLog(args.bids) if args.bids.is_file() else study_audit(args.bids)
    try:
        n = log.verify()
    except AuditError as exc:
        print(f"audit verify: FAILED: {exc}")
        return 1
    print(f"audit verify: {n} entr{'y' if n == 1 else 'ies'} intact ({log.path})")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from trialprep.audit import study_audit

    for e in study_audit(args.bids).entries():
        if args.kind is None or e["kind"] == args.kind:
            print(f"{e['seq']:>5} {e['time']} {e['kind']:<9} {e['actor']:<16} "
                  f"{json.dumps(e['data'], sort_keys=True)[:160]}")
    return 0
