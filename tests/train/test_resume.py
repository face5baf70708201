"""Kill-and-resume equality and SIGTERM preemption, with real subprocesses."""
from __future__ import annotations

import json
import signal

import torch

from mplug.train import EXIT_PREEMPTED
from _toyrun import log_steps, run_toy, start_toy, wait_for_step, weights


def _assert_same_weights(a, b) -> None:
    wa, wb = weights(a / "model.safetensors"), weights(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    diff = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not diff, f"weights differ after resume: {diff}"


def test_reference_run_outputs(reference_run):
    summary = json.loads((reference_run / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["steps"] == 20
    assert summary["engine"]["zero_stage"] == 2 and summary["engine"]["accelerator"] in ("cpu", "cuda")
    assert log_steps(reference_run) == list(range(1, 21))
    w = weights(reference_run / "model.safetensors")
    # buffers and the momentum twin are part of the export (ITC queues, *_m encoders)
    assert {"queue", "queue_ptr", "head_m.weight"} <= set(w)
    assert int(w["queue_ptr"].item()) == 20 % 4
    # latest points at the newest kept checkpoint (every 3 steps, 2 kept)
    ckpts = reference_run / "checkpoints"
    assert (ckpts / "latest").read_text().strip() == "step_00000018"
    assert sorted(p.name for p in ckpts.iterdir() if p.name.startswith("step_")) == \
        ["step_00000015", "step_00000018"]
    assert not list(ckpts.glob(".tmp_*"))


def test_sigkill_then_resume_matches_uninterrupted(reference_run, tmp_path):
    proc = start_toy(tmp_path, "--steps", "20", "--sleep", "0.15")
    wait_for_step(proc, tmp_path, 11)  # past the checkpoints at 3, 6, 9
    proc.kill()  # SIGKILL: no handler runs
    proc.wait(timeout=30)
    killed_at = max(log_steps(tmp_path))
    assert killed_at < 20
    res = run_toy(tmp_path, "--steps", "20", "--resume", "latest")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resumed from" in res.stderr
    # the log was cut back to the checkpoint and continued: every step exactly once
    assert log_steps(tmp_path) == list(range(1, 21))
    _assert_same_weights(reference_run, tmp_path)


def test_sigterm_writes_checkpoint_exits_75_and_resumes(reference_run, tmp_path):
    proc = start_toy(tmp_path, "--steps", "20", "--sleep", "0.15", "--save-every", "100")
    wait_for_step(proc, tmp_path, 5)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_PREEMPTED, output[-3000:]
    assert "SIGTERM received" in output and "--resume latest" in output
    stopped = max(log_steps(tmp_path))
    latest = (tmp_path / "checkpoints" / "latest").read_text().strip()
    assert latest == f"step_{stopped:08d}"  # the checkpoint is of the step it stopped after
    state = json.loads((tmp_path / "checkpoints" / latest / "trainer_state.json").read_text())
    assert state["step"] == stopped
    res = run_toy(tmp_path, "--steps", "20", "--save-every", "100", "--resume", "latest")
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"step {stopped}" in res.stderr  # "resumed from ...: epoch E, step S"
    assert log_steps(tmp_path) == list(range(1, 21))
    _assert_same_weights(reference_run, tmp_path)


def test_two_processes_with_torchrun_shard_and_resume_exactly(tmp_path):
    """`torchrun --nproc_per_node 2` on the CPU (gloo): ZeRO-2 shards and RNG states per rank;
    resuming both ranks from the step-6 checkpoint reproduces the uninterrupted weights."""
    import shutil
    import subprocess
    import sys

    from _toyrun import REPO, TOY, toy_env
    from mplug.train.distributed import free_port

    def torchrun(out, *extra):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--master_port", str(free_port()), str(TOY), str(out), "--steps", "8", *extra]
        res = subprocess.run(cmd, env=toy_env(), capture_output=True, text=True, timeout=300, cwd=REPO)
        assert res.returncode == 0, res.stderr[-3000:]
        return res

    full, resumed = tmp_path / "full", tmp_path / "resumed"
    torchrun(full)
    summary = json.loads((full / "summary.json").read_text())
    assert summary["engine"]["world_size"] == 2 and summary["engine"]["micro_batch_size"] == 4
    ckpt = full / "checkpoints" / "step_00000006"
    assert {p.name for p in ckpt.iterdir()} >= {
        "rng_rank0.json", "rng_rank1.json", "zero_pp_rank_0_mp_rank_00_optim_states.pt",
        "zero_pp_rank_1_mp_rank_00_optim_states.pt", "mp_rank_00_model_states.pt"}
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copytree(ckpt, resumed / "checkpoints" / ckpt.name)
    (resumed / "checkpoints" / "latest").write_text(ckpt.name + "\n")
    res = torchrun(resumed, "--resume", "latest")
    assert "resumed from" in res.stderr
    _assert_same_weights(full, resumed)
