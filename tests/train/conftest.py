"""Fixtures of the training tests. Torch threads are kept low: the CI box has 2 shared cores."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from _toyrun import run_toy

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory) -> Path:
    """An uninterrupted toy run of 20 steps (checkpoint every 3)."""
    out = tmp_path_factory.mktemp("reference")
    res = run_toy(out, "--steps", "20")
    assert res.returncode == 0, res.stderr[-3000:]
    return out


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> Path:
    """The synthetic world (tiny scale), made once per session."""
    from mplug.data.synth import generate

    out = tmp_path_factory.mktemp("world") / "data"
    generate(out, seed=0, scale="tiny", progress=False)
    return out


@pytest.fixture(scope="session")
def dist_env_restored():
    """In-process training sets RANK/WORLD_SIZE/...; put the environment back afterwards."""
    import os

    keys = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "DS_ACCELERATOR",
            "TORCH_EXTENSIONS_DIR")
    saved = {k: os.environ.get(k) for k in keys}
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
