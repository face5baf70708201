"""The largest micro batch that fits: `mplug bench train --batch auto` (paper Table 6 as run).

Table 6's techniques (bf16, gradient checkpointing, ZeRO) buy memory, and the paper spends that
memory on a larger batch; a fixed-batch bench shows only their cost. `largest_batch(try_batch)`
doubles the batch from `start` until a try fails (an out-of-memory error, or a peak above the
headroom) or the cap is reached, then bisects between the last success and the first failure.
`try_batch(b) -> peak bytes` runs one optimizer step at micro batch b and raises on OOM.

Headroom: a try fits only when its peak is at most (1 - headroom) x the device's memory, so the
batch chosen leaves that fraction free for what one short try does not see (fragmentation, the
allocator's cache, a longer sequence in real data).
"""
from __future__ import annotations

import gc
from dataclasses import dataclass, field
from typing import Callable

OOM_MARKERS = ("out of memory", "can't allocate memory", "cannot allocate memory")


def is_oom(exc: BaseException) -> bool:
    """torch.cuda.OutOfMemoryError, or the CPU allocator's RuntimeError (no OOM class there)."""
    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, (RuntimeError, MemoryError)) and (
        isinstance(exc, MemoryError) or any(m in str(exc).lower() for m in OOM_MARKERS))


def free_memory() -> None:
    """Drop what a failed try left behind (call after its exception is out of scope)."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def device_memory_bytes(device) -> int:
    """Total memory of the device: the GPU's, or on the CPU the machine's RAM (MemTotal)."""
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    with open("/proc/meminfo", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/meminfo has no MemTotal")


@dataclass
class SearchResult:
    batch: int | None  # None: not even `start` fits
    tries: list[dict] = field(default_factory=list)  # in order: batch, fits, peak_gb, reason
    capped: bool = False  # the cap fitted: the true largest batch may be larger


def _try(try_batch: Callable[[int], int], b: int, limit: float) -> dict:
    peak, reason = None, None
    try:
        peak = try_batch(b)
    except Exception as exc:  # noqa: BLE001 - only OOMs are swallowed, the rest re-raised
        if not is_oom(exc):
            raise
        reason = "OOM: " + (str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__)
    # after the except block: the traceback (and the failed try's tensors in its frames) is gone
    free_memory()
    if peak is None:
        return {"batch": b, "fits": False, "peak_gb": None, "reason": reason}
    fits = peak <= limit
    return {"batch": b, "fits": fits, "peak_gb": peak / 1024 ** 3,
            "reason": "ok" if fits else f"peak above the {limit / 1024 ** 3:.2f} GB headroom limit"}


def largest_batch(try_batch: Callable[[int], int], capacity: int, headroom: float = 0.1,
                  start: int = 1, cap: int = 4096) -> SearchResult:
    """Doubling then bisection over the micro batch; see the module doc."""
    limit = (1.0 - headroom) * capacity
    res = SearchResult(None)
    good, bad, b = None, None, max(1, min(start, cap))
    while True:  # doubling: find a failing batch (or the cap)
        t = _try(try_batch, b, limit)
        res.tries.append(t)
        if not t["fits"]:
            bad = b
            break
        good = b
        if b >= cap:
            res.capped = True
            break
        b = min(2 * b, cap)
    while good is not None and bad is not None and bad - good > 1:  # bisection in (good, bad)
        mid = (good + bad) // 2
        t = _try(try_batch, mid, limit)
        res.tries.append(t)
        good, bad = (mid, bad) if t["fits"] else (good, mid)
    res.batch = good
    return res
