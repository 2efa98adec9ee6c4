"""Provenance helpers: checksums, tool versions and the environment's lock hash."""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from trialprep import __version__
from trialprep.paths import lock_file

#: Packages whose versions are recorded with every derivative.
TRACKED_PACKAGES = (
    "numpy", "scipy", "pandas", "scikit-learn", "pydicom", "nibabel", "nilearn",
    "antspyx", "dipy", "nipype", "dcm2niix", "snakemake",
)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_array(arr: np.ndarray) -> str:
    """Checksum of an array's dtype, shape and bytes (C order)."""
    a = np.ascontiguousarray(arr)
    h = hashlib.sha256()
    h.update(str(a.dtype).encode())
    h.update(str(a.shape).encode())
    h.update(memoryview(a).cast("B"))  # no copy
    return h.hexdigest()


def sha256_json(obj: object) -> str:
    """Checksum of a JSON-serialisable object in canonical form (sorted keys)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def package_versions(names: Iterable[str] = TRACKED_PACKAGES) -> dict[str, str]:
    return {name: _version(name) for name in names}


@cache
def _version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def lock_hash() -> str:
    """Hash of the lock file (constraints.txt) the environment was installed from."""
    lock = lock_file()
    return sha256_file(lock) if lock is not None else "unknown"


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def environment_record() -> dict:
    """What produced a derivative: pipeline version, python, packages, lock hash."""
    return {
        "trialprep": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": package_versions(),
        "lock_sha256": lock_hash(),
        "container": container_id(),
    }


def container_id() -> str:
    """The image a job runs in, else ``native`` (the lock hash then identifies the
    environment). A runner that knows the digest passes ``TRIALPREP_CONTAINER_DIGEST``
    (``tag@sha256:...``); Apptainer sets ``APPTAINER_CONTAINER`` (the .sif); the image
    itself carries its tag in ``TRIALPREP_CONTAINER_IMAGE``."""
    import os

    for var in ("TRIALPREP_CONTAINER_DIGEST", "APPTAINER_CONTAINER",
                "TRIALPREP_CONTAINER_IMAGE"):
        if os.environ.get(var):
            return os.environ[var]
    return "native"
