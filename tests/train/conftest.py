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
