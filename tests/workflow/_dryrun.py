"""Helpers for the workflow tests: dry runs of the Snakefile from the repository root.

(Not in conftest.py: several test folders have a conftest.py, so `from conftest import` would
import whichever was loaded first.)
"""
from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"


_WORKDIR: list[Path] = []


def _workdir() -> Path:
    """An empty working directory for the whole session: dry runs must not see (or touch) the
    data/, results/ and .snakemake/ of a smoke run the user made in the checkout."""
    if not _WORKDIR:
        _WORKDIR.append(Path(tempfile.mkdtemp(prefix="mplug-dryrun-")))
    return _WORKDIR[0]


def snakemake(*args: str, timeout: int = 180) -> subprocess.CompletedProcess:
    """Run snakemake from the repository root (the profiles and configs are relative to it), with
    this checkout's Snakefile, in an empty working directory."""
    return subprocess.run([str(SNAKEMAKE), *args, "-s", str(ROOT / "Snakefile"),
                           "-d", str(_workdir())], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def job_stats(out: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run: rule -> job count."""
    block = out.split("Job stats:", 1)[1].split("Reasons:", 1)[0]
    return {m.group(1): int(m.group(2))
            for m in re.finditer(r"^([A-Za-z_][\w]*)\s+(\d+)\s*$", block, re.M)
            if m.group(1) != "total"}
