"""Helpers for the workflow tests: dry runs of the Snakefile from the repository root."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"


def snakemake(*args: str, timeout: int = 180) -> subprocess.CompletedProcess:
    """Run snakemake from the repository root (the profiles and configs are relative to it)."""
    if not SNAKEMAKE.exists():
        pytest.skip(f"snakemake not installed beside {sys.executable}")
    return subprocess.run([str(SNAKEMAKE), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def job_stats(out: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run: rule -> job count."""
    block = out.split("Job stats:", 1)[1].split("Reasons:", 1)[0]
    return {m.group(1): int(m.group(2))
            for m in re.finditer(r"^([A-Za-z_][\w]*)\s+(\d+)\s*$", block, re.M)
            if m.group(1) != "total"}


@pytest.fixture(scope="session")
def paper_dry_run() -> str:
    res = snakemake("all", "-n", "--profile", "slurm")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout + res.stderr


@pytest.fixture(scope="session")
def smoke_dry_run() -> str:
    res = snakemake("all", "-n", "--profile", "profiles/smoke", "--configfile", "config/smoke.yaml")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout + res.stderr
