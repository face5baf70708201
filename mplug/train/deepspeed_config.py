"""The DeepSpeed config dict, built from the YAML `train.engine` section (never hand-kept).

Defaults follow the official `mPLUG/configs/ds_config.json` (github.com/alibaba/AliceMind): ZeRO stage 2 with
`overlap_comm: false`, bf16, gradient clipping 1.0, `zero_allow_untested_optimizer` (we pass a
torch AdamW, which also avoids compiling DeepSpeed's cpu_adam op on the CPU). The official
`train_batch_size` is a placeholder; here it is exact: micro batch x accumulation x world size.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from mplug.errors import ConfigError

# amp_bf16: fp32 weights and optimizer, matmuls/convolutions under torch.autocast(bfloat16)
# (DeepSpeed's `torch_autocast`); bf16: DeepSpeed's bf16 mode (bf16 weights, fp32 master, official)
PRECISIONS = ("bf16", "fp16", "fp32", "amp_bf16")
_NEVER_PRINT = 10**9  # DeepSpeed prints its own step lines every `steps_per_print`; we log ourselves


COMPILE_MODES = ("off", "on", "auto")


def compile_enabled(mode: str, device_type: str) -> bool:
    """`train.compile` resolved for the device the engine runs on."""
    return mode == "on" or (mode == "auto" and device_type == "cuda")


@dataclass
class EngineConfig:
    """`train.engine` in the YAML."""

    zero_stage: int = 2
    precision: str = "bf16"  # bf16 (official) | fp16 (dynamic loss scaling) | fp32 | amp_bf16
    grad_clip: float = 1.0
    grad_accum: int = 1
    offload_optimizer: bool = False  # ZeRO-Offload of optimizer states to CPU (stage >= 1)
    overlap_comm: bool = False
    # DeepSpeed's activation-checkpointing section; our models checkpoint with
    # torch.utils.checkpoint when the model config says grad_checkpointing (as the official code),
    # so this only matters for partitioning activations across model-parallel ranks.
    partition_activations: bool = False
    # torch.compile of the model (nn.Module.compile: in place, state-dict keys unchanged):
    # off | on | auto (= on for CUDA only). Default off: no GPU measurement shows it faster yet
    # (docs/benchmarks.md), and on the CPU compiling costs more than a short run gains.
    compile: str = "off"

    def validate(self, where: str = "train.engine") -> "EngineConfig":
        checks = [
            (self.zero_stage in (0, 1, 2, 3) and not isinstance(self.zero_stage, bool),
             f"{where}.zero_stage={self.zero_stage!r}: use 0, 1, 2 or 3"),
            (self.precision in PRECISIONS, f"{where}.precision={self.precision!r}: use one of {PRECISIONS}"),
            (isinstance(self.grad_clip, (int, float)) and self.grad_clip >= 0,
             f"{where}.grad_clip={self.grad_clip!r}: must be a number >= 0 (0 disables clipping)"),
            (isinstance(self.grad_accum, int) and self.grad_accum >= 1,
             f"{where}.grad_accum={self.grad_accum!r}: must be an integer >= 1"),
            (self.compile in COMPILE_MODES, f"{where}.compile={self.compile!r}: use one of {COMPILE_MODES}"),
            (not self.offload_optimizer or self.zero_stage >= 1,
             f"{where}.offload_optimizer needs zero_stage >= 1 (got {self.zero_stage})"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)
        return self

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, where: str = "train.engine") -> "EngineConfig":
        return dataclass_from_dict(cls, data or {}, where).validate(where)


def dataclass_from_dict(cls, data: Mapping[str, Any], where: str):
    """Build dataclass `cls` from a mapping; an unknown key is a ConfigError naming it."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key {where}.{unknown[0]}; known keys: {', '.join(sorted(fields))}")
    return cls(**dict(data))


def build_ds_config(engine: EngineConfig, micro_batch_size: int, world_size: int) -> dict[str, Any]:
    """DeepSpeed's config dict for `deepspeed.initialize(config=...)`."""
    engine.validate()
    if micro_batch_size < 1 or world_size < 1:
        raise ConfigError(f"micro batch size ({micro_batch_size}) and world size ({world_size}) must be >= 1")
    zero: dict[str, Any] = {"stage": engine.zero_stage, "overlap_comm": engine.overlap_comm}
    if engine.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": False}
    if engine.zero_stage == 3:
        # export needs whole weights: gather them on save instead of writing only shards
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return {
        "train_batch_size": micro_batch_size * engine.grad_accum * world_size,
        "train_micro_batch_size_per_gpu": micro_batch_size,
        "gradient_accumulation_steps": engine.grad_accum,
        "steps_per_print": _NEVER_PRINT,
        "zero_optimization": zero,
        "zero_allow_untested_optimizer": True,
        "gradient_clipping": float(engine.grad_clip),
        "bf16": {"enabled": engine.precision == "bf16"},
        "fp16": {"enabled": engine.precision == "fp16", "loss_scale": 0},  # 0 = dynamic
        "torch_autocast": {"enabled": engine.precision == "amp_bf16", "dtype": "bfloat16"},
        "activation_checkpointing": {"partition_activations": engine.partition_activations,
                                     "contiguous_memory_optimization": False, "profile": False},
        "wall_clock_breakdown": False,
    }


def micro_batch_for(global_batch: int, engine: EngineConfig, world_size: int) -> int:
    """Per-rank micro batch for a global batch (the paper's numbers are global: 1024, 256...)."""
    per_step = engine.grad_accum * world_size
    if global_batch % per_step:
        raise ConfigError(f"batch size {global_batch} is not divisible by grad_accum "
                          f"({engine.grad_accum}) x world size ({world_size}); change train.*.batch_size "
                          "or train.engine.grad_accum")
    return global_batch // per_step
