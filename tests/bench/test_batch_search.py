"""`mplug bench train --batch auto`: the largest-micro-batch search, with an injected OOM."""
import pytest
import torch

from mplug.bench.batch_search import is_oom, largest_batch
from mplug.bench.train import TrainBenchOptions, run_train


@pytest.fixture
def no_gc(monkeypatch):
    """The search's gc.collect between tries costs ~0.2 s with torch loaded; the fake tries
    allocate nothing."""
    monkeypatch.setattr("mplug.bench.batch_search.free_memory", lambda: None)


def _fits_below(threshold: int, peak_per_sample: int = 1):
    tried = []

    def try_batch(b: int) -> int:
        tried.append(b)
        if b > threshold:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return b * peak_per_sample
    return try_batch, tried


@pytest.mark.parametrize("threshold", [1, 5, 8, 37, 100])
def test_search_finds_the_threshold(threshold, no_gc):
    try_batch, tried = _fits_below(threshold)
    res = largest_batch(try_batch, capacity=10 ** 9, headroom=0.1, cap=4096)
    assert res.batch == threshold and not res.capped
    assert tried[:4] == [1, 2, 4, 8][:len(tried[:4])]  # doubling first
    assert len(tried) <= 2 * threshold.bit_length() + 1  # then bisection: logarithmic


def test_headroom_and_cap(no_gc):
    # every batch "runs", but peaks above 90% of 100 bytes fail: 10 bytes/sample -> 9 fits
    try_batch, _ = _fits_below(10 ** 6, peak_per_sample=10)
    res = largest_batch(try_batch, capacity=100, headroom=0.1)
    assert res.batch == 9 and any("headroom" in t["reason"] for t in res.tries)
    assert largest_batch(_fits_below(10 ** 6)[0], capacity=10 ** 9, cap=6).batch == 6
    assert largest_batch(_fits_below(10 ** 6)[0], capacity=10 ** 9, cap=6).capped
    assert largest_batch(_fits_below(0)[0], capacity=10 ** 9).batch is None


def test_only_oom_is_recovered(no_gc):
    assert is_oom(RuntimeError("[enforce fail at alloc_cpu.cpp:118] DefaultCPUAllocator: can't allocate memory"))
    assert not is_oom(RuntimeError("shape mismatch"))

    def broken(b):
        raise ValueError("a real bug")
    with pytest.raises(ValueError):
        largest_batch(broken, capacity=10 ** 9)


def test_bench_train_auto_with_injected_oom():
    """The real bench row on the tiny model, an OOM injected above batch 3: tries 1, 2, 4 (OOM),
    3, then the row is measured at 3."""
    def fault(batch, setting):
        if batch > 3:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory (injected)")

    opts = TrainBenchOptions(model="mplug_tiny", batch="auto", text_len=8, steps=1, warmup=0,
                             queue_size=8, image_res=None, settings=("baseline",), max_batch=4,
                             device="cpu")
    data = run_train(opts, progress=False, fault=fault)
    (row,) = data["rows"]
    s = row["batch_search"]
    assert row["batch"] == 3 and [t["batch"] for t in s["tries"]] == [1, 2, 4, 3]
    assert [t["fits"] for t in s["tries"]] == [True, True, False, True]
    assert s["tries"][2]["reason"].startswith("OOM") and s["headroom"] == 0.1 and s["device_memory_gb"] > 0
    assert row["samples_per_s"] > 0 and row["flops_per_sample"] > 0 and row["speedup"] == 1.0
    assert data["settings"]["batch"] == "auto"
