"""The cluster path on a real SLURM (.ci/slurm-up.sh starts one on this machine): the smoke
config's jobs go through `--profile slurm`, i.e. snakemake-executor-plugin-slurm, sbatch,
slurmctld/slurmd and accounting, as on a user's cluster. Skipped when no controller answers."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from mplug import config as mcfg

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "config" / "smoke.yaml"
CFG = mcfg.load_config(SMOKE)
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def _cluster_up() -> bool:
    try:
        res = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=20)
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False
    return res.returncode == 0 and bool(res.stdout.strip())


pytestmark = [pytest.mark.slurm,
              pytest.mark.skipif(not _cluster_up(), reason="no SLURM controller (run .ci/slurm-up.sh as root)")]


def _snakemake(work: Path, *targets: str, config: Path = SMOKE, **kw) -> subprocess.Popen:
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


def _job_ids(work: Path, rule: str, wildcards: str = "**") -> list[int]:
    """SLURM job ids of `rule` (its jobs with `wildcards`, e.g. mplug_smoke_pretrain_4m), from the
    plugin's per-job logs (slurm-logdir in slurm/config.yaml)."""
    folder = work / "logs" / "slurm" / f"rule_{rule}"
    return sorted(int(p.stem) for p in folder.glob(f"{wildcards}/*.log") if p.stem.isdigit())


def _sacct(job: int, fields: str, timeout: float = 90) -> dict[str, str]:
    """The job's accounting record (slurmdbd lags slurmctld by a few seconds)."""
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


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("slurm_run")


MODEL = next(iter(mcfg.enabled_models(CFG)))
STAGES = mcfg.enabled_models(CFG)[MODEL]["pretrain"]  # [pretrain_14m, pretrain_4m]


def test_pretraining_runs_as_a_slurm_job_with_the_config_resources(work):
    """synth (a local rule) then pretraining as a real batch job: sacct records what the run
    config's `resources:` asked for, and the job's trained model lands where the DAG expects."""
    proc = _snakemake(work, mcfg.checkpoint_path(CFG, MODEL, STAGES[0]))
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-4000:]
    assert not _job_ids(work, "synth")  # localrules: no SLURM job for it
    (job,) = _job_ids(work, "pretrain")
    rec = _sacct(job, "State,Partition,ReqCPUS,ReqMem,Timelimit")
    res = {**CFG["resources"]["default"], **CFG["resources"].get("rules", {}).get("pretrain", {})}
    assert rec["State"] == "COMPLETED", rec
    assert rec["ReqCPUS"] == str(res["cpus_per_task"]), rec
    assert rec["ReqMem"].rstrip("n") == f"{res['mem_mb']}M", rec
    assert rec["Timelimit"] == f"00:{res['runtime']:02d}:00", rec
    assert (work / mcfg.checkpoint_path(CFG, MODEL, STAGES[0])).stat().st_size > 0


def test_scancel_of_a_training_job_ends_the_run_without_a_resubmission(work):
    """A user's `scancel` is final: Snakemake sees the job CANCELLED (squeue status, slurm/
    config.yaml), fails it without hanging, and submits it no second time (retries: 0)."""
    target = mcfg.checkpoint_path(CFG, MODEL, STAGES[1])  # continued pretraining
    proc = _snakemake(work, target)
    rule_log = work / "logs" / CFG["run"] / "pretrain" / MODEL / f"{STAGES[1]}.log"
    deadline = time.time() + 300
    job = None
    while job is None:  # running and training (past start-up): the case a user cancels
        assert proc.poll() is None, proc.stdout.read()[-4000:]
        assert time.time() < deadline, "the pretraining job never started training"
        time.sleep(1)
        running = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i %k"], capture_output=True,
                                 text=True).stdout.split("\n")
        mine = [int(line.split()[0]) for line in running if "rule_pretrain" in line]
        if mine and rule_log.is_file() and "starting from step 0" in rule_log.read_text():
            job = mine[0]
    subprocess.run(["scancel", str(job)], check=True)
    cancelled = time.time()
    try:
        out, _ = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("snakemake still waits 240 s after scancel of the job it submitted") from None
    assert proc.returncode != 0, out[-4000:]
    assert re.search(rf"{job}.*(CANCELLED|cancel)", out, re.I | re.S), out[-4000:]
    time.sleep(5)  # a resubmission would show up as a second job log by now
    assert _job_ids(work, "pretrain", f"{MODEL}_{STAGES[1]}") == [job]
    assert _sacct(job, "State")["State"].startswith("CANCELLED")
    assert time.time() - cancelled < 240


def test_a_two_task_training_job_trains_on_both_ranks(tmp_path):
    """`tasks_per_node: 2` (CPU ranks; a GPU job gets one per GPU): the job asks SLURM for two
    tasks, the rule's srun starts both with the job's geometry, and the trainer runs with
    world_size 2 - each rank writes its own ZeRO shard and RNG state."""
    cfg = yaml.safe_load(SMOKE.read_text())
    cfg["launcher"] = "srun"
    cfg["resources"].setdefault("rules", {})["pretrain"] = {"tasks_per_node": 2, "cpus_per_task": 1}
    cfg["pretrain"][STAGES[0]]["train"].update(max_steps=8, save_every=4)
    config = tmp_path / "two_ranks.yaml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    work = tmp_path / "work"
    proc = _snakemake(work, mcfg.checkpoint_path(CFG, MODEL, STAGES[0]), config=config)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-4000:]
    (job,) = _job_ids(work, "pretrain")
    rec = _sacct(job, "State,NTasks,AllocCPUS")
    assert rec["State"] == "COMPLETED" and rec["AllocCPUS"] == "2", rec
    run = work / mcfg.checkpoint_dir(CFG, MODEL, STAGES[0])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["engine"]["world_size"] == 2, summary["engine"]
    ckpt = run / "checkpoints" / "step_00000004"  # save_every 4 (the last step exports the model)
    assert {"rng_rank0.json", "rng_rank1.json", "zero_pp_rank_1_mp_rank_00_optim_states.pt"} <= \
        {p.name for p in ckpt.iterdir()}


def _pretrain_running() -> list[int]:
    lines = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i %k"], capture_output=True,
                           text=True).stdout.splitlines()
    return [int(line.split()[0]) for line in lines if "rule_pretrain" in line]


def _accounting_fails() -> bool:
    try:
        return subprocess.run(["sacct", "-n", "-X"], capture_output=True, timeout=30).returncode != 0
    except subprocess.TimeoutExpired:
        return True


@pytest.mark.skipif(os.geteuid() != 0, reason="stopping the accounting daemon needs root (CI runs as root)")
def test_a_minute_without_accounting_loses_no_job(tmp_path):
    """slurmdbd (sacct's source) down for a minute while a training job runs, and finishes: the
    profile polls squeue, so Snakemake keeps the job, sees it end and completes the target."""
    cfg = yaml.safe_load(SMOKE.read_text())
    cfg["pretrain"][STAGES[0]]["train"]["max_steps"] = 20  # done well inside the outage
    config = tmp_path / "short.yaml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    work = tmp_path / "work"
    target = mcfg.checkpoint_path(CFG, MODEL, STAGES[0])
    proc = _snakemake(work, target, config=config)
    deadline = time.time() + 300
    while not _pretrain_running():
        assert proc.poll() is None, proc.stdout.read()[-4000:]
        assert time.time() < deadline, "the pretraining job never started"
        time.sleep(1)
    subprocess.run(["pkill", "-x", "slurmdbd"], check=True)
    try:
        time.sleep(5)
        assert _accounting_fails(), "sacct still answers with slurmdbd stopped"
        time.sleep(55)
    finally:
        subprocess.run(["slurmdbd"], check=True)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-4000:]
    assert (work / target).stat().st_size > 0
