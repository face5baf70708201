"""`mplug bench train`: training throughput and peak memory (paper Table 6).

Rows are cumulative, as in the paper: baseline (fp32) -> + bf16 -> + gradient checkpointing ->
+ ZeRO (DeepSpeed stage 2). Each row builds a fresh pre-training model (ITC + ITM + MLM +
PrefixLM, `build_model(model, "pretrain")`) and a DeepSpeed engine through the project's training
engine (`mplug.train.engine.build_engine`, the same code as `mplug train`), then times `steps`
optimizer steps on random batches of the batch contract after `warmup` untimed steps.

Paper scale (default): mplug_base at 256 px (the pre-training resolution), 64 samples per device
(1024 over 16 GPUs, config/config.yaml), 30 text tokens. `--quick` (CI, CPU): mplug_smoke.
Peak memory: on CUDA `torch.cuda.max_memory_allocated` (reset per row); on the CPU the peak
resident set size of the process while the row's steps run (sampled every 5 ms from
/proc/self/statm, since getrusage's ru_maxrss only ever grows over the whole process).
On a CPU without native bf16 the bf16 rows are expected to be SLOWER; what is measured is reported.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from mplug.bench.common import envelope, format_table, setup, synchronize
from mplug.errors import ConfigError

# (setting name read by the report's Table 6, precision, grad checkpointing, ZeRO stage)
ROWS = (("baseline", "fp32", False, 0), ("+bf16", "bf16", False, 0),
        ("+grad_ckpt", "bf16", True, 0), ("+zero", "bf16", True, 2))
PAPER = {"baseline": 124.0, "+bf16": 182.7, "+grad_ckpt": 238.2, "+zero": 422.5}  # samples/s


@dataclass
class TrainBenchOptions:
    model: str = "mplug_base"
    batch: int = 64
    image_res: int | None = 256
    text_len: int = 30
    steps: int = 10
    warmup: int = 2
    settings: tuple[str, ...] = tuple(r[0] for r in ROWS)
    queue_size: int | None = None
    distill: bool = True  # momentum distillation (official pre-training); False skips the *_m copies
    threads: int | None = None
    device: str = "auto"

    @classmethod
    def quick(cls, **kw: Any) -> "TrainBenchOptions":
        """CI: the smoke model (64 px, a few M params), batch 4, 2 timed steps."""
        base = dict(model="mplug_smoke", batch=4, image_res=None, text_len=16, steps=2, warmup=1)
        base.update({k: v for k, v in kw.items() if v is not None})
        return cls(**base)

    def validate(self) -> "TrainBenchOptions":
        for key in ("batch", "text_len", "steps"):
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
             device) -> dict[str, Any]:
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
    optim = OptimConfig(lr=1e-5, lr_vit=1e-6, warmup_steps=0)
    total = opts.warmup + opts.steps
    engine, info = build_engine(model, optim, engine_cfg, opts.batch, total, 1)
    batch = to_device(random_batch(model.cfg, opts.batch, opts.text_len), engine.device,
                      module_dtype(engine))
    engine.train()

    def step() -> None:
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
           "samples_per_s": opts.batch * opts.steps / elapsed, "step_s": elapsed / opts.steps,
           "peak_mem_gb": peak / 1024 ** 3, "engine": info.describe(),
           "paper_samples_per_s": PAPER[setting]}
    if hasattr(engine, "destroy"):
        engine.destroy()
    return row


def run_train(opts: TrainBenchOptions, progress: bool = True) -> dict[str, Any]:
    """Measure every (cumulative) setting; return the bench/train.json object (Table 6)."""
    import gc

    from tqdm import tqdm

    opts.validate()
    device = setup(opts.threads, opts.device)
    rows = []
    for setting, precision, ckpt, zero in tqdm([r for r in ROWS if r[0] in opts.settings],
                                               desc="Table 6 settings", disable=not progress):
        rows.append(_one_row(opts, setting, precision, ckpt, zero, device))
        gc.collect()
    base = next((r for r in rows if r["setting"] == "baseline"), None)
    for r in rows:
        r["speedup"] = r["samples_per_s"] / base["samples_per_s"] if base else None
        r["paper_speedup"] = PAPER[r["setting"]] / PAPER["baseline"]
    settings = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(opts).items()}
    memory = ("torch.cuda.max_memory_allocated per row" if device.type == "cuda" else
              "peak process RSS during the timed steps (sampled every 5 ms from /proc/self/statm)")
    return envelope("train", rows, settings, peak_memory=memory,
                    note="cumulative rows as in Table 6; paper numbers are for 16 A100s, never copied "
                         "into samples_per_s")


COLUMNS = [("setting", "setting", ""), ("samples_per_s", "samples/s", ".2f"),
           ("speedup", "speedup", ".2f"), ("paper_speedup", "paper speedup", ".2f"),
           ("peak_mem_gb", "peak mem (GB)", ".3f"), ("step_s", "s/step", ".3f")]


def summary(result: dict[str, Any]) -> str:
    s = result["settings"]
    return "\n".join([
        f"training throughput, {s['model']} pre-training, batch {s['batch']} per device, "
        f"{s['steps']} timed steps on {result['hardware_name']}; memory: {result['peak_memory']}",
        format_table(result["rows"], COLUMNS)])
