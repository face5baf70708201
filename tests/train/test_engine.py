"""DeepSpeed engine construction on this machine (CPU: gloo) for every ZeRO stage and precision,
checkpoint round trips, and the safe (weights_only) checkpoint loader."""
from __future__ import annotations

import os
import time

import pytest
import torch

from mplug.errors import CheckpointError
from mplug.train.checkpoint import find_checkpoint, load_checkpoint, safe_torch_load, save_checkpoint
from mplug.train.deepspeed_config import EngineConfig
from mplug.train.engine import build_engine, export_state_dict, module_dtype
from mplug.train.optim import OptimConfig

from toy import ToyData, ToyModel, collate

DIST_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "DS_ACCELERATOR",
             "TORCH_EXTENSIONS_DIR")


@pytest.fixture(scope="module", autouse=True)
def _restore_env():
    saved = {k: os.environ.get(k) for k in DIST_VARS}
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _engine(stage: int, precision: str, momentum: bool = True):
    torch.manual_seed(0)
    return build_engine(ToyModel(momentum=momentum), OptimConfig(lr=1e-2, lr_vit=1e-3, warmup_steps=1),
                        EngineConfig(zero_stage=stage, precision=precision), micro_batch_size=8,
                        steps_per_epoch=12, epochs=1)


def _steps(engine, n: int, seed: int) -> None:
    data = ToyData()
    g = torch.Generator().manual_seed(seed)
    dtype = module_dtype(engine)
    for _ in range(n):
        idx = torch.randint(len(data), (8,), generator=g).tolist()
        batch = collate([data[i] for i in idx])
        batch["image"] = batch["image"].to(dtype)
        engine.backward(engine(batch)["loss"])
        engine.step()


# ZeRO-1 is left out: DeepSpeed runs stages 1 and 2 through the same optimizer
# (stage_1_and_2.py); its ds_config is checked in test_config_units.py
@pytest.mark.parametrize("stage, precision", [(0, "fp32"), (2, "fp32"), (2, "bf16"),
                                              (3, "fp32"), (3, "bf16")])
def test_engine_trains_and_checkpoint_round_trips(stage, precision, tmp_path):
    t0 = time.perf_counter()
    engine, info = _engine(stage, precision)
    assert time.perf_counter() - t0 < 120, "engine construction should take seconds once ops are cached"
    assert info.zero_stage == stage and info.precision == precision
    assert info.accelerator == ("cuda" if torch.cuda.is_available() else "cpu")
    assert info.backend == ("nccl" if info.accelerator == "cuda" else "gloo")
    assert engine.zero_optimization_stage() == stage
    assert engine.bfloat16_enabled() is (precision == "bf16")
    assert engine.gradient_clipping() == 1.0
    before = export_state_dict(engine)
    _steps(engine, 3, seed=1)
    save_checkpoint(engine, tmp_path, step=3, trainer_state={"epoch": 0, "micro_in_epoch": 3})
    _steps(engine, 3, seed=2)
    reference = export_state_dict(engine)
    assert not torch.equal(before["head.weight"], reference["head.weight"])  # it trained
    assert int(reference["queue_ptr"].item()) == 6 % 4  # buffers are live and exported
    ckpt = find_checkpoint(tmp_path, "latest")
    assert ckpt is not None and ckpt.name == "step_00000003"
    state = load_checkpoint(engine, ckpt)
    assert state["step"] == 3 and state["micro_in_epoch"] == 3
    assert int(export_state_dict(engine)["queue_ptr"].item()) == 3  # buffers restored too
    _steps(engine, 3, seed=2)
    again = export_state_dict(engine)
    diff = [k for k in reference if not torch.equal(reference[k], again[k])]
    assert not diff, f"{stage}/{precision}: optimizer/scheduler/model not restored exactly: {diff}"


def test_zero3_momentum_encoders_follow_the_ema():
    """ZeRO-3 partitions the frozen momentum copies too; the engine gathers each pair for the
    EMA (engine._zero3_momentum), so p_m <- 0.9 p_m + 0.1 p holds step after step."""
    engine, _ = _engine(3, "fp32")
    assert getattr(engine.module.momentum_update, "_mplug_zero3", False)
    for seed in range(3):
        before = export_state_dict(engine)
        _steps(engine, 1, seed=seed)
        after = export_state_dict(engine)
        assert after["head_m.weight"].abs().sum() > 0  # a real tensor, not an empty shard
        assert not torch.equal(before["head_m.weight"], after["head_m.weight"])
        for name in ("weight", "bias"):  # the EMA reads the online weights of before the step
            want = 0.9 * before[f"head_m.{name}"] + 0.1 * before[f"head.{name}"]
            torch.testing.assert_close(after[f"head_m.{name}"], want)
        assert not torch.equal(after["head.weight"], after["head_m.weight"])


def test_resume_latest_without_checkpoint_and_bad_paths(tmp_path):
    assert find_checkpoint(tmp_path, "latest") is None  # first attempt: start fresh
    assert find_checkpoint(tmp_path, None) is None
    with pytest.raises(CheckpointError, match="not a training checkpoint directory"):
        find_checkpoint(tmp_path, str(tmp_path / "nope"))
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "latest").write_text("step_00000009\n")
    with pytest.raises(CheckpointError, match="trainer_state.json is missing"):
        find_checkpoint(tmp_path, "latest")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_safe_loader_refuses_code_and_names_truncated_files(tmp_path):
    evil = tmp_path / "mp_rank_00_model_states.pt"
    torch.save({"module": {"w": torch.zeros(1)}, "x": _Evil()}, evil)
    with pytest.raises(CheckpointError, match="refused to load"):
        safe_torch_load(evil)
    good = tmp_path / "good.pt"
    torch.save({"module": {"w": torch.ones(3)}}, good)
    assert torch.equal(safe_torch_load(good)["module"]["w"], torch.ones(3))
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:40])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        safe_torch_load(cut)
