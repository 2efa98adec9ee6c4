"""The study's audit trail: an append-only, hash-chained JSON-lines log.

Each entry carries its sequence number, UTC time, kind (``intake``, ``gate``, ``override``,
``rating``, ``run``, ``table``...), actor and data, the hash of the previous entry and its
own hash (SHA-256 over the canonical JSON of everything else). Editing, removing,
inserting or reordering any entry breaks the chain at that entry, which ``verify`` names.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from trialprep.provenance import utc_now

GENESIS = "0" * 64


class AuditError(ValueError):
    """The audit log is not intact; the message names the first bad entry."""


def _digest(entry: dict) -> str:
    body = {k: v for k, v in entry.items() if k != "hash"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class AuditLog:
    """An audit log file; appends are serialised across processes with a file lock."""

    path: Path

    def __post_init__(self):
        self.path = Path(self.path)

    def append(self, kind: str, data: dict, actor: str = "trialprep") -> dict:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+", encoding="utf-8") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                fh.seek(0)
                last = None
                for line in fh:
                    if line.strip():
                        last = line
                prev = json.loads(last) if last else None
                entry = {"seq": (prev["seq"] + 1) if prev else 1, "time": utc_now(),
                         "kind": kind, "actor": actor, "data": data,
                         "prev": prev["hash"] if prev else GENESIS}
                entry["hash"] = _digest(entry)
                fh.seek(0, os.SEEK_END)
                fh.write(json.dumps(entry, sort_keys=True, default=str) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        return entry

    def entries(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines()
                if line.strip()]

    def verify(self) -> int:
        """Check the whole chain; returns the number of entries or raises AuditError."""
        if not self.path.exists():
            return 0
        prev_hash, n = GENESIS, 0
        for lineno, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            n += 1
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                raise AuditError(f"{self.path}: line {lineno} (entry {n}) is not valid JSON: "
                                 "the log was edited") from None
            where = f"{self.path}: line {lineno}, entry seq {entry.get('seq')}"
            if entry.get("seq") != n:
                raise AuditError(f"{where}: expected sequence number {n} (an entry was "
                                 "removed, inserted or reordered)")
            if entry.get("prev") != prev_hash:
                raise AuditError(f"{where}: does not chain to the previous entry (an entry "
                                 "was removed, inserted or reordered)")
            if entry.get("hash") != _digest(entry):
                raise AuditError(f"{where} ({entry.get('kind')}): content does not match its "
                                 "hash (the entry was edited)")
            prev_hash = entry["hash"]
        return n

    def latest(self, kind: str) -> list[dict]:
        return [e for e in self.entries() if e["kind"] == kind]


def study_audit(bids: str | Path) -> AuditLog:
    """The audit log of the study whose BIDS dataset is ``bids``."""
    from trialprep.layout import StudyLayout

    return AuditLog(StudyLayout.from_bids(bids).audit)
