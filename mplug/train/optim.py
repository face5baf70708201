"""AdamW with the official parameter groups, and the learning-rate schedules.

Parameter groups (official `create_two_optimizer`, optim/optim_factory.py:141-171): parameters
whose name contains "visual_encoder" get `lr_vit` (the official `lr2`), all others `lr` (`lr1`);
names containing "bias" or "LayerNorm.weight" get no weight decay. CLIP's own LayerNorms are
named `ln_*`, so they DO get decay, as in the official code.

Schedules (`schedule` option; YAML `train.scheduler`):
* `cosine` (default; the paper, section 5.1): linear warm-up from `warmup_lr` to each
  group's peak over `warmup_steps` optimizer steps, then cosine decay to `min_lr` at the last
  step. The lr changes every step. `linear` decays linearly instead; `constant` holds the peak
  after the warm-up.
* `albef_epoch` (the official fine-tuning scripts, ALBEF scheme): timm's CosineLRScheduler over
  `epochs` "t" units with `warmup_epochs` warm-up units; during epoch 0 it is stepped to
  `t = i // 100` every 100 iterations while `i <= warmup_epochs * 100`, and at the start of
  each later epoch e to `t = e + warmup_epochs`. So the warm-up lasts `warmup_epochs * 100`
  iterations whatever the epoch length, the cosine is evaluated at `t = warmup_epochs + e`
  (not from 0), and once `t >= epochs` the lr stays at `min_lr`.
Both use absolute `warmup_lr`/`min_lr` shared by the groups and a per-group peak, like timm.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

from mplug.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import torch

NO_DECAY = ("bias", "LayerNorm.weight")
VIT_MARKER = "visual_encoder"
SCHEDULES = ("cosine", "linear", "constant", "albef_epoch")
# torch.optim.AdamW's implementations: 'auto' = torch's choice (foreach on CUDA, a loop on CPU);
# 'fused' = one kernel for all parameters (CUDA, and CPU since torch 2.4); same update rule
ADAMW_IMPLS = ("auto", "foreach", "for_loop", "fused")
ALBEF_STEP_SIZE = 100  # iterations per warm-up unit in the official scripts


@dataclass
class OptimConfig:
    """Learning-rate settings of one training stage."""

    lr: float  # peak lr of everything but the ViT (official lr1)
    lr_vit: float  # peak lr of the ViT (official lr2)
    weight_decay: float = 0.02
    warmup_lr: float = 1e-6
    min_lr: float = 1e-6
    warmup_steps: int = 1000  # step_cosine
    warmup_epochs: int = 0  # albef_epoch
    schedule: str = "cosine"
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    adamw_impl: str = "auto"  # ADAMW_IMPLS; YAML train.adamw_impl

    def validate(self, where: str) -> "OptimConfig":
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"{where}.schedule={self.schedule!r}: use one of {SCHEDULES}")
        if self.adamw_impl not in ADAMW_IMPLS:
            raise ConfigError(f"{where}.adamw_impl={self.adamw_impl!r}: use one of {ADAMW_IMPLS}")
        for key in ("lr", "lr_vit", "weight_decay", "warmup_lr", "min_lr"):
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{where}.{key}={value!r}: must be a number >= 0")
        for key in ("warmup_steps", "warmup_epochs"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{where}.{key}={value!r}: must be an integer >= 0")
        return self


def param_groups(named_params: Iterable[tuple[str, "torch.nn.Parameter"]], cfg: OptimConfig) -> list[dict]:
    """The official four groups: {ViT, rest} x {decay, no decay}. Frozen params are left out."""
    groups = {(vit, decay): [] for vit in (True, False) for decay in (True, False)}
    for name, param in named_params:
        if not param.requires_grad:  # momentum encoders (`*_m`) are updated by EMA, not AdamW
            continue
        vit = VIT_MARKER in name
        decay = not any(nd in name for nd in NO_DECAY)
        groups[(vit, decay)].append(param)
    out = []
    for (vit, decay), params in groups.items():
        if params:
            out.append({"params": params, "lr": cfg.lr_vit if vit else cfg.lr,
                        "weight_decay": cfg.weight_decay if decay else 0.0,
                        "name": f"{'vit' if vit else 'rest'}_{'decay' if decay else 'no_decay'}"})
    if not out:
        raise ConfigError("the model has no trainable parameters")
    return out


def build_optimizer(model: "torch.nn.Module", cfg: OptimConfig) -> "torch.optim.AdamW":
    """torch AdamW (DeepSpeed accepts it with zero_allow_untested_optimizer; no op to compile)."""
    import torch

    groups = param_groups(model.named_parameters(), cfg)
    for g in groups:
        g["peak_lr"] = g["lr"]
    impl = {"auto": {}, "fused": {"fused": True}, "foreach": {"foreach": True},
            "for_loop": {"foreach": False}}[cfg.adamw_impl]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps,
                             weight_decay=cfg.weight_decay, **impl)


def step_lr(step: int, peak: float, cfg: OptimConfig, total_steps: int) -> float:
    """lr at optimizer step `step` (0-based) of `total_steps`: linear warm-up, then the decay."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.warmup_lr + (peak - cfg.warmup_lr) * step / cfg.warmup_steps
    if cfg.schedule == "constant":
        return peak
    decay_steps = max(1, total_steps - cfg.warmup_steps - 1)
    progress = min(1.0, (step - cfg.warmup_steps) / decay_steps)
    if cfg.schedule == "linear":
        return peak + (cfg.min_lr - peak) * progress
    return cfg.min_lr + 0.5 * (peak - cfg.min_lr) * (1.0 + math.cos(math.pi * progress))


def timm_cosine_lr(t: float, peak: float, cfg: OptimConfig, epochs: int) -> float:
    """timm's own CosineLRScheduler(t_initial=epochs, warmup_t=warmup_epochs, cycle_limit=1) at t:
    the scheduler the official scripts build with timm's `create_scheduler`."""
    import torch
    from timm.scheduler import CosineLRScheduler

    param = torch.nn.Parameter(torch.zeros(()))
    opt = torch.optim.SGD([param], lr=peak)  # a carrier for the scheduler's per-group value
    sched = CosineLRScheduler(opt, t_initial=epochs, lr_min=cfg.min_lr, warmup_t=cfg.warmup_epochs,
                              warmup_lr_init=cfg.warmup_lr, cycle_limit=1, t_in_epochs=True)
    sched.step(t)
    return opt.param_groups[0]["lr"]


def albef_epoch_lr(step: int, peak: float, cfg: OptimConfig, steps_per_epoch: int, epochs: int) -> float:
    """The official per-iteration lr: see the module docstring."""
    epoch, i = divmod(step, steps_per_epoch)
    if epoch == 0:
        t = min(i, cfg.warmup_epochs * ALBEF_STEP_SIZE) // ALBEF_STEP_SIZE
    else:
        t = epoch + cfg.warmup_epochs
    return timm_cosine_lr(t, peak, cfg, epochs)


def build_scheduler(optimizer: "torch.optim.Optimizer", cfg: OptimConfig, steps_per_epoch: int,
                    epochs: int, total_steps: int | None = None):
    """A per-step LambdaLR whose factor makes each group's lr the schedule's absolute value.
    The decay ends at `total_steps` (default `steps_per_epoch * epochs`)."""
    import torch

    total = total_steps or steps_per_epoch * epochs

    def factor_for(peak: float):
        def factor(step: int) -> float:
            if cfg.schedule == "albef_epoch":
                lr = albef_epoch_lr(step, peak, cfg, steps_per_epoch, epochs)
            else:
                lr = step_lr(step, peak, cfg, total)
            return lr / peak if peak > 0 else 0.0
        return factor

    peaks = [g.get("peak_lr", g["lr"]) for g in optimizer.param_groups]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, [factor_for(p) for p in peaks])
