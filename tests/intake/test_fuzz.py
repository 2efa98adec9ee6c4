"""Intake under hostile input: drops of real vendor files, many of them damaged, never stop.

Each drop holds the vendor fixture series with a share of their files mutated
(tests/intake/fuzz.py). ``trialprep intake`` must exit 0 without a traceback and write
exactly one manifest row per input file, with a reason on every file it did not convert;
it may convert only files whose pixel data are intact, and the series nobody damaged must
still convert. The short form runs in ``make test``; the long form (10 000 mutated files)
has the ``fuzz`` marker: ``pytest -m fuzz tests/intake/test_fuzz.py``.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import SHARED
from tests.intake.fuzz import FuzzPlan, Kind, Region, mutate_drop
from tests.intake.helpers import KEY
from trialprep.keys import StudyKey

FIXTURES = SHARED / "fixtures" / "dicom"
SITE = "fz"


def _fixture_drop(dest: Path, exclude: tuple[str, ...] = (), only: tuple[str, ...] = ()) -> Path:
    """The fixture series, one folder each, as one site drop."""
    for d in sorted(FIXTURES.glob("*/*/dicom")):
        name = d.parent.relative_to(FIXTURES).as_posix()
        if name in exclude or (only and name not in only):
            continue
        shutil.copytree(d, dest / name.replace("/", "_"))
    return dest


def run_fuzzed_drop(root: Path, seed: int, fraction: float, exclude: tuple[str, ...] = (),
                    only: tuple[str, ...] = (), kinds: list[Kind] | None = None,
                    visit: str | None = "01", archive: bool = False) -> tuple[FuzzPlan,
                                                                              pd.DataFrame]:
    """Mutate a fixture drop, take it in with the CLI, check the guarantees; returns the
    plan and the manifest."""
    clean = _fixture_drop(root / "clean", exclude, only)
    drop = root / "drop"
    plan = mutate_drop(clean, drop, random.Random(seed), fraction, kinds)
    bids = root / "bids"
    cmd = [str(Path(sys.executable).parent / "trialprep"), "intake", str(drop), "--site", SITE,
           "--bids", str(bids)] + (["--visit", visit] if visit else [])
    if archive:  # also the PS3.15 copy: pydicom reads every element of every file
        (root / "study.yaml").write_text("deid: {archive_dicom: true}\n")
        cmd += ["--config", str(root / "study.yaml")]
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=1800,
                          env={**os.environ, "TRIALPREP_STUDY_KEY": KEY})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]
    manifest = pd.read_csv(bids / "derivatives" / "intake" / "manifest.tsv", sep="\t",
                           dtype=str, keep_default_na=False)
    check_manifest(plan, manifest)
    return plan, manifest


def check_manifest(plan: FuzzPlan, manifest: pd.DataFrame) -> None:
    key = StudyKey(KEY.encode())
    files = manifest[manifest["reason_code"] != "empty_folder"]
    ids = {key.label("source", SITE, rel, length=16): rel for rel in plan.files}
    assert files["source_id"].is_unique
    assert set(files["source_id"]) == set(ids), "one manifest row per input file"
    assert set(files["outcome"]) <= {"converted", "quarantined", "ignored"}
    others = files[files["outcome"] != "converted"]
    assert (others["reason"].str.strip() != "").all() and (others["reason_code"] != "").all()
    converted = files.loc[files["outcome"] == "converted", "source_id"].map(ids)
    spoilt = [rel for rel in converted if plan.files[rel] and not plan.files[rel].pixel_intact]
    assert not spoilt, f"converted although their pixel data were damaged: {spoilt[:5]} " \
        f"({[plan.files[r] for r in spoilt[:3]]})"
    # a series nobody touched still converts, whatever happened to the rest of the drop
    by_folder: dict[str, list[str]] = {}
    for rel in plan.files:
        by_folder.setdefault(rel.split("/")[0], []).append(rel)
    outcome = dict(zip(files["source_id"].map(ids), files["outcome"], strict=True))
    for folder, rels in by_folder.items():
        dicom = [r for r in rels if not r.endswith(".txt")]
        if not any(plan.files[r] for r in rels):
            assert {outcome[r] for r in dicom} == {"converted"}, folder


def test_short_fuzz_drop(tmp_path):
    """A few hundred mutated files of every kind: the 11 smaller fixture series with most
    files mutated, and the 680-file Philips series with a few (a big classic series with
    some damaged slices)."""
    mutated = []
    for seed, fraction in ((20261201, 0.9), (20261202, 0.5)):
        plan, manifest = run_fuzzed_drop(tmp_path / str(seed), seed=seed, fraction=fraction,
                                         exclude=("philips/dwi_dti_classic",))
        mutated += [m for m in plan.files.values() if m]
        assert (manifest["outcome"] == "converted").any()  # benign damage still converts
    assert len(mutated) >= 300 and {m.kind for m in mutated} == set(Kind)
    assert {m.region for m in mutated} == set(Region)
    plan, manifest = run_fuzzed_drop(tmp_path / "b", seed=7, fraction=0.03,
                                     only=("philips/dwi_dti_classic",))
    assert sum(1 for m in plan.files.values() if m) >= 10


def test_fuzzed_drop_without_visit_and_with_the_dicom_archive(tmp_path):
    """Without --visit the dates decide the visit (damaged date values must not crash), and
    the de-identified archive reads every element of every file."""
    run_fuzzed_drop(tmp_path, seed=99, fraction=0.5, visit=None, archive=True,
                    exclude=("philips/dwi_dti_classic",),
                    kinds=[Kind.BIT_FLIP, Kind.ZERO, Kind.GARBLED_VR, Kind.OVERWRITE])


@pytest.mark.fuzz
def test_long_fuzz_ten_thousand_files(tmp_path):
    """10 000 mutated files over repeated whole-fixture drops (all kinds, all regions)."""
    total, seed = 0, 1000
    while total < 10_000:
        plan, _ = run_fuzzed_drop(tmp_path / str(seed), seed=seed, fraction=1.0,
                                  visit="01" if seed % 2 else None, archive=seed % 3 == 0)
        total += sum(1 for m in plan.files.values() if m)
        shutil.rmtree(tmp_path / str(seed))
        seed += 1
