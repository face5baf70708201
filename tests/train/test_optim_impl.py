"""train.adamw_impl: every torch AdamW implementation makes the same update, alone and under
DeepSpeed ZeRO-2 (which steps the torch optimizer on its fp32 partitions)."""
from __future__ import annotations

import pytest
import torch

from mplug.errors import ConfigError
from mplug.train.deepspeed_config import EngineConfig
from mplug.train.engine import build_engine, export_state_dict
from mplug.train.optim import ADAMW_IMPLS, OptimConfig, build_optimizer
from mplug.train.settings import parse_train_settings

from toy import ToyData, ToyModel, collate

pytestmark = pytest.mark.usefixtures("dist_env_restored")  # in-process DeepSpeed sets RANK/...


def _plain_steps(impl: str) -> dict:
    torch.manual_seed(0)
    model = ToyModel()
    opt = build_optimizer(model, OptimConfig(lr=1e-2, lr_vit=1e-3, adamw_impl=impl))
    data = ToyData()
    for i in range(3):
        opt.zero_grad()
        model(collate([data[j] for j in range(8 * i, 8 * i + 8)]))["loss"].backward()
        opt.step()
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_every_implementation_makes_the_same_update():
    ref = _plain_steps("for_loop")
    for impl in ADAMW_IMPLS:
        got = _plain_steps(impl)
        for k in ref:
            torch.testing.assert_close(got[k], ref[k], rtol=1e-5, atol=1e-6, msg=f"{impl}: {k}")
    torch.manual_seed(0)
    assert not torch.equal(ref["head.weight"], ToyModel().head.weight)  # the steps moved the weights


def _engine_weights(impl: str) -> dict:
    torch.manual_seed(0)
    engine, _ = build_engine(ToyModel(), OptimConfig(lr=1e-2, lr_vit=1e-3, warmup_steps=1, adamw_impl=impl),
                             EngineConfig(zero_stage=2, precision="fp32"), micro_batch_size=8,
                             steps_per_epoch=3, epochs=1)
    data = ToyData()
    for i in range(3):
        engine.backward(engine(collate([data[j] for j in range(8 * i, 8 * i + 8)]))["loss"])
        engine.step()
    return export_state_dict(engine)


def test_fused_adamw_under_deepspeed_zero2_matches_the_default():
    ref, fused = _engine_weights("auto"), _engine_weights("fused")
    assert isinstance(fused, dict) and fused
    for k in ref:
        torch.testing.assert_close(fused[k], ref[k], rtol=1e-5, atol=1e-6, msg=k)


def test_unknown_implementation_names_the_key():
    train = {"epochs": 1, "batch_size": 8, "lr_text": 1e-4, "lr_vision": 1e-5, "image_res": 64,
             "adamw_impl": "apex"}
    with pytest.raises(ConfigError, match=r"finetune.vqa.train.adamw_impl='apex': use one of"):
        parse_train_settings(train, 0, "finetune.vqa.train")
