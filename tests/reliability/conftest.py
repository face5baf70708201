"""Shared fixtures of the reliability suite: one tiny synthetic world per session, a tiny model
checkpoint fitted to it, a malicious pickle, the CLI run as a user runs it, the local HTTP server.

Everything user-facing is exercised through `mplug ...` subprocesses (what Snakemake rules call)
or `mplug.cli.main` in-process where a monkeypatched registry is needed. Torch threads stay at 1:
CI has 2 shared cores.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "data" / "fixtures_download"))
from fake_http import FakeServer  # noqa: E402,F401 - re-exported for the download tests

PY = sys.executable
TINY = "mplug_tiny"


def cli_env(**extra: str) -> dict:
    env = dict(os.environ)
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               MPLUG_LOG_LEVEL="INFO", PYTHONUNBUFFERED="1", **extra)
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)  # each subprocess is its own single-process job
    return env


def mplug(*args: str, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `mplug ARGS` like a user (python -m mplug.cli from this checkout)."""
    return subprocess.run([PY, "-m", "mplug.cli", *map(str, args)], env=cli_env(),
                          capture_output=True, text=True, timeout=timeout, cwd=cwd or REPO)


def start_mplug(*args: str, cwd: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen([PY, "-m", "mplug.cli", *map(str, args)], env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=cwd or REPO)


def assert_user_error(res: subprocess.CompletedProcess, *needles: str) -> str:
    """A non-zero exit with a message (no traceback) containing every needle; returns stderr."""
    err = res.stderr + res.stdout
    assert res.returncode != 0, f"expected a failure, got rc 0:\n{err[-2000:]}"
    assert "Traceback" not in err, f"a traceback instead of a message:\n{err[-3000:]}"
    for needle in needles:
        assert needle in err, f"{needle!r} not in the message:\n{err[-2000:]}"
    return err


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> Path:
    """The tiny synthetic world, made once through the CLI (never modified: copy before breaking)."""
    out = tmp_path_factory.mktemp("world") / "smoke"
    res = mplug("data", "synth", "--out", out, "--scale", "tiny", "--quiet")
    assert res.returncode == 0, res.stderr[-3000:]
    assert (out / "manifest.json").is_file()
    return out


@pytest.fixture()
def world_copy(world, tmp_path):
    """copy(name) -> a writable copy of one dataset folder (with the world's vocab.txt beside it)."""

    def copy(name: str) -> Path:
        root = tmp_path / "data"
        root.mkdir(exist_ok=True)
        shutil.copytree(world / name, root / name)
        shutil.copy(world / "vocab.txt", root / "vocab.txt")
        return root / name

    return copy


def _vocab_size(world: Path) -> int:
    return sum(1 for line in (world / "vocab.txt").read_text(encoding="utf-8").splitlines())


@pytest.fixture(scope="session")
def tiny_ckpt(world, tmp_path_factory) -> dict[str, Path]:
    """Random-init `mplug_tiny` weights per model task, sized to the world's vocabulary, as
    safetensors (what training exports) and as a plain torch state dict (.pth)."""
    import torch

    from mplug.models import build_model, get_config
    from mplug.models.loading import save_state_dict

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("ckpt")
    vocab = max(_vocab_size(world), get_config(TINY).text.vocab_size)
    paths = {}
    for task in ("vqa", "grounding"):
        state = build_model(TINY, task, vocab_size=vocab).state_dict()
        save_state_dict(state, out / f"{task}.safetensors")
        torch.save(state, out / f"{task}.pth")
        paths[task] = out / f"{task}.safetensors"
        paths[f"{task}_pth"] = out / f"{task}.pth"
    return paths


class _RunsCode:
    """Unpickling this calls `Path.touch(marker)`: any code could run there instead."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture()
def evil_ckpt(tmp_path) -> tuple[Path, Path]:
    """(checkpoint, marker): a torch checkpoint whose pickle would create `marker` if loaded
    without weights_only. Tests assert the marker never appears."""
    import torch

    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(2)}, "payload": _RunsCode(marker)}, path)
    assert not marker.exists()
    return path, marker


@pytest.fixture()
def server():
    with FakeServer(b"".join(bytes([i % 251]) for i in range(64_000)), slow_s=1.5) as srv:
        yield srv
