"""precision: amp_bf16 — fp32 weights and optimizer, the Linear layers run under
torch.autocast(bfloat16) through DeepSpeed's `torch_autocast` (CPU autocast here)."""
from __future__ import annotations

import pytest
import torch

from mplug.train.deepspeed_config import EngineConfig, build_ds_config
from mplug.train.engine import build_engine, module_dtype
from mplug.train.optim import OptimConfig

from toy import ToyData, ToyModel, collate

pytestmark = pytest.mark.usefixtures("dist_env_restored")  # in-process DeepSpeed sets RANK/...


def test_ds_config_turns_on_torch_autocast_only_for_amp_bf16():
    amp = build_ds_config(EngineConfig(precision="amp_bf16"), 8, 1)
    assert amp["torch_autocast"] == {"enabled": True, "dtype": "bfloat16"}
    assert not amp["bf16"]["enabled"] and not amp["fp16"]["enabled"]
    assert not build_ds_config(EngineConfig(precision="bf16"), 8, 1)["torch_autocast"]["enabled"]


def _train(precision: str, steps: int = 4):
    torch.manual_seed(0)
    engine, _ = build_engine(ToyModel(), OptimConfig(lr=1e-2, lr_vit=1e-3, warmup_steps=1),
                             EngineConfig(zero_stage=2, precision=precision), micro_batch_size=8,
                             steps_per_epoch=steps, epochs=1)
    seen = []
    engine.module.head.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    data, losses = ToyData(), []
    for i in range(steps):
        batch = collate([data[j] for j in range(8 * i, 8 * i + 8)])
        batch["image"] = batch["image"].to(module_dtype(engine))
        out = engine(batch)
        engine.backward(out["loss"])
        engine.step()
        losses.append(float(out["loss"]))
    return engine, seen, losses


def test_amp_bf16_keeps_fp32_weights_and_multiplies_in_bf16():
    engine, seen, losses = _train("amp_bf16")
    assert module_dtype(engine) == torch.float32
    assert {p.dtype for p in engine.module.parameters()} == {torch.float32}
    assert set(seen) == {torch.bfloat16}  # the head's Linear ran under autocast
    _, seen32, losses32 = _train("fp32")
    assert set(seen32) == {torch.float32}
    # the same run up to bf16 rounding in the matmuls
    assert losses == pytest.approx(losses32, rel=0.05) and losses != losses32
