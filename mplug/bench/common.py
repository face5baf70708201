"""Timing helpers shared by the benchmarks: device/threads set-up, synchronised wall-clock
timing with warm-up and repeats (median), the result envelope and a plain-text table."""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from mplug.errors import ConfigError


@dataclass
class Timing:
    """All repeats of one measured callable, in seconds. `time_s` is the FASTEST repeat: on a
    shared machine other jobs only ever add time, so the minimum is the least disturbed
    estimate; the median is kept next to it."""

    repeats_s: list[float]

    @property
    def time_s(self) -> float:
        return min(self.repeats_s)

    @property
    def median_s(self) -> float:
        return statistics.median(self.repeats_s)

    def to_dict(self) -> dict[str, Any]:
        return {"time_s": self.time_s, "median_s": self.median_s,
                "repeats_s": [round(x, 6) for x in self.repeats_s]}


def setup(threads: int | None = None, device: str = "auto", seed: int = 0):
    """Set torch's CPU thread count (None = leave as is), seed, and pick the device.
    Returns torch.device. 'auto' = cuda when available, else cpu."""
    import torch

    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads {threads}: must be >= 1")
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: CUDA is not available on this machine; use cpu")
    return torch.device(device)


def synchronize(device) -> None:
    import torch

    if getattr(device, "type", str(device)).startswith("cuda"):
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device) -> float:
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def measure_interleaved(fns: dict[str, Callable[[], Any]], device, warmup: int = 1,
                        repeats: int = 3) -> dict[str, Timing]:
    """Time several callables round-robin (repeat r runs each once, in an order rotated by r),
    so that a burst of load from other jobs hits them alike instead of one of them."""
    if repeats < 1:
        raise ConfigError(f"repeats={repeats}: must be >= 1")
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
    synchronize(device)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        shift = r % len(names) if names else 0
        for name in names[shift:] + names[:shift]:
            times[name].append(_timed(fns[name], device))
    return {n: Timing(t) for n, t in times.items()}


def parse_dtype(name: str):
    import torch

    table = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    if name not in table:
        raise ConfigError(f"--dtype {name!r}: use one of {', '.join(table)}")
    return table[name]


def envelope(bench: str, rows: list[dict], settings: dict[str, Any], device=None,
             **extra: Any) -> dict[str, Any]:
    """The JSON every benchmark writes: hardware (provenance.hardware()), its settings, rows,
    and provenance (commit, date). `device`: where the timed work ran; a CPU run on a machine
    that has a GPU names the CPU (the GPU is kept as `unused_gpu`)."""
    from mplug.utils.provenance import _cpu_model, describe_hardware, hardware, provenance

    hw = hardware()
    if device is not None and str(getattr(device, "type", device)) == "cpu" and hw.get("accelerator") == "cuda":
        hw = {**hw, "accelerator": "cpu", "cpu": _cpu_model(), "unused_gpu": hw.get("gpu")}
    return {"bench": bench, "hardware": hw, "hardware_name": describe_hardware(hw),
            "settings": settings, **extra, "rows": rows,
            "provenance": provenance(config=settings)}


def format_table(rows: Sequence[dict], columns: Sequence[tuple[str, str, str]]) -> str:
    """columns: (key, header, format spec like '.3f' or '' ). Missing values print '-'."""
    def cell(row, key, spec):
        v = row.get(key)
        if v is None:
            return "-"
        if isinstance(v, float) and spec:
            return format(v, spec)
        if isinstance(v, int) and not isinstance(v, bool) and spec.endswith("e"):
            return format(float(v), spec)
        return str(v)

    table = [[h for _, h, _ in columns]] + [[cell(r, k, s) for k, _, s in columns] for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
