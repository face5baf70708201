"""`mplug bench train`: training throughput and peak memory (paper Table 6).

Rows are cumulative, as in the paper: baseline (fp32) -> + bf16 -> + gradient checkpointing ->
+ ZeRO (DeepSpeed stage 2). Each row builds a fresh pre-training model (ITC + ITM + MLM +
PrefixLM, `build_model(model, "pretrain")`) and a DeepSpeed engine through the project's training
engine (`mplug.train.engine.build_engine`, the same code as `mplug train`), then times `steps`
optimizer steps on random batches of the batch contract after `warmup` untimed steps.

Micro batch: fixed (`--batch N`, the same in every row) or `--batch auto`: per row, the largest
micro batch whose optimizer step fits in memory with `headroom` of the device's memory left free
(mplug/bench/batch_search.py: doubling then bisection, recovering from each OOM; capped at
`max_batch`, default 4096 on a GPU and 16 on the CPU so CPU runs stay small), then throughput
measured at it, so each row shows what the technique buys in the paper's sense. Every row records
its `batch`, and with auto its `batch_search` (the tries, the headroom, the device memory).

Paper scale (default): mplug_base at 256 px (the pre-training resolution), 64 samples per device
(1024 over 16 GPUs, config/config.yaml), 30 text tokens. `--quick` (CI, CPU): mplug_smoke.
Peak memory: on CUDA `torch.cuda.max_memory_allocated` (reset per row); on the CPU the peak
resident set size of the process while the row's steps run (sampled every 5 ms from
/proc/self/statm, since getrusage's ru_maxrss only ever grows over the whole process).
On a CPU without native bf16 the bf16 rows are expected to be SLOWER; what is measured is reported.

FLOPs and MFU (mplug/bench/mfu.py): `flops_per_sample` is the analytic count of one pre-training
step (`mplug.models.flops.train_step_flops`: every pass the step runs, backward = 2 x forward,
momentum forwards without backward; the recomputation of gradient checkpointing is not counted,
as MFU counts model FLOPs), `achieved_flops_per_s` = flops_per_sample x samples/s, `mfu` = that
over the peak: on a GPU the datasheet's dense figure for the row's precision (`peak_flops_per_s`,
`peak_source`); on the CPU the measured matmul peak. `measured_peak_flops_per_s` and
`mfu_vs_measured` (a large matmul in the row's precision with the bench's threads, timed in the
same run) are reported on every device.

Start-up (`startup_s`): the wall time of a fresh process that does what every training job does
once besides its steps: imports the training stack, builds the model and its DeepSpeed engine (the
first row's settings), writes one checkpoint and the final weights, and exits. It is timed after
the rows, so DeepSpeed's one-time op build (cached per machine) is already done, as for every job
but the first on a machine. `mplug plan` adds it to every training job.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

from mplug.bench.common import envelope, format_table, setup, synchronize
from mplug.errors import ConfigError

Fault = Callable[[int, str], None]  # (micro batch, setting) -> None; raises to inject an OOM

# (setting name read by the report's Table 6, precision, grad checkpointing, ZeRO stage)
# `amp_bf16` (opt-in, `--settings`, not a paper row): fp32 weights + torch.autocast(bfloat16),
# to compare with DeepSpeed's bf16 mode (`+bf16`) on the same hardware
ROWS = (("baseline", "fp32", False, 0), ("+bf16", "bf16", False, 0),
        ("+grad_ckpt", "bf16", True, 0), ("+zero", "bf16", True, 2), ("amp_bf16", "amp_bf16", False, 0))
PAPER = {"baseline": 124.0, "+bf16": 182.7, "+grad_ckpt": 238.2, "+zero": 422.5}  # samples/s


@dataclass
class TrainBenchOptions:
    model: str = "mplug_base"
    batch: int | str = 64  # or "auto": the largest micro batch that fits, per row
    headroom: float = 0.1  # --batch auto: fraction of device memory left free
    max_batch: int | None = None  # --batch auto cap; None = 4096 on a GPU, 16 on the CPU
    image_res: int | None = 256
    text_len: int = 30
    steps: int = 10
    warmup: int = 2
    settings: tuple[str, ...] = tuple(PAPER)  # Table 6's rows
    queue_size: int | None = None
    distill: bool = True  # momentum distillation (official pre-training); False skips the *_m copies
    adamw_impl: str = "auto"  # mplug.train.optim.ADAMW_IMPLS: time 'fused' against the default
    threads: int | None = None
    device: str = "auto"

    @classmethod
    def quick(cls, **kw: Any) -> "TrainBenchOptions":
        """CI: the smoke model (64 px, a few M params), batch 4, 2 timed steps."""
        base = dict(model="mplug_smoke", batch=4, image_res=None, text_len=16, steps=2, warmup=1)
        base.update({k: v for k, v in kw.items() if v is not None})
        return cls(**base)

    @property
    def auto(self) -> bool:
        return self.batch == "auto"

    def validate(self) -> "TrainBenchOptions":
        if isinstance(self.batch, str) and not self.auto:
            raise ConfigError(f"bench train --batch {self.batch!r}: an integer or 'auto'")
        if not 0.0 <= self.headroom < 1.0:
            raise ConfigError(f"bench train --headroom {self.headroom}: must be in [0, 1)")
        ints = [k for k in ("batch", "text_len", "steps", "max_batch") if isinstance(getattr(self, k), int)]
        for key in ints:
            if getattr(self, key) < 1:
                raise ConfigError(f"bench train --{key.replace('_', '-')}={getattr(self, key)}: must be >= 1")
        known = [r[0] for r in ROWS]
        bad = [s for s in self.settings if s not in known]
        if bad:
            raise ConfigError(f"bench train --settings {bad[0]!r}: use {', '.join(known)}")
        return self


class _RssPeak:
    """Peak resident set size (bytes) of this process between start() and stop()."""

    def __init__(self, interval: float = 0.005):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")

    def _rss(self) -> int:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * self._page

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(self.interval)

    def __enter__(self) -> "_RssPeak":
        self.peak = self._rss()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())


def random_batch(cfg, batch: int, text_len: int, seed: int = 0) -> dict[str, Any]:
    """A pre-training batch (docs/architecture.md batch contract) of random content."""
    import torch

    g = torch.Generator().manual_seed(seed)
    r = cfg.vision.image_res
    ids = torch.randint(1000, cfg.text.vocab_size, (batch, text_len), generator=g)
    ids[:, 0], ids[:, -1] = cfg.bos_token_id, cfg.eos_token_id
    mask = torch.ones_like(ids)
    return {"image": torch.randn(batch, 3, r, r, generator=g), "text_ids": ids, "text_mask": mask,
            "image_idx": torch.arange(batch), "target_ids": ids.clone(), "target_mask": mask.clone()}


def _one_row(opts: TrainBenchOptions, setting: str, precision: str, ckpt: bool, zero: int,
             device, batch_size: int, fault: Fault | None = None) -> dict[str, Any]:
    """Build the row's model and engine at micro batch `batch_size`, run `opts.warmup` + `opts.steps`
    steps and time the last `opts.steps`. `fault(batch_size, setting)` runs before every step (a
    test's injected OOM)."""
    import torch

    from mplug.models import build_model
    from mplug.train.deepspeed_config import EngineConfig
    from mplug.train.engine import build_engine, module_dtype, to_device
    from mplug.train.optim import OptimConfig

    over: dict[str, Any] = {"grad_checkpointing": ckpt, "distill": opts.distill}
    if opts.image_res is not None:
        over["vision.image_res"] = opts.image_res
    if opts.queue_size is not None:
        over["queue_size"] = opts.queue_size
    torch.manual_seed(0)
    model = build_model(opts.model, "pretrain", **over)
    # grad_clip 0 in every row: DeepSpeed 0.19.8's non-ZeRO clip_grad_norm_ fails on the 0-dim
    # `temp` parameter ("output with shape [] doesn't match the broadcast shape [1]"), so the
    # baseline rows could not clip; no row clips, to compare like with like.
    engine_cfg = EngineConfig(zero_stage=zero, precision=precision, grad_clip=0.0)
    optim = OptimConfig(lr=1e-5, lr_vit=1e-6, warmup_steps=0, adamw_impl=opts.adamw_impl).validate("--adamw-impl")
    total = opts.warmup + opts.steps
    engine, info = build_engine(model, optim, engine_cfg, batch_size, total, 1)
    batch = to_device(random_batch(model.cfg, batch_size, opts.text_len), engine.device,
                      module_dtype(engine))
    engine.train()

    def step() -> None:
        if fault is not None:
            fault(batch_size, setting)
        loss = engine(batch)["loss"]
        engine.backward(loss)
        engine.step()

    for _ in range(opts.warmup):
        step()
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    synchronize(device)
    with _RssPeak() as rss:
        start = time.perf_counter()
        for _ in range(opts.steps):
            step()
        synchronize(device)
        elapsed = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) if cuda else rss.peak
    row = {"setting": setting, "precision": precision, "grad_checkpointing": ckpt, "zero_stage": zero,
           "batch": batch_size, "samples_per_s": batch_size * opts.steps / elapsed, "step_s": elapsed / opts.steps,
           "peak_mem_gb": peak / 1024 ** 3, "engine": info.describe(),
           "paper_samples_per_s": PAPER.get(setting)}
    from mplug.models.flops import train_step_flops

    row["flops"] = train_step_flops(model.cfg, "pretrain", batch_size, opts.text_len, distill=opts.distill)
    row["peak_bytes"] = peak
    if hasattr(engine, "destroy"):
        engine.destroy()
    return row


def _auto_row(opts: TrainBenchOptions, spec: tuple, device, fault: Fault | None) -> dict[str, Any]:
    """--batch auto: search the largest micro batch of this setting, then measure at it."""
    from dataclasses import replace

    from mplug.bench.batch_search import device_memory_bytes, largest_batch

    one_step = replace(opts, warmup=0, steps=1)  # a try: the first step allocates optimizer state too

    def try_batch(b: int) -> int:
        return _one_row(one_step, *spec, device, b, fault)["peak_bytes"]

    capacity = device_memory_bytes(device)
    cap = opts.max_batch or (4096 if device.type == "cuda" else 16)
    found = largest_batch(try_batch, capacity, opts.headroom, cap=cap)
    search = {"headroom": opts.headroom, "device_memory_gb": capacity / 1024 ** 3, "cap": cap,
              "capped": found.capped, "tries": found.tries}
    if found.batch is None:  # not even batch 1 fits: a row without a throughput, saying so
        return {"setting": spec[0], "precision": spec[1], "grad_checkpointing": spec[2],
                "zero_stage": spec[3], "batch": None, "samples_per_s": None, "batch_search": search,
                "paper_samples_per_s": PAPER.get(spec[0])}
    return {**_one_row(opts, *spec, device, found.batch, fault), "batch_search": search}


def engine_ready(model: str, image_res: int | None, precision: str, zero: int) -> None:
    """What every training job does besides its steps, once: import the training stack (data,
    tokenizer, recipes), build the model and its engine, write one checkpoint and the final
    weights. The child process `startup_s` times runs this."""
    import tempfile

    import mplug.train.run  # noqa: F401 - the imports a `mplug train` job makes
    from mplug.models import build_model
    from mplug.models.loading import save_state_dict
    from mplug.train.checkpoint import save_checkpoint
    from mplug.train.deepspeed_config import EngineConfig
    from mplug.train.engine import build_engine, export_state_dict
    from mplug.train.optim import OptimConfig

    over = {"vision.image_res": image_res} if image_res is not None else {}
    engine, _ = build_engine(build_model(model, "pretrain", **over),
                             OptimConfig(lr=1e-5, lr_vit=1e-6, warmup_steps=0),
                             EngineConfig(zero_stage=zero, precision=precision, grad_clip=0.0), 1, 1, 1)
    with tempfile.TemporaryDirectory() as out:
        save_checkpoint(engine, out, 0, {})
        save_state_dict(export_state_dict(engine), f"{out}/model.safetensors")


def startup_seconds(opts: TrainBenchOptions, precision: str, zero: int) -> float:
    """Wall time of a fresh `python` that builds the model and engine (see the module docstring)."""
    code = ("from mplug.bench.train import engine_ready; "
            f"engine_ready({opts.model!r}, {opts.image_res!r}, {precision!r}, {zero!r})")
    # a process of its own, as a job is: not the rendezvous (port) this process's group holds
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    start = time.perf_counter()
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if child.returncode != 0:
        raise RuntimeError(f"start-up probe failed (exit {child.returncode}): {child.stderr[-2000:]}")
    return time.perf_counter() - start


def run_train(opts: TrainBenchOptions, progress: bool = True, fault: Fault | None = None) -> dict[str, Any]:
    """Measure every (cumulative) setting; return the bench/train.json object (Table 6).
    `fault(batch, setting)`: called before every training step (tests inject an OOM with it)."""
    import gc

    from tqdm import tqdm

    opts.validate()
    device = setup(opts.threads, opts.device)
    rows = []
    for spec in tqdm([r for r in ROWS if r[0] in opts.settings], desc="Table 6 settings",
                     disable=not progress):
        row = (_auto_row(opts, spec, device, fault) if opts.auto
               else _one_row(opts, *spec, device, opts.batch, fault))
        row.pop("peak_bytes", None)
        rows.append(row)
        gc.collect()
    flops = _add_mfu(rows, device)
    base = next((r for r in rows if r["setting"] == "baseline" and r["samples_per_s"]), None)
    for r in rows:
        r["speedup"] = r["samples_per_s"] / base["samples_per_s"] if base and r["samples_per_s"] else None
        r["paper_speedup"] = PAPER[r["setting"]] / PAPER["baseline"] if r["setting"] in PAPER else None
    settings = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(opts).items()}
    memory = ("torch.cuda.max_memory_allocated per row" if device.type == "cuda" else
              "peak process RSS during the timed steps (sampled every 5 ms from /proc/self/statm)")
    first = next(r for r in ROWS if r[0] in opts.settings)
    return envelope("train", rows, settings, device=device, peak_memory=memory, flops=flops,
                    startup_s=startup_seconds(opts, first[1], first[3]),
                    note="cumulative rows as in Table 6; paper numbers are for 16 A100s, never copied "
                         "into samples_per_s")


def _add_mfu(rows: list[dict[str, Any]], device) -> dict[str, Any]:
    """Per row: flops_per_sample, achieved_flops_per_s, peak_flops_per_s + peak_source, mfu,
    measured_peak_flops_per_s, mfu_vs_measured. Returns the envelope's `flops` entry."""
    from mplug.bench.mfu import datasheet_peak, measured_matmul_peak

    measured = {p: measured_matmul_peak(device, p) for p in dict.fromkeys(r["precision"] for r in rows)}
    counts: dict[str, Any] = {}
    for r in rows:
        if "flops" not in r:  # --batch auto found no batch that fits: nothing measured
            continue
        counts = r.pop("flops")
        r["flops_per_sample"] = counts["flops_per_sample"]
        r["achieved_flops_per_s"] = counts["flops_per_sample"] * r["samples_per_s"]
        m = measured[r["precision"]]
        r["measured_peak_flops_per_s"] = m["flops_per_s"]
        r["mfu_vs_measured"] = r["achieved_flops_per_s"] / m["flops_per_s"]
        peak, source = datasheet_peak(device, r["precision"])
        if peak is None and device.type == "cpu":
            peak = m["flops_per_s"]
            source = f"measured {m['precision']} matmul {m['n']}^3, {m['threads']} thread(s)"
        r["peak_flops_per_s"], r["peak_source"] = peak, source
        r["mfu"] = r["achieved_flops_per_s"] / peak if peak else None
    return {"method": "analytic (mplug.models.flops.train_step_flops), model FLOPs: no recompute",
            "components_per_sample": {k: c["total"] / counts["batch"]
                                      for k, c in counts.get("components", {}).items()},
            "measured_matmul_peak": measured}


COLUMNS = [("setting", "setting", ""), ("batch", "batch", ""), ("samples_per_s", "samples/s", ".2f"),
           ("speedup", "speedup", ".2f"), ("paper_speedup", "paper speedup", ".2f"),
           ("peak_mem_gb", "peak mem (GB)", ".3f"), ("step_s", "s/step", ".3f"),
           ("gflops_per_sample", "GFLOP/sample", ".3f"), ("achieved_tflops", "TFLOP/s", ".4f"),
           ("peak_tflops", "peak TFLOP/s", ".3f"), ("mfu_pct", "MFU %", ".2f"),
           ("measured_peak_tflops", "matmul peak TFLOP/s", ".3f"), ("mfu_measured_pct", "MFU % (measured)", ".2f")]


def _table_row(r: dict[str, Any]) -> dict[str, Any]:
    def scaled(key, factor):
        return None if r.get(key) is None else r[key] * factor

    return {**r, "gflops_per_sample": scaled("flops_per_sample", 1e-9),
            "achieved_tflops": scaled("achieved_flops_per_s", 1e-12),
            "peak_tflops": scaled("peak_flops_per_s", 1e-12), "mfu_pct": scaled("mfu", 100.0),
            "measured_peak_tflops": scaled("measured_peak_flops_per_s", 1e-12),
            "mfu_measured_pct": scaled("mfu_vs_measured", 100.0)}


def summary(result: dict[str, Any]) -> str:
    s = result["settings"]
    batch = (f"per row the largest micro batch that fits ({s['headroom']:.0%} memory headroom)"
             if s["batch"] == "auto" else f"batch {s['batch']} per device")
    return "\n".join([
        f"training throughput, {s['model']} pre-training, {batch}, "
        f"{s['steps']} timed steps on {result['hardware_name']}; memory: {result['peak_memory']}",
        format_table([_table_row(r) for r in result["rows"]], COLUMNS),
        "MFU: analytic model FLOPs per sample x samples/s over the peak: "
        + "; ".join(sorted({f"{r['precision']}: {r.get('peak_source')}" for r in result["rows"]}))])
