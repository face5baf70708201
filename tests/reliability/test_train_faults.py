"""Issue 18, cases 4, 7, 8 and 9 (training): `mplug train finetune snli_ve` in-process
(`mplug.cli.main`, the CLI's code path without a new interpreter per case) with
config/smoke.yaml's settings (5 epochs, a checkpoint every 2 steps) on the session's world.

- a second run on the `--out` of a live run is a named error; a lock file left by a dead run
  does not block;
- `--init` with a checkpoint covering part of the backbone is refused, naming what matched, and
  trains with `--allow-partial-init`, which summary.json records;
- resuming with a `--max-steps` below the checkpoint's step is refused naming both numbers and
  leaves the finished run's model.safetensors as it was;
- a damaged trainer_state.json / rng_rank0.json (cut, not UTF-8, wrong shape) is a named error;
- a full disk while writing a checkpoint is a named error (exit 74), not a traceback.
(SIGTERM during start-up needs a real process: tests/reliability/test_preemption.py.)
"""
from __future__ import annotations

import errno
import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from _helpers import PY, REPO, cli_env, disk_fault, failed_without_traceback
from mplug.cli import main
from mplug.train import EXIT_PREEMPTED

STEPS = 3


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    text = (REPO / "config" / "smoke.yaml").read_text()
    assert "      epochs: 1\n" in text and "      save_every: 40\n" in text
    path = tmp_path_factory.mktemp("cfg") / "smoke.yaml"
    path.write_text(text.replace("      epochs: 1\n", "      epochs: 5\n", 1)
                    .replace("      save_every: 40\n", "      save_every: 2\n", 1))
    return path


def _train(world, out, *extra, config, steps=STEPS):
    return ["train", "finetune", "snli_ve", "--config", str(config), "--model", "mplug_smoke",
            "--data", str(world), "--out", str(out), "--max-steps", str(steps), *map(str, extra)]


@pytest.fixture(scope="module")
def trained(world, config, tmp_path_factory) -> Path:
    """A finished 3-step run with its step-2 checkpoint (never modified: copy before breaking)."""
    out = tmp_path_factory.mktemp("trained") / "snli_ve"
    assert main(_train(world, out, config=config)) == 0
    assert (out / "checkpoints" / "step_00000002" / "trainer_state.json").is_file()
    return out


def _copy(trained, tmp_path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(trained, out)
    return out


def test_resume_past_max_steps_is_refused_and_keeps_the_result(trained, world, config, tmp_path, capsys):
    out = _copy(trained, tmp_path)
    before = (out / "model.safetensors").read_bytes()
    rc = main(_train(world, out, "--resume", "latest", config=config, steps=1))
    failed_without_traceback(rc, capsys, "step_00000002 is at step 2", "stops at step 1", "--max-steps 2 or more")
    assert (out / "model.safetensors").read_bytes() == before


CORRUPT = {
    "state_cut": ("trainer_state.json", b'{"epoch": 0, "micro_in_epoch": 2, "st'),
    "state_not_utf8": ("trainer_state.json", b'{"epoch": 0, "step": 2, "seed": "\xff\xfe"}'),
    "state_not_a_state": ("trainer_state.json", b"[1, 2, 3]"),
    "rng_cut": ("rng_rank0.json", b'{"python": [3, [1, 2'),
    "rng_wrong_shape": ("rng_rank0.json", b'{"python": 7}'),
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_damaged_checkpoint_json_is_a_named_error(case, trained, world, config, tmp_path, capsys):
    out = _copy(trained, tmp_path)
    name, data = CORRUPT[case]
    bad = out / "checkpoints" / "step_00000002" / name
    bad.write_bytes(data)
    rc = main(_train(world, out, "--resume", "latest", config=config))
    failed_without_traceback(rc, capsys, str(bad), "resume from another")


def test_partial_init_is_refused_unless_allowed(trained, world, config, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    state = load_file(str(trained / "model.safetensors"))
    key = next(k for k in state if k.startswith("visual_encoder."))
    partial = tmp_path / "one_tensor.safetensors"
    save_file({key: state[key]}, str(partial))  # 1 matching tensor of the model's ~200
    rc = main(_train(world, tmp_path / "a", "--init", partial, config=config))
    failed_without_traceback(rc, capsys, str(partial), "visual_encoder 1/", "text_encoder 0/", "fusion_encoder 0/",
            "--allow-partial-init")
    assert not (tmp_path / "a" / "model.safetensors").exists()
    rc = main(_train(world, tmp_path / "b", "--init", partial, "--allow-partial-init",
                     config=config, steps=1))
    assert rc == 0, capsys.readouterr().err[-2000:]
    init = json.loads((tmp_path / "b" / "summary.json").read_text())["run"]["init"]
    assert init["partial"] is True and init["backbone"]["visual_encoder"].startswith("1/"), init
    assert init["backbone"]["text_encoder"].startswith("0/"), init


def test_full_init_reports_the_backbone_covered(trained, world, config, tmp_path, capsys):
    rc = main(_train(world, tmp_path / "c", "--init", trained / "model.safetensors", config=config,
                     steps=1))
    assert rc == 0, capsys.readouterr().err[-2000:]
    init = json.loads((tmp_path / "c" / "summary.json").read_text())["run"]["init"]
    assert init["partial"] is False
    assert all(a == b for a, b in (v.split("/") for v in init["backbone"].values())), init


def _log_steps(out: Path) -> list[int]:
    path = out / "train_log.jsonl"
    steps = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            steps.append(json.loads(line)["step"])
        except (json.JSONDecodeError, KeyError):
            pass  # a line being written
    return steps


def test_second_run_on_the_same_out_is_refused_while_the_first_runs(world, config, tmp_path, capsys):
    """A live `mplug train` holds its --out: `--resume latest` there is refused naming it (it would
    resume from the first run's live checkpoint and replace its result); once the first is gone
    (the lock file stays, the kernel's lock does not) the same command resumes."""
    out = tmp_path / "run"
    first = subprocess.Popen([PY, "-m", "mplug.cli", *_train(world, out, config=config, steps=500)],
                             env=cli_env(), cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 240
        while not (out / "checkpoints" / "latest").is_file():
            assert first.poll() is None, first.stdout.read()[-3000:]
            assert time.time() < deadline, "the first run wrote no checkpoint"
            time.sleep(0.05)
        rc = main(_train(world, out, "--resume", "latest", config=config, steps=500))
        failed_without_traceback(rc, capsys, str(out), "another training run", f"pid {first.pid}")
        assert first.poll() is None, "the second run disturbed the first"
    finally:
        first.send_signal(signal.SIGTERM)
        text, _ = first.communicate(timeout=240)
    assert first.returncode == EXIT_PREEMPTED, text[-3000:]
    steps = _log_steps(out)
    assert steps == list(range(1, len(steps) + 1))  # one writer only
    assert (out / ".lock").exists()
    assert main(_train(world, out, "--resume", "latest", config=config, steps=steps[-1] + 1)) == 0
    assert json.loads((out / "summary.json").read_text())["steps"] == steps[-1] + 1


@pytest.mark.parametrize("code", ["ENOSPC", "EROFS"])
def test_checkpoint_write_on_a_full_or_read_only_disk(code, world, config, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    disk_fault(monkeypatch, out / "checkpoints", getattr(errno, code))
    rc = main(_train(world, out, config=config))
    err = failed_without_traceback(rc, capsys, str(out / "checkpoints"), code, "cannot write")
    assert rc == 74, err
    assert not (out / "model.safetensors").exists()
