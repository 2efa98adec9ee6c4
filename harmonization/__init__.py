"""Harmonization: the ComBat family as a numerical core, an estimator and a CLI."""

from trialprep.harmonization.core import apply, fit, harmonize
from trialprep.harmonization.design import HarmonizationError
from trialprep.harmonization.model import ComBatModel

__all__ = ["ComBatModel", "HarmonizationError", "apply", "fit", "harmonize"]
