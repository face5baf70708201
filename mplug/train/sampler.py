"""Deterministic, resumable batch order: a function of (seed, epoch, rank) only.

Each epoch permutes the dataset with a generator seeded by (seed, epoch), cuts it into global
batches (the last partial one dropped, as the official loaders with drop_last), and splits each
global batch into `world x accumulation` micro batches; rank r takes micro batches r, r+world, ...
Resuming at micro batch k of an epoch is exact: the first k are skipped, nothing is re-drawn.
"""
from __future__ import annotations

from dataclasses import dataclass

from mplug.errors import ConfigError


@dataclass(frozen=True)
class BatchPlan:
    n_examples: int
    global_batch: int
    world_size: int = 1
    grad_accum: int = 1
    seed: int = 0
    shuffle: bool = True

    def __post_init__(self) -> None:
        if self.global_batch % (self.world_size * self.grad_accum):
            raise ConfigError(f"batch_size {self.global_batch} is not divisible by world size "
                              f"{self.world_size} x grad_accum {self.grad_accum}")
        if self.n_examples < self.global_batch:
            raise ConfigError(f"batch_size {self.global_batch} is larger than the dataset "
                              f"({self.n_examples} examples): lower train.batch_size")

    @property
    def micro_batch(self) -> int:
        return self.global_batch // (self.world_size * self.grad_accum)

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch."""
        return self.n_examples // self.global_batch

    @property
    def micro_batches_per_epoch(self) -> int:
        """Micro batches per epoch on one rank."""
        return self.steps_per_epoch * self.grad_accum

    def epoch_batches(self, epoch: int, rank: int) -> list[list[int]]:
        """This rank's micro batches (lists of dataset indices) for `epoch`, in order."""
        import torch

        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            order = torch.randperm(self.n_examples, generator=gen).tolist()
        else:
            order = list(range(self.n_examples))
        m, parts = self.micro_batch, self.world_size * self.grad_accum
        out: list[list[int]] = []
        for step in range(self.steps_per_epoch):
            chunk = order[step * self.global_batch:(step + 1) * self.global_batch]
            for a in range(self.grad_accum):
                j = a * self.world_size + rank
                out.append(chunk[j * m:(j + 1) * m])
        assert len(out) == self.micro_batches_per_epoch and parts * m == self.global_batch
        return out
