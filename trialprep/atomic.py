"""The one atomic-write helper: every file trialprep writes appears whole or not at all."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: How a file being written starts (hidden; what a killed run leaves behind is recognisable).
TMP_PREFIX = ".tmp-"


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a private temporary path beside ``path`` to write to; on success it replaces
    ``path`` in one rename (readers, and a run killed midway, never see half a file); on an
    error it is removed. The temporary name keeps ``path``'s name as its end, so writers that
    choose the format by extension (nibabel, numpy, pandas) behave as for ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{TMP_PREFIX}{os.getpid()}-{threading.get_ident()}.{path.name}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def copy_atomic(src: str | Path, dest: str | Path) -> Path:
    """Copy ``src`` to ``dest`` atomically."""
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
    return Path(dest)
