"""Item 2 (and item 6 through `mplug train`): preemption of a real training process and the
checkpoints a training command reads.

`mplug train finetune snli_ve` with config/smoke.yaml (the smoke DAG's own settings, model
mplug_smoke; 5 epochs instead of 1 so that --max-steps 20 is not capped by the tiny world's
11 steps per epoch) on the session's synthetic world. SIGTERM (what SLURM sends before it preempts) must
write a checkpoint and exit 75; the SLURM profile must retry failed jobs and the training rules
must pass `--resume latest`, so the requeued job continues from that step.
"""
from __future__ import annotations

import json
import shutil
import signal
import time
from pathlib import Path

import pytest
import yaml

from _helpers import REPO, assert_user_error, mplug, start_mplug
from mplug.train import EXIT_PREEMPTED

STEPS = 20


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    text = (REPO / "config" / "smoke.yaml").read_text()
    assert "      epochs: 1\n" in text
    path = tmp_path_factory.mktemp("cfg") / "smoke.yaml"
    path.write_text(text.replace("      epochs: 1\n", "      epochs: 5\n", 1))
    return path


def _train(world, out, *extra, config):
    return ["train", "finetune", "snli_ve", "--config", config, "--model", "mplug_smoke",
            "--data", world, "--out", out, "--max-steps", str(STEPS), *extra]


def _log_steps(out: Path) -> list[int]:
    path = out / "train_log.jsonl"
    if not path.is_file():
        return []
    steps = []
    for line in path.read_text().splitlines():
        try:
            steps.append(json.loads(line)["step"])
        except (json.JSONDecodeError, KeyError):
            pass  # a line being written
    return steps


@pytest.fixture(scope="module")
def preempted(world, config, tmp_path_factory):
    """(out, step at the checkpoint, output, pristine copy of the run folder) after a SIGTERM."""
    out = tmp_path_factory.mktemp("preempt") / "snli_ve"
    proc = start_mplug(*_train(world, out, config=config))
    deadline = time.time() + 240
    while not _log_steps(out) or max(_log_steps(out)) < 3:
        if proc.poll() is not None:
            pytest.fail(f"trainer exited early ({proc.returncode}):\n{proc.stdout.read()[-3000:]}")
        assert time.time() < deadline, "trainer did not reach step 3"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    text, _ = proc.communicate(timeout=240)
    assert proc.returncode == EXIT_PREEMPTED, text[-3000:]
    tag = (out / "checkpoints" / "latest").read_text().strip()
    step = int(tag.split("_")[1])
    copy = out.parent / "pristine"
    shutil.copytree(out, copy)
    return out, step, text, copy


def test_sigterm_writes_a_checkpoint_and_exits_75(preempted):
    out, step, text, _ = preempted
    assert 3 <= step < STEPS
    assert max(_log_steps(out)) == step  # the step in flight finished, then it stopped
    ckpt = out / "checkpoints" / f"step_{step:08d}"
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state["step"] == step
    assert not (out / "model.safetensors").exists() and not (out / "summary.json").exists()
    assert "SIGTERM received" in text and "--resume latest" in text and "Traceback" not in text


def test_slurm_profile_requeues_and_rules_resume():
    """Exit 75 requeues the SLURM job itself (same job id, `scontrol requeue` in the rule shell),
    so the profile needs no Snakemake retries (which would resubmit a user's `scancel`); SLURM
    requeues node failures; the training rules pass --resume latest so a requeue continues."""
    prof = yaml.safe_load((REPO / "slurm" / "config.yaml").read_text())
    assert prof.get("retries", 0) == 0
    assert prof.get("slurm-requeue") is True
    assert prof.get("rerun-incomplete") is True
    common = (REPO / "workflow" / "rules" / "common.smk").read_text()
    assert "scontrol requeue" in common and '"$rc" -eq 75' in common
    for rule in ("pretrain", "finetune"):
        text = (REPO / "workflow" / "rules" / f"{rule}.smk").read_text()
        assert "--resume latest" in text and "logged_training(" in text, rule


def test_resume_continues_from_the_checkpoint_step(preempted, world, config):
    out, step, _, _ = preempted
    res = mplug(*_train(world, out, "--resume", "latest", config=config))
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"step {step}" in res.stderr and "resumed from" in res.stderr
    assert _log_steps(out) == list(range(1, STEPS + 1))  # every step exactly once
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["steps"] == STEPS
    assert (out / "model.safetensors").stat().st_size > 0


def _copy_ckpt(preempted, tmp_path) -> tuple[Path, Path]:
    _, step, _, pristine = preempted
    out = tmp_path / "run"
    shutil.copytree(pristine, out)
    ckpt = out / "checkpoints" / f"step_{step:08d}"
    states = sorted(ckpt.glob("*model_states.pt"))
    assert states, sorted(p.name for p in ckpt.iterdir())
    return out, states[0]


def test_resume_refuses_code_running_pickle(preempted, world, config, evil_ckpt, tmp_path):
    evil, marker = evil_ckpt
    out, states = _copy_ckpt(preempted, tmp_path)
    shutil.copy(evil, states)
    res = mplug(*_train(world, out, "--resume", "latest", config=config))
    assert_user_error(res, str(states.name), "refused")
    assert not marker.exists(), "the pickle's code ran"
    assert not (out / "model.safetensors").exists()


def test_resume_from_truncated_checkpoint_names_the_file(preempted, world, config, tmp_path):
    out, states = _copy_ckpt(preempted, tmp_path)
    states.write_bytes(states.read_bytes()[: states.stat().st_size // 3])
    res = mplug(*_train(world, out, "--resume", "latest", config=config))
    err = assert_user_error(res, str(states.name))
    assert "truncated" in err or "corrupt" in err


def test_init_refuses_code_running_pickle(world, config, evil_ckpt, tmp_path):
    evil, marker = evil_ckpt
    res = mplug(*_train(world, tmp_path / "run", "--init", evil, config=config))
    assert_user_error(res, str(evil), "refused")
    assert not marker.exists(), "the pickle's code ran"


def test_init_for_another_model_names_the_key(world, config, tiny_ckpt, tmp_path):
    res = mplug(*_train(world, tmp_path / "run", "--init", tiny_ckpt["vqa"], config=config))
    assert_user_error(res, str(tiny_ckpt["vqa"]), "visual_encoder.")


def test_sigterm_during_start_up_exits_75(world, config, tmp_path):
    """Case 10: the handler is installed before the engine starts, so SLURM's SIGTERM while
    DeepSpeed initialises is a preemption (75, requeue), not a kill (143)."""
    out = tmp_path / "run"
    proc = start_mplug(*_train(world, out, config=config))
    seen = []
    for line in proc.stdout:  # "... N examples, model ..." is logged just before the engine starts
        seen.append(line)
        if " examples, model " in line:
            break
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=240)
    text = "".join(seen) + rest
    assert proc.returncode == EXIT_PREEMPTED, f"rc {proc.returncode}:\n{text[-3000:]}"
    assert "SIGTERM received while starting" in text and "Traceback" not in text
    assert not _log_steps(out)  # it stopped before the first step
