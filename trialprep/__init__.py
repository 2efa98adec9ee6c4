"""trialprep: multi-site neuroimaging trials from DICOM to harmonized, QC-gated biomarkers."""

import os
from importlib.metadata import PackageNotFoundError, version

# No network at run time: Nipype would otherwise query its update server on import.
os.environ.setdefault("NIPYPE_NO_ET", "1")

try:
    __version__ = version("trialprep")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
