"""The one training engine: DeepSpeed, on GPUs and on the CPU alike.

`build_engine` wraps a model in `deepspeed.initialize` with a torch AdamW (official parameter
groups, `optim.py`), a per-step scheduler and the config dict from `deepspeed_config.py`. On a
machine without CUDA it runs DeepSpeed's CPU accelerator over gloo, so tests and the smoke run go
through the same code as a cluster job. It also swaps DeepSpeed's checkpoint loader for one that
unpickles with `weights_only=True` (see `checkpoint.SafeTorchCheckpointEngine`). Under ZeRO-3
the momentum encoders' EMA runs on gathered weights (`_zero3_momentum`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mplug.train.deepspeed_config import EngineConfig, build_ds_config
from mplug.train.distributed import DistEnv, init_process_group
from mplug.train.optim import OptimConfig, build_optimizer, build_scheduler
from mplug.utils.logging import get_logger

if TYPE_CHECKING:  # pragma: no cover
    import torch

log = get_logger("mplug.train.engine")


@dataclass
class EngineInfo:
    """What a run used, for the log and summary.json."""

    accelerator: str
    backend: str
    zero_stage: int
    precision: str
    world_size: int
    micro_batch_size: int
    grad_accum: int
    init_seconds: float
    ds_config: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        return (f"DeepSpeed on {self.accelerator} ({self.backend}), ZeRO stage {self.zero_stage}, "
                f"{self.precision}, world size {self.world_size}, micro batch {self.micro_batch_size}"
                f" x accumulation {self.grad_accum}")

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("accelerator", "backend", "zero_stage", "precision",
                                              "world_size", "micro_batch_size", "grad_accum",
                                              "init_seconds")}


def build_engine(model: "torch.nn.Module", optim_cfg: OptimConfig, engine_cfg: EngineConfig,
                 micro_batch_size: int, steps_per_epoch: int, epochs: int,
                 dist: DistEnv | None = None, total_steps: int | None = None):
    """Return `(engine, info)`. `steps_per_epoch` counts optimizer steps (after accumulation);
    `total_steps` (default all epochs) is where the lr decay ends."""
    start = time.perf_counter()
    dist = init_process_group(dist)
    import deepspeed
    from deepspeed.accelerator import get_accelerator

    from mplug.train.checkpoint import SafeTorchCheckpointEngine

    import torch

    accelerator = get_accelerator().device_name()
    ds_config = build_ds_config(engine_cfg, micro_batch_size, dist.world_size)
    if accelerator == "cpu" and engine_cfg.precision in ("bf16", "amp_bf16") and not _cpu_has_bf16():
        log.warning("bf16 requested but this CPU has no native bf16 support; it will be slow")
    optimizer = build_optimizer(model, optim_cfg)
    _maybe_compile(model, engine_cfg.compile, accelerator)
    _patch_zero_dim_broadcast()
    import logging

    from deepspeed.utils import logger as ds_logger

    ds_logger.setLevel(logging.WARNING)  # its per-step INFO lines drown ours; warnings still show
    engine, _, _, _ = deepspeed.initialize(
        model=model, optimizer=optimizer, config=ds_config,
        lr_scheduler=lambda opt: build_scheduler(opt, optim_cfg, steps_per_epoch, epochs, total_steps))
    engine.checkpoint_engine = SafeTorchCheckpointEngine()
    if engine_cfg.zero_stage == 3 and getattr(model, "momentum_pairs", None):
        _zero3_momentum(model)
    info = EngineInfo(accelerator=accelerator, backend=torch.distributed.get_backend(),
                      zero_stage=engine_cfg.zero_stage, precision=engine_cfg.precision,
                      world_size=dist.world_size, micro_batch_size=micro_batch_size,
                      grad_accum=engine_cfg.grad_accum,
                      init_seconds=round(time.perf_counter() - start, 3), ds_config=ds_config)
    if dist.is_main:
        log.info("%s; engine built in %.1f s", info.describe(), info.init_seconds)
    return engine, info


def _maybe_compile(model, mode: str, accelerator: str) -> bool:
    """torch.compile the model in place when `train.compile` asks for it on this device.
    nn.Module.compile (not torch.compile(model)) keeps the parameter names, so checkpoints and
    exported weights are those of the eager model; DeepSpeed's engine calls the compiled module.
    Graph breaks (the queue pointer's .item(), data-dependent hard negatives) fall back to eager
    for those ops only."""
    from mplug.train.deepspeed_config import compile_enabled

    if not compile_enabled(mode, "cuda" if accelerator == "cuda" else accelerator):
        return False
    model.compile()
    log.info("train.compile=%s: the model's forward is compiled (torch.compile, inductor)", mode)
    return True


def _zero3_momentum(model) -> None:
    """Make the momentum encoders' EMA (and copy_params) work on ZeRO-3-partitioned weights.

    ZeRO-3 partitions every parameter, the frozen `*_m` copies included; outside its own
    submodule's forward a parameter's `.data` is an empty placeholder, so the EMA
    `p_m = m * p_m + (1 - m) * p` that the models run at the top of forward would fail (or, on
    empty shards, do nothing). The wrapped methods gather the online and momentum weights of
    every pair (`deepspeed.zero.GatheredParameters`), apply the update, and re-partition the
    momentum weights from rank 0's result (every rank computes the same values). Cost: one
    all-gather of the paired weights and one broadcast of the momentum weights per step, on top
    of ZeRO-3's own gathers.
    """
    import deepspeed

    def gathered(fn):
        def wrapper(*args, **kwargs):
            params = [t for pair in model.momentum_params() for t in pair]
            with deepspeed.zero.GatheredParameters(params, modifier_rank=0):
                return fn(*args, **kwargs)
        wrapper._mplug_zero3 = True
        return wrapper

    for name in ("momentum_update", "copy_params"):
        fn = getattr(model, name, None)
        if fn is not None and not getattr(fn, "_mplug_zero3", False):
            setattr(model, name, gathered(fn))  # instance attribute: the class is untouched


def _patch_zero_dim_broadcast() -> None:
    """DeepSpeed 0.19.8 `_broadcast_model` does `p.data.view(torch.uint8)`, which fails for a 0-dim
    parameter (our ITC `temp`, shape () as in the official checkpoints). Give such parameters a
    1-element view for the broadcast only, then restore their shape (same storage throughout)."""
    from deepspeed.runtime.engine import DeepSpeedEngine

    original = DeepSpeedEngine._broadcast_model
    if getattr(original, "_mplug_patched", False):
        return

    def _broadcast_model(self):
        zero_dim = [p for p in self.module.parameters() if p.dim() == 0]
        for p in zero_dim:
            p.data = p.data.view(1)
        try:
            original(self)
        finally:
            for p in zero_dim:
                p.data = p.data.view(())

    _broadcast_model._mplug_patched = True
    DeepSpeedEngine._broadcast_model = _broadcast_model
    _patch_zero3_zero_dim_init()


def _patch_zero3_zero_dim_init() -> None:
    """The same `view(torch.uint8)` broadcast in ZeRO-3's parameter conversion
    (`zero.Init._zero_init_param`, DeepSpeed 0.19.8): broadcast a 0-dim parameter through a
    1-element view of its storage; every other parameter goes through DeepSpeed's own code."""
    import torch
    from deepspeed import comm as dist
    from deepspeed.runtime.zero.partition_parameters import Init

    original = Init._zero_init_param
    if getattr(original, "_mplug_patched", False):
        return

    def _zero_init_param(self, param):
        if param.dim() != 0:
            return original(self, param)
        self._convert_to_deepspeed_param(param)
        group = self.get_partition_dp_group(param)
        src = 0 if dist.get_world_group() == group else dist.get_global_rank(group, 0)
        dist.broadcast(param.data.reshape(1).view(torch.uint8), src, group)
        param.partition()
        return None

    _zero_init_param._mplug_patched = True
    Init._zero_init_param = _zero_init_param

    # GatheredParameters(modifier_rank=...) broadcasts the modified weights the same way on
    # exit (used by `_zero3_consolidated_16bit_state_dict` for the root module's `temp`)
    from deepspeed.runtime.zero.partition_parameters import GatheredParameters

    original_exit = GatheredParameters._exit

    def _exit(self, *args, **kwargs):
        for p in self.params or []:
            if p.data.dim() == 0:
                p.data = p.data.view(1)  # same storage; ds_shape keeps () for later gathers
        return original_exit(self, *args, **kwargs)

    GatheredParameters._exit = _exit


def _cpu_has_bf16() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = fh.read()
        return "avx512_bf16" in flags or "amx_bf16" in flags
    except OSError:
        return False


def to_device(batch: dict, device: "torch.device", dtype: "torch.dtype") -> dict:
    """Move tensors to `device`; cast the image to the engine's dtype (bf16 modules take bf16
    pixels). Other float tensors (answer weights, boxes) stay fp32 for the loss."""
    import torch

    out = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device, non_blocking=True)
            if key == "image" and value.is_floating_point():
                value = value.to(dtype)
        out[key] = value
    return out


def module_dtype(engine) -> "torch.dtype":
    import torch

    if engine.bfloat16_enabled():
        return torch.bfloat16
    return torch.float16 if engine.fp16_enabled() else torch.float32


def export_state_dict(engine) -> dict:
    """Whole weights (and buffers: ITC queues) as fp32 CPU tensors; call on every rank."""
    if engine.zero_optimization_stage() == 3:
        state = engine._zero3_consolidated_16bit_state_dict()  # gathered on rank 0 only
    else:
        state = engine.module.state_dict()
    if state is None:
        return {}
    return {k: (v.detach().float() if v.is_floating_point() else v.detach()).cpu().clone()
            for k, v in state.items()}
