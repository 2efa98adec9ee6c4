"""The BIDS dataset built from all vendor fixtures passes the official validator."""

from __future__ import annotations

from tests.conftest import SHARED
from tests.intake.helpers import KEY
from tests.validator import bids_errors
from trialprep.config import load_config
from trialprep.keys import StudyKey
from trialprep.workflows.intake.pipeline import run_intake


def test_fixture_dataset_is_valid_bids(tmp_path):
    bids = tmp_path / "bids"
    summary = run_intake(SHARED / "fixtures" / "dicom", "fixtures", bids, load_config(),
                         StudyKey(KEY.encode()), visit="01")
    assert summary.converted_series == summary.series == 13
    # everything that is not converted is a non-DICOM file (references, READMEs, licences)
    assert summary.counts.get("quarantined", 0) == 0
    assert bids_errors(bids) == []
