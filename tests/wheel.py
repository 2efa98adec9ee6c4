"""trialprep built into a wheel and installed into a fresh virtual environment outside the
checkout, for tests that run a study from the installed package (issue 17).

The environment borrows the test environment's third-party packages (a path entry appended
after its own site-packages: no download, no second copy of PyTorch) but not trialprep,
which it imports from the wheel alone."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "TRIALPREP_HOME", "VIRTUAL_ENV")}


def install_wheel(root: Path) -> tuple[Path, Path]:
    """Build the wheel into ``root/dist`` and install it into ``root/venv``; returns the
    environment's python and the wheel."""
    root.mkdir(parents=True, exist_ok=True)
    env = clean_env()

    def run(cmd):
        proc = subprocess.run([str(c) for c in cmd], cwd=root, env=env, capture_output=True,
                              text=True, timeout=900)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]

    # with build isolation: a fresh venv's setuptools is older than the licence field needs
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", root / "dist", REPO])
    (wheel,) = (root / "dist").glob("trialprep-*.whl")
    venv.create(root / "venv", with_pip=False)
    python = root / "venv" / "bin" / "python"
    site = Path(subprocess.check_output(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        text=True).strip())
    (site / "zz_borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q", wheel])
    return python, wheel
