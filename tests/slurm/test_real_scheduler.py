"""The cluster path on a real SLURM (.ci/slurm-up.sh starts one on this machine): the smoke
config's jobs go through `--profile slurm`, i.e. snakemake-executor-plugin-slurm, sbatch,
slurmctld/slurmd and accounting, as on a user's cluster. Skipped when no controller answers."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from mplug import config as mcfg

sys.path.insert(0, str(Path(__file__).parent))
from _slurm import MARKS, SMOKE, job_ids, sacct, snakemake  # noqa: E402

CFG = mcfg.load_config(SMOKE)
pytestmark = MARKS

MODEL = next(iter(mcfg.enabled_models(CFG)))
STAGES = mcfg.enabled_models(CFG)[MODEL]["pretrain"]  # [pretrain_14m, pretrain_4m]
PRETRAIN = mcfg.checkpoint_path(CFG, MODEL, STAGES[0])
# The smoke config with a shorter first pretraining (120 -> 80 steps: 45-110 s of training here),
# more than a one-minute job with a 30 s lead has time for (the time-limit test; 40 steps took
# 22 s on a quiet CI machine and finished just before the alarm).
STEPS = 80


def _write_config(path: Path, edit=None) -> Path:
    cfg = yaml.safe_load(SMOKE.read_text())
    cfg["pretrain"][STAGES[0]]["train"]["max_steps"] = STEPS
    if edit:
        edit(cfg)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("slurm_run")


@pytest.fixture(scope="module")
def short_config(work) -> Path:
    return _write_config(work.parent / f"{work.name}.yaml")


@pytest.fixture(scope="module")
def pretrained(work, short_config) -> str:
    """synth (a local rule), then the first pretraining as a SLURM batch job, never interrupted;
    Snakemake's output (the job's own test asserts it succeeded)."""
    proc = snakemake(work, PRETRAIN, config=short_config)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-4000:]
    return out


def test_pretraining_runs_as_a_slurm_job_with_the_config_resources(work, pretrained):
    """sacct records what the run config's `resources:` asked for, the job's trained model lands
    where the DAG expects, and its provenance names the SLURM job."""
    assert not job_ids(work, "synth")  # localrules: no SLURM job for it
    (job,) = job_ids(work, "pretrain")
    rec = sacct(job, "State,Partition,ReqCPUS,ReqMem,Timelimit")
    res = {**CFG["resources"]["default"], **CFG["resources"].get("rules", {}).get("pretrain", {})}
    assert rec["State"] == "COMPLETED", rec
    assert rec["ReqCPUS"] == str(res["cpus_per_task"]), rec
    assert rec["ReqMem"].rstrip("n") == f"{res['mem_mb']}M", rec
    assert rec["Timelimit"] == f"00:{res['runtime']:02d}:00", rec
    assert (work / PRETRAIN).stat().st_size > 0
    summary = json.loads((work / mcfg.checkpoint_dir(CFG, MODEL, STAGES[0]) / "summary.json").read_text())
    assert summary["provenance"]["slurm_job_id"] == str(job)  # shown in the report's provenance


def test_scancel_of_a_training_job_ends_the_run_without_a_resubmission(work, short_config, pretrained):
    """A user's `scancel` is final: Snakemake sees the job CANCELLED (squeue status, slurm/
    config.yaml), fails it without hanging, and submits it no second time (retries: 0)."""
    target = mcfg.checkpoint_path(CFG, MODEL, STAGES[1])  # continued pretraining
    proc = snakemake(work, target, config=short_config)
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
    assert job_ids(work, "pretrain", f"{MODEL}_{STAGES[1]}") == [job]
    assert sacct(job, "State")["State"].startswith("CANCELLED")
    assert time.time() - cancelled < 240


def _with_synth_data(work: Path, tmp_path: Path) -> Path:
    """A fresh run folder holding `work`'s synthetic world (synth is a local rule, tested there):
    Snakemake, finding the data newer than nothing it feeds, runs only the job under test."""
    run = tmp_path / "work"
    shutil.copytree(work / "data", run / "data")
    return run


def test_a_two_task_training_job_trains_on_both_ranks(tmp_path, work, pretrained):
    """`tasks_per_node: 2` (CPU ranks; a GPU job gets one per GPU): the job asks SLURM for two
    tasks, the rule's srun starts both with the job's geometry, and the trainer runs with
    world_size 2 - each rank writes its own ZeRO shard and RNG state."""
    cfg = yaml.safe_load(SMOKE.read_text())
    cfg["launcher"] = "srun"
    cfg["resources"].setdefault("rules", {})["pretrain"] = {"tasks_per_node": 2, "cpus_per_task": 1}
    cfg["pretrain"][STAGES[0]]["train"].update(max_steps=8, save_every=4)
    config = tmp_path / "two_ranks.yaml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    two = _with_synth_data(work, tmp_path)
    proc = snakemake(two, PRETRAIN, config=config)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-4000:]
    (job,) = job_ids(two, "pretrain")
    rec = sacct(job, "State,NTasks,AllocCPUS")
    assert rec["State"] == "COMPLETED" and rec["AllocCPUS"] == "2", rec
    run = two / mcfg.checkpoint_dir(CFG, MODEL, STAGES[0])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["engine"]["world_size"] == 2, summary["engine"]
    ckpt = run / "checkpoints" / "step_00000004"  # save_every 4 (the last step exports the model)
    assert {"rng_rank0.json", "rng_rank1.json", "zero_pp_rank_1_mp_rank_00_optim_states.pt"} <= \
        {p.name for p in ckpt.iterdir()}


def _job_state(job: int) -> tuple[str, str]:
    """(state, reason) of a job slurmctld still holds, from squeue (works without accounting)."""
    out = subprocess.run(["squeue", "-h", "-j", str(job), "-o", "%T %r"], capture_output=True,
                         text=True).stdout.split()
    return (out[0], out[1]) if len(out) == 2 else ("", "")


def _accounting_fails() -> bool:
    try:
        return subprocess.run(["sacct", "-n", "-X"], capture_output=True, timeout=30).returncode != 0
    except subprocess.TimeoutExpired:
        return True


def _runs_in_accounting(job: int, timeout: float = 90) -> list[str]:
    """The states of each run of `job` (sacct -D), once its last one has finished there
    (slurmdbd, restarted, catches up on what slurmctld queued meanwhile)."""
    deadline = time.time() + timeout
    while True:
        states = subprocess.run(["sacct", "-j", str(job), "-D", "-X", "-n", "-P", "--format=State"],
                                capture_output=True, text=True).stdout.split()
        if states[-1:] == ["COMPLETED"] or time.time() > deadline:
            return states
        time.sleep(2)


def _attempt_logs(rule_log: Path) -> list[Path]:
    """Each run's log of a rule job (workflow/rules/common.smk ATTEMPT), oldest first."""
    return sorted(rule_log.parent.glob(f"{rule_log.name}.attempt-*"))


def _tensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


class _Requeues:
    """Drives a job's requeues while Snakemake waits on it: SLURM holds a requeued job ~2 min
    (BeginTime) before it may start again; this releases it at once and, once a run has
    stopped mid-training with a checkpoint, gives the next run 5 minutes to finish (the
    mechanism is the same with more one-minute runs, each resuming where the last stopped).
    The first requeue also starts a minute without accounting (slurmdbd stopped)."""

    def __init__(self, rule_log: Path, run: Path):
        self.rule_log, self.run, self.job, self.outage = rule_log, run, None, None

    def poll(self) -> None:
        if self.job is None:
            self.job = next(iter(job_ids(self.run, "pretrain")), None)
        if self.job is None or _job_state(self.job) != ("PENDING", "BeginTime"):
            return
        if self.outage is None:
            subprocess.run(["pkill", "-x", "slurmdbd"], check=True)
            self.outage = time.time()
            time.sleep(3)
            assert _accounting_fails(), "sacct still answers with slurmdbd stopped"
        stopped_mid_training = "received: stopped after step" in _attempt_logs(self.rule_log)[-1].read_text()
        subprocess.run(["scontrol", "update", f"JobId={self.job}", "StartTime=now",
                        f"TimeLimit={5 if stopped_mid_training else 1}"], check=True)

    def end_outage(self, now: bool = False) -> None:
        if self.outage is not None and (now or time.time() - self.outage >= 60):
            subprocess.run(["slurmdbd"], check=True)
            self.outage = float("inf")


@pytest.mark.skipif(os.geteuid() != 0, reason="stopping the accounting daemon needs root (CI runs as root)")
def test_a_time_limited_job_checkpoints_requeues_and_ends_as_if_never_stopped(tmp_path, work, pretrained):
    """A one-minute job: the trainer arms SIGALRM `signal_lead_s` (30 s) before the limit, writes
    a checkpoint and exits 75; the rule requeues the job (same id, no Snakemake retry), which
    resumes and finishes with weights identical to the uninterrupted run's. Meanwhile accounting
    (slurmdbd, sacct's source) is down for a minute: the profile polls squeue, so Snakemake keeps
    the job through the requeue and sees it end."""
    def one_minute(cfg):
        cfg["resources"]["cluster"] = {"signal_lead_s": 30}
        cfg["resources"].setdefault("rules", {})["pretrain"] = {"runtime": 1}

    config = _write_config(tmp_path / "one_minute.yaml", one_minute)
    run = _with_synth_data(work, tmp_path)
    rule_log = run / mcfg.rule_log(CFG, "pretrain", MODEL, STAGES[0])
    proc = snakemake(run, PRETRAIN, config=config)
    requeues = _Requeues(rule_log, run)
    deadline = time.time() + 900
    try:
        while proc.poll() is None:
            assert time.time() < deadline, "the time-limited job did not finish in 15 minutes"
            requeues.poll()
            requeues.end_outage()
            time.sleep(1)
    finally:
        requeues.end_outage(now=True)
    out = proc.stdout.read()
    assert proc.returncode == 0, out[-4000:]
    assert requeues.outage is not None, "the job was never requeued"
    runs = [p.read_text() for p in _attempt_logs(rule_log)]  # each run of the one job, in order
    job = requeues.job
    assert all(p.name.endswith(f"-{job}") for p in _attempt_logs(rule_log)) and len(runs) >= 2
    assert any("SIGALRM (the SLURM job's time limit is near) received: stopped after step" in r
               for r in runs[:-1]), runs[0][-3000:]
    resumed = re.search(r"resumed from \S+: epoch \d+, step (\d+)", runs[-1])
    assert resumed and 0 < int(resumed[1]) < STEPS, runs[-1][-3000:]
    assert rule_log.read_text() == runs[-1]
    assert job_ids(run, "pretrain") == [job]
    assert _runs_in_accounting(job) == ["REQUEUED"] * (len(runs) - 1) + ["COMPLETED"]
    ours, reference = _tensors(run / PRETRAIN), _tensors(work / PRETRAIN)
    assert ours.keys() == reference.keys()
    assert all((ours[k] == reference[k]).all() for k in ours), "weights differ from the uninterrupted run"
