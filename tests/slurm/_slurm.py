"""What the tests of the real scheduler share: whether a controller answers, the smoke config's
`snakemake --profile slurm` command, and the jobs' ids and accounting records."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "config" / "smoke.yaml"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def cluster_up() -> bool:
    try:
        res = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=20)
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False
    return res.returncode == 0 and bool(res.stdout.strip())


MARKS = [pytest.mark.slurm,
         pytest.mark.skipif(not cluster_up(), reason="no SLURM controller (run .ci/slurm-up.sh as root)")]


def snakemake(work: Path, *targets: str, config: Path = SMOKE, **kw) -> subprocess.Popen:
    cmd = [*SNAKEMAKE, *targets, "--profile", str(REPO / "slurm"), "--configfile", str(config),
           "-d", str(work)]
    # without the launcher variables an in-process training test of this worker exported
    # (MASTER_PORT names a port that worker's process group still holds): sbatch passes the
    # submitting environment on to the job
    launch = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK")
    env = {k: v for k, v in os.environ.items() if k not in launch}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, **kw)


def job_ids(work: Path, rule: str, wildcards: str = "**") -> list[int]:
    """SLURM job ids of `rule` (its jobs with `wildcards`, e.g. mplug_smoke_pretrain_4m), from the
    plugin's per-job logs (slurm-logdir in slurm/config.yaml)."""
    folder = work / "logs" / "slurm" / f"rule_{rule}"
    return sorted(int(p.stem) for p in folder.glob(f"{wildcards}/*.log") if p.stem.isdigit())


def sacct(job: int, fields: str, timeout: float = 180) -> dict[str, str]:
    """The job's accounting record (slurmdbd lags slurmctld by a few seconds, and another test
    may stop it for a minute)."""
    names = fields.split(",")
    deadline = time.time() + timeout
    while time.time() < deadline:
        res = subprocess.run(["sacct", "-j", str(job), "-X", "-n", "-P", f"--format={fields}"],
                             capture_output=True, text=True)
        line = res.stdout.strip().splitlines()[:1]
        if line and "PENDING" not in line[0] and "RUNNING" not in line[0]:
            return dict(zip(names, line[0].split("|")))
        time.sleep(2)
    raise AssertionError(f"sacct has no finished record of job {job} after {timeout} s")
