"""mplug.plan_disk's checkpoint and weight sizes against the files DeepSpeed and the exporter
really write (the plan's disk column is built from them)."""
from __future__ import annotations

import pytest
import torch

from mplug.models.loading import save_state_dict
from mplug.plan_disk import checkpoint_bytes, weights_bytes
from mplug.train.checkpoint import save_checkpoint
from mplug.train.deepspeed_config import EngineConfig
from mplug.train.engine import build_engine, export_state_dict, module_dtype
from mplug.train.optim import OptimConfig

from toy import ToyData, ToyModel, collate

pytestmark = pytest.mark.usefixtures("dist_env_restored")  # in-process DeepSpeed sets RANK/...
DIM = 384  # ~300K parameters: the tensors outweigh the pickles' own bytes


def _tensor_files_bytes(tag_dir) -> int:
    """The checkpoint's .pt files (the rng and trainer-state JSONs are a few kB per rank)."""
    return sum(f.stat().st_size for f in tag_dir.iterdir() if f.suffix == ".pt")


@pytest.mark.parametrize("stage, precision", [(0, "fp32"), (2, "fp32"), (2, "bf16"), (3, "bf16")])
def test_checkpoint_bytes_match_deepspeeds_files(stage, precision, tmp_path):
    torch.manual_seed(0)
    model = ToyModel(dim=DIM)
    predicted = checkpoint_bytes(model, precision, stage)
    engine, _ = build_engine(model, OptimConfig(lr=1e-2, lr_vit=1e-3, warmup_steps=1),
                             EngineConfig(zero_stage=stage, precision=precision), micro_batch_size=8,
                             steps_per_epoch=4, epochs=1)
    batch = collate([ToyData(dim=DIM)[i] for i in range(8)])
    batch["image"] = batch["image"].to(module_dtype(engine))
    engine.backward(engine(batch)["loss"])
    engine.step()  # the optimizer's moments exist only after a step
    tag = save_checkpoint(engine, tmp_path, 1, {})
    actual = _tensor_files_bytes(tag)
    assert actual == pytest.approx(predicted, rel=0.02), (stage, precision, actual, predicted)
    if stage == 2 and precision == "bf16":
        out = tmp_path / "model.safetensors"
        save_state_dict(export_state_dict(engine), out)
        assert out.stat().st_size == pytest.approx(weights_bytes(model), rel=0.01)


def test_momentum_copies_are_stored_but_not_optimised():
    with_momentum, without = ToyModel(dim=DIM), ToyModel(dim=DIM, momentum=False)
    without.head_m.requires_grad_(True)  # the twin trained: its Adam moments are stored too
    assert checkpoint_bytes(without, "bf16", 2) - checkpoint_bytes(with_momentum, "bf16", 2) == \
        12 * sum(p.numel() for p in with_momentum.head_m.parameters())
