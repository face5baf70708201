"""A toy model + dataset for engine tests, and a CLI that trains it with `mplug.train.loop.fit`.

The model has the features the real ones rely on: dropout (torch RNG), a ViT-named part (two lr
groups), LayerNorm (no decay), a momentum twin and a queue buffer updated in forward, and a
loss dict with components. `python tests/train/toy.py OUT [--resume latest] [--steps N]`.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch
from torch import nn


class ToyModel(nn.Module):
    def __init__(self, dim: int = 16, momentum: bool = True):
        super().__init__()
        self.momentum_pairs = ["head"] if momentum else []
        self.visual_encoder = nn.Sequential(nn.Linear(dim, dim), nn.GELU())
        self.text = nn.Linear(dim, dim)
        self.LayerNorm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(0.1)
        self.head = nn.Linear(dim, 3)
        self.head_m = nn.Linear(dim, 3)  # momentum twin: no grad, EMA in forward
        self.head_m.requires_grad_(False)
        self.register_buffer("queue", torch.zeros(4, dim))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    # the interface of mplug.models.heads.MomentumMixin (the engine wraps it under ZeRO-3)
    momentum = 0.9

    def momentum_params(self):
        for name in self.momentum_pairs:
            yield from zip(getattr(self, name).parameters(), getattr(self, f"{name}_m").parameters())

    @torch.no_grad()
    def momentum_update(self) -> None:
        for p, pm in self.momentum_params():
            pm.data.mul_(self.momentum).add_(p.data, alpha=1.0 - self.momentum)

    def forward(self, batch: dict) -> dict:
        h = self.drop(self.LayerNorm(self.visual_encoder(batch["image"]) + self.text(batch["image"])))
        logits = self.head(h)
        if self.momentum_pairs:
            self.momentum_update()
        with torch.no_grad():
            i = int(self.queue_ptr.item())
            self.queue[i] = h.detach().mean(0).to(self.queue.dtype)
            self.queue_ptr[0] = (i + 1) % self.queue.size(0)
        ce = nn.functional.cross_entropy(logits.float(), batch["label"])
        reg = 1e-3 * (h.float() ** 2).mean() + 0.0 * self.queue.float().sum()
        return {"loss": ce + reg, "loss_ce": ce.detach(), "loss_reg": reg.detach()}


class ToyData(torch.utils.data.Dataset):
    """Separable 3-class data; the label is the argmax of a fixed projection."""

    def __init__(self, n: int = 96, dim: int = 16, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, dim, generator=g)
        self.y = (self.x @ torch.randn(dim, 3, generator=g)).argmax(-1)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        # data-side randomness (augmentation) from the global torch RNG, as transforms do
        return {"image": self.x[i] + 0.01 * torch.randn(self.x.size(1)), "label": self.y[i]}


def collate(items: list[dict]) -> dict:
    return {"image": torch.stack([it["image"] for it in items]),
            "label": torch.stack([it["label"] for it in items])}


def main(argv=None) -> int:
    from mplug.errors import MplugError
    from mplug.train.deepspeed_config import EngineConfig
    from mplug.train.loop import LoopConfig, fit
    from mplug.train.optim import OptimConfig

    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--resume", default=None)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--save-every", type=int, default=3)
    ap.add_argument("--zero", type=int, default=2)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--sleep", type=float, default=0.0, help="seconds per step (to kill mid-run)")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = ToyModel()
    step_fn = None
    if a.sleep:
        def step_fn(engine, batch, ctx):  # noqa: E306
            time.sleep(a.sleep)
            return engine(batch)
    kwargs = {"step_fn": step_fn} if step_fn else {}
    try:
        fit(model, ToyData(), collate,
            LoopConfig(epochs=a.epochs, batch_size=8, max_steps=a.steps, seed=3, log_every=2,
                       save_every=a.save_every, progress=False, tensorboard=False),
            OptimConfig(lr=3e-3, lr_vit=1e-3, warmup_steps=3, warmup_lr=1e-4, min_lr=1e-5),
            EngineConfig(zero_stage=a.zero, precision=a.precision), a.out, resume=a.resume, **kwargs)
    except MplugError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    sys.exit(main())
