"""The official BIDS validator (v3, schema-based; PyPI `bids-validator-deno`)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path


def validator_binary() -> str:
    exe = Path(sys.executable).parent / "bids-validator-deno"
    found = str(exe) if exe.exists() else shutil.which("bids-validator-deno")
    assert found, "bids-validator-deno is not installed (it is in the test extras)"
    return found


def datasets_of_study(bids: Path) -> list[Path]:
    """The raw dataset and every derivative dataset under it (a folder of ``derivatives/``
    with its own dataset_description.json), each validated as its own dataset root: the
    validator's recursive mode does not apply a derivative dataset's .bidsignore."""
    return [Path(bids), *sorted(p.parent for p in Path(bids).glob(
        "derivatives/*/dataset_description.json"))]


def bids_errors(dataset: Path) -> list[dict]:
    """Error-level issues the validator reports for ``dataset`` (warnings are ignored)."""
    proc = subprocess.run([validator_binary(), str(dataset), "--format", "json"],
                          capture_output=True, text=True, timeout=300)
    report = json.loads(proc.stdout)
    errors = [i for i in report["issues"]["issues"] if i["severity"] == "error"]
    assert (proc.returncode == 0) == (not errors), proc.stderr[-2000:]
    return errors
