"""Shared fixtures of the reliability suite: one tiny synthetic world per session, a tiny model
checkpoint fitted to it, a malicious pickle, the local HTTP server (tests/data's fake_http).

Everything user-facing is exercised through `mplug ...` subprocesses (what Snakemake rules call)
or `mplug.cli.main` in-process where a monkeypatched registry is needed. Torch threads stay at 1:
CI has 2 shared cores.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _helpers import REPO, TINY, mplug  # noqa: E402

sys.path.insert(0, str(REPO / "tests" / "data" / "fixtures_download"))
from fake_http import FakeServer  # noqa: E402


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
