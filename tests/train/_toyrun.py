"""Helpers for the training tests: run the toy trainer (toy.py) in a subprocess, read outputs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TOY = Path(__file__).with_name("toy.py")


def toy_env() -> dict:
    env = dict(os.environ)
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLUG_LOG_LEVEL="INFO")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)  # each subprocess is its own single-process job (free port)
    return env


def run_toy(out: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOY), str(out), *args], env=toy_env(),
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)


def start_toy(out: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(TOY), str(out), *args], env=toy_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)


def log_steps(out: Path) -> list[int]:
    path = out / "train_log.jsonl"
    if not path.is_file():
        return []
    steps = []
    for line in path.read_text().splitlines():
        try:
            steps.append(json.loads(line)["step"])
        except (json.JSONDecodeError, KeyError):
            pass
    return steps


def wait_for_step(proc: subprocess.Popen, out: Path, step: int, timeout: float = 240) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise AssertionError(f"trainer exited early ({proc.returncode}):\n{proc.stdout.read()[-3000:]}")
        steps = log_steps(out)
        if steps and max(steps) >= step:
            return
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"trainer did not reach step {step} in {timeout} s")


def weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def make_tiny_config(path: Path, max_steps: int = 2, batch_size: int = 16,
                     grounding_bins: int | None = None, official_itc: bool = True,
                     **train_over) -> Path:
    """config/smoke.yaml with the `mplug_tiny` model (< 1M params) and tiny step counts;
    `grounding_bins` replaces every grounding job's `train.grounding.bins`.
    `official_itc`: ITC with a queue (64) and momentum encoders + distillation in every job but
    VQA (official), which the engine/checkpoint tests exercise; False keeps smoke.yaml's in-batch
    ITC without momentum encoders (what learns from random init, tests/train/test_collapse.py)."""
    import yaml

    cfg = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    entry = next(iter(cfg["models"].values()))
    entry.update(arch="mplug_tiny", stride=3)
    cfg["models"] = {"mplug_tiny": entry}
    sizes = {"image_res": 32, "embed_dim": 16, "queue_size": 64 if official_itc else 0,
             "batch_size": batch_size, "max_steps": max_steps, "log_every": 1,
             "save_every": 1000, "warmup_steps": 2, **train_over}
    for section in ("pretrain", "finetune"):
        for name, job in cfg[section].items():
            job["train"] = {**job["train"], **sizes}
            if official_itc and "distill" not in train_over:
                job["train"]["distill"] = name != "vqa"
            if job["train"].get("scst"):
                job["train"]["batch_size"] = 4
            if grounding_bins and job["train"].get("grounding"):
                job["train"]["grounding"] = {**job["train"]["grounding"], "bins": grounding_bins}
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path
