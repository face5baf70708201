"""Fixtures of the workflow tests: the paper's and the smoke run's dry runs, once per session."""
from __future__ import annotations

import pytest

from _dryrun import snakemake


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
