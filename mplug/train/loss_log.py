"""Loss components kept on the device between log flushes (no per-step host syncs).

Reading a loss with `.item()` waits for the GPU to finish the step, and all-reducing it is a
collective on every micro-step: both stall the pipeline that launching the next step would keep
full. As nanoGPT does, `LossBuffer` keeps each micro-step's detached loss tensors and, when the
loop flushes (every `log_every` steps, before a checkpoint, an evaluation or the end), moves
them to the host in ONE copy and averages them over ranks in ONE all-reduce. The records are
the same numbers the per-step way gives: each fp32 value widened to float64, the rank mean,
then the mean over the step's accumulation micro-steps, in that order.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any


def _split(losses: dict) -> dict[str, Any]:
    """The scalar entries of a forward's output: 1-element tensors (detached) and numbers."""
    import torch

    out: dict[str, Any] = {}
    for key, value in losses.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            out[key] = value.detach().reshape(())
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(value)
    return out


def _to_host_rank_mean(values: list) -> list[float]:
    """Tensors and floats -> host floats, averaged over data-parallel ranks: one copy, one
    all-reduce. Every rank passes the same sequence of keys (the same model), as before."""
    import torch

    if not values:
        return []
    tensors = [v for v in values if isinstance(v, torch.Tensor)]
    device = tensors[0].device if tensors else torch.device("cpu")
    # float64 as before: fp32 losses widened exactly, python floats kept exactly
    flat = torch.stack([v.float().to(torch.float64) if isinstance(v, torch.Tensor)
                        else torch.tensor(v, dtype=torch.float64, device=device) for v in values])
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        if os.environ.get("DS_ACCELERATOR") == "cuda":
            flat = flat.cuda()
        dist.all_reduce(flat)
        flat /= dist.get_world_size()
    return flat.tolist()


@dataclass
class LossBuffer:
    """Micro-step losses of the steps not yet logged; `flush()` returns their records."""

    grad_accum: int = 1
    _micro: list[dict[str, Any]] = field(default_factory=list)  # of the step in progress
    _steps: list[tuple[dict, list[dict[str, Any]]]] = field(default_factory=list)

    def add_micro(self, losses: dict) -> None:
        self._micro.append(_split(losses))

    def end_step(self, record: dict) -> None:
        """The optimizer step is done: `record` (step, epoch, lr, timing) waits for its losses."""
        self._steps.append((record, self._micro))
        self._micro = []

    def __len__(self) -> int:
        return len(self._steps)

    def flush(self) -> list[dict]:
        """Records of the buffered steps, in order, each with its rank- and micro-mean losses."""
        keys = [sorted(m) for _, micros in self._steps for m in micros]
        values = [m[k] for (_, micros) in self._steps for m in micros for k in sorted(m)]
        host = iter(_to_host_rank_mean(values))
        records, it_keys = [], iter(keys)
        for record, micros in self._steps:
            acc: dict[str, float] = {}
            for _ in micros:
                for k in next(it_keys):
                    acc[k] = acc.get(k, 0.0) + next(host) / self.grad_accum
            losses_first = {k: record[k] for k in ("step", "epoch") if k in record}
            records.append({**losses_first, **acc, **{k: v for k, v in record.items() if k not in losses_first}})
        self._steps = []
        return records
