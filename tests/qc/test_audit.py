"""The audit trail: hash-chained, any edit, removal or reordering is detected and named."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from trialprep.audit import AuditError, AuditLog


@pytest.fixture
def log(tmp_path):
    log = AuditLog(tmp_path / "audit" / "audit.jsonl")
    log.append("intake", {"site": "boston", "files": {"converted": 88}})
    log.append("gate", {"verdicts": {"sub-A_ses-01_T1w.nii.gz": "fail"}})
    log.append("override", {"image": "sub-A_ses-01_T1w.nii.gz", "verdict": "pass",
                            "reason": "artefact outside the brain"}, actor="Dr Q. Rater")
    log.append("run", {"event": "finished", "returncode": 0})
    return log


def verify_cli(path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trialprep.cli", "audit", "verify", str(path)],
                          capture_output=True, text=True)


def test_intact_log_verifies(log):
    assert log.verify() == 4
    entries = log.entries()
    assert [e["seq"] for e in entries] == [1, 2, 3, 4]
    assert entries[2]["actor"] == "Dr Q. Rater" and entries[2]["time"].endswith("Z")
    assert verify_cli(log.path).returncode == 0


def test_editing_one_byte_fails_and_names_the_entry(log):
    raw = log.path.read_bytes()
    pos = raw.index(b"artefact")
    log.path.write_bytes(raw[:pos] + b"A" + raw[pos + 1:])  # one byte changed
    with pytest.raises(AuditError, match="entry seq 3.*edited"):
        log.verify()
    proc = verify_cli(log.path)
    assert proc.returncode == 1 and "entry seq 3" in proc.stdout


def test_removing_an_entry_is_detected(log):
    lines = log.path.read_text().splitlines(keepends=True)
    log.path.write_text("".join(lines[:1] + lines[2:]))
    with pytest.raises(AuditError, match="removed, inserted or reordered"):
        log.verify()


def test_reordering_entries_is_detected(log):
    lines = log.path.read_text().splitlines(keepends=True)
    lines[1], lines[2] = lines[2], lines[1]
    log.path.write_text("".join(lines))
    with pytest.raises(AuditError, match="entry seq 3"):
        log.verify()


def test_rehashing_an_edited_entry_still_breaks_the_chain(log):
    from trialprep.audit import _digest

    lines = log.path.read_text().splitlines()
    entry = json.loads(lines[1])
    entry["data"]["verdicts"]["sub-A_ses-01_T1w.nii.gz"] = "pass"
    entry["hash"] = _digest(entry)  # a forger recomputes this entry's own hash...
    lines[1] = json.dumps(entry, sort_keys=True)
    log.path.write_text("\n".join(lines) + "\n")
    with pytest.raises(AuditError, match="entry seq 3.*does not chain"):
        log.verify()  # ...but the next entry still points at the original


def test_appends_from_many_processes_keep_the_chain(tmp_path):
    path = tmp_path / "audit.jsonl"
    code = ("import sys; from trialprep.audit import AuditLog; "
            "[AuditLog(sys.argv[1]).append('run', {'i': i}) for i in range(20)]")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path)]) for _ in range(4)]
    assert all(p.wait() == 0 for p in procs)
    assert AuditLog(path).verify() == 80
