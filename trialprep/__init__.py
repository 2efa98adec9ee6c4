"""trialprep: multi-site neuroimaging trials from DICOM to harmonized, QC-gated biomarkers."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("trialprep")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
