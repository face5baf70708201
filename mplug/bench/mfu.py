"""Peak dense FLOP/s for MFU: a datasheet table for GPUs, a measured matmul for any device.

MFU = achieved model FLOP/s / peak FLOP/s, with achieved = analytic FLOPs per sample
(mplug.models.flops.train_step_flops) x samples/s. On a GPU the peak is the vendor datasheet's
DENSE figure for the precision the matmuls run in (the datasheets print the tensor-core TF32,
BF16 and FP16 figures "with sparsity"; those are halved here). On the CPU there is no datasheet
figure that applies to a given thread count, so the peak is measured: the best of a few large
matmuls in the row's precision with the bench's torch thread count.
"""
from __future__ import annotations

import re
import time

# TFLOP/s, dense. fp32 = the non-tensor-core FP32 figure; tf32/bf16 = tensor core, sparsity halved.
# Sources: NVIDIA A100 Tensor Core GPU datasheet (SXM4 and PCIe alike: FP32 19.5, TF32 156 [312
# sparse], BF16 312 [624 sparse]); NVIDIA H100 Tensor Core GPU datasheet (SXM: FP32 67, TF32 989*,
# BF16 1,979*; PCIe: 51, 756*, 1,513*; NVL: 60, 835*, 1,671*; * = with sparsity); NVIDIA H200
# Tensor Core GPU datasheet (SXM: FP32 67, TF32 989*, BF16 1,979*; NVL: 60, 835*, 1,671*).
PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "A100": {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0},
    "H100 SXM": {"fp32": 67.0, "tf32": 494.5, "bf16": 989.5},
    "H100 PCIe": {"fp32": 51.0, "tf32": 378.0, "bf16": 756.5},
    "H100 NVL": {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5},
    "H200 SXM": {"fp32": 67.0, "tf32": 494.5, "bf16": 989.5},
    "H200 NVL": {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5},
}

# (pattern on the lower-cased torch.cuda.get_device_name(), table key), first match wins.
# "NVIDIA H100 80GB HBM3" is the SXM part; "NVIDIA H200" the SXM part.
_NAMES = ((r"h200.*nvl", "H200 NVL"), (r"h200", "H200 SXM"), (r"h100.*nvl", "H100 NVL"),
          (r"h100.*pcie", "H100 PCIe"), (r"h100", "H100 SXM"), (r"a100", "A100"))


def gpu_key(device_name: str) -> str | None:
    name = device_name.lower()
    return next((key for pat, key in _NAMES if re.search(pat, name)), None)


def matmul_precision(precision: str, device) -> str:
    """The precision the matmuls of a row really run in: fp32 on CUDA is TF32 when torch allows it;
    amp_bf16 (fp32 weights under autocast) multiplies in bf16."""
    import torch

    if precision == "amp_bf16":
        return "bf16"

    if precision == "fp32" and getattr(device, "type", str(device)) == "cuda" and torch.backends.cuda.matmul.allow_tf32:
        return "tf32"
    return precision


def datasheet_peak(device, precision: str) -> tuple[float | None, str]:
    """(peak dense FLOP/s, source) for `precision` ('fp32' | 'bf16') on `device`; None off the table."""
    import torch

    if getattr(device, "type", str(device)) != "cuda":
        return None, "no datasheet peak for a CPU (see the measured matmul peak)"
    name = torch.cuda.get_device_name(device)
    key, prec = gpu_key(name), matmul_precision(precision, device)
    if key is None or prec not in PEAK_TFLOPS[key]:
        return None, f"{name}: not in mplug.bench.mfu.PEAK_TFLOPS"
    return PEAK_TFLOPS[key][prec] * 1e12, f"{key} datasheet, {prec} dense"


def measured_matmul_peak(device, precision: str, n: int | None = None, repeats: int = 3) -> dict:
    """Best FLOP/s of an (n x n) @ (n x n) matmul in `precision` on `device`, with the current
    torch thread count: {"flops_per_s", "n", "threads", "precision"}."""
    import torch

    from mplug.bench.common import parse_dtype, synchronize

    cuda = getattr(device, "type", str(device)) == "cuda"
    n = n or (8192 if cuda else (2048 if precision == "fp32" else 1024))
    dtype = parse_dtype("bf16" if precision == "amp_bf16" else precision)
    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, generator=g, device=device).to(dtype)
    b = torch.randn(n, n, generator=g, device=device).to(dtype)
    a @ b  # warm-up (kernel selection, thread pool)
    synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return {"flops_per_s": 2 * n ** 3 / best, "n": n, "threads": torch.get_num_threads(),
            "precision": matmul_precision(precision, device)}
