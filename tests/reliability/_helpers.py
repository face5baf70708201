"""Helpers of the reliability suite: run `mplug` as a user does, check user-facing errors.

(Not in conftest.py: several test folders have a conftest.py, so `from conftest import` would be
ambiguous.)
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable
TINY = "mplug_tiny"


def cli_env(**extra: str) -> dict:
    env = dict(os.environ)
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               MPLUG_LOG_LEVEL="INFO", PYTHONUNBUFFERED="1", **extra)
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)  # each subprocess is its own single-process job
    return env


def mplug(*args: str, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `mplug ARGS` like a user (python -m mplug.cli from this checkout)."""
    return subprocess.run([PY, "-m", "mplug.cli", *map(str, args)], env=cli_env(),
                          capture_output=True, text=True, timeout=timeout, cwd=cwd or REPO)


def start_mplug(*args: str, cwd: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen([PY, "-m", "mplug.cli", *map(str, args)], env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=cwd or REPO)


def assert_user_error(res: subprocess.CompletedProcess, *needles: str) -> str:
    """A non-zero exit with a message (no traceback) containing every needle; returns stderr."""
    err = res.stderr + res.stdout
    assert res.returncode != 0, f"expected a failure, got rc 0:\n{err[-2000:]}"
    assert "Traceback" not in err, f"a traceback instead of a message:\n{err[-3000:]}"
    for needle in needles:
        assert needle in err, f"{needle!r} not in the message:\n{err[-2000:]}"
    return err


