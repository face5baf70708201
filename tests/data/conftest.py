"""Shared fixtures: one tiny synthetic world per test session (a few seconds)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def synth_world(tmp_path_factory) -> tuple[Path, dict]:
    """(data root, manifest) of `mplug data synth --scale tiny --seed 0`. Read-only: copy a
    dataset folder (`copy_dataset`) before corrupting anything."""
    import torch

    torch.set_num_threads(1)
    from mplug.data import synth

    root = tmp_path_factory.mktemp("synth") / "world"
    manifest = synth.generate(root, seed=0, scale="tiny", progress=False)
    return root, manifest


@pytest.fixture(scope="session")
def tokenizer(synth_world):
    from mplug.data.tokenizer import load_tokenizer

    return load_tokenizer(synth_world[0] / "vocab.txt")


@pytest.fixture
def copy_dataset(synth_world, tmp_path):
    """Copy one dataset folder of the world into a fresh root; returns the new root."""
    def _copy(*names: str) -> Path:
        root = tmp_path / "world"
        for name in names:
            shutil.copytree(synth_world[0] / name, root / name)
        shutil.copy(synth_world[0] / "vocab.txt", root / "vocab.txt")
        return root
    return _copy
