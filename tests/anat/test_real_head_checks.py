"""The checks that keep a failed extraction or registration from becoming numbers (issue
16): the template's brain brought back must cover the extracted brain, and the volumes must
be an adult head's."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from trialprep.workflows.anat.interfaces import CheckTemplateFit, RegistrationError
from trialprep.workflows.anat.session import SessionError, check_physiology


def _ball(radius_mm: float, shape=(100, 110, 100), voxel=2.0) -> np.ndarray:
    r = np.linalg.norm((np.indices(shape) - np.array(shape)[:, None, None, None] / 2) * voxel,
                       axis=0)
    return (r <= radius_mm).astype(np.uint8)


def _save(data, path) -> str:
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])), path)
    return str(path)


def test_a_template_matched_to_the_scalp_stops_the_session(tmp_path):
    """The template's brain registered onto the head's outline (radius 88 mm, 2.9 L)
    against the extracted brain (radius 70 mm, 1.4 L): Dice 0.67, the session stops."""
    brain = _save(_ball(70.0), tmp_path / "brain.nii.gz")
    scalp = _save(_ball(88.0), tmp_path / "template_on_scalp.nii.gz")
    node = CheckTemplateFit(template_mask=scalp, brain_mask=brain, min_dice=0.85,
                            template_name="MNI152NLin2009aSym")
    with pytest.raises(RegistrationError, match=r"covers the extracted brain with Dice "
                                                 r"0\.6\d < 0\.85"):
        node.run(cwd=str(tmp_path))
    fitted = _save(_ball(71.0), tmp_path / "template_fitted.nii.gz")  # a fit within 1 mm
    result = CheckTemplateFit(template_mask=fitted, brain_mask=brain).run(cwd=str(tmp_path))
    assert result.outputs.dice > 0.95


@pytest.mark.parametrize("vols, message", [
    ({"TIV": 2.9e6, "GM": 1.3e6, "WM": 1.0e6, "CSF": 0.6e6},
     "TIV L 2.900 outside the physiological range 0.9-2.4"),
    ({"TIV": 1.5e6, "GM": 1.05e6, "WM": 0.3e6, "CSF": 0.15e6},
     "GM fraction 0.700 outside the physiological range 0.25-0.65"),
    ({"TIV": 1.5e6, "GM": 0.7e6, "WM": 0.78e6, "CSF": 0.02e6},
     "CSF fraction 0.013 outside"),
])
def test_volumes_outside_an_adult_head_fail_with_the_measure_named(vols, message):
    with pytest.raises(SessionError, match=message):
        check_physiology(vols)


def test_an_adult_head_passes_and_gives_the_fractions():
    values = check_physiology({"TIV": 1.5e6, "GM": 0.7e6, "WM": 0.55e6, "CSF": 0.25e6})
    assert values == pytest.approx({"TIV_L": 1.5, "GM_fraction": 0.7 / 1.5,
                                    "WM_fraction": 0.55 / 1.5, "CSF_fraction": 0.25 / 1.5})
