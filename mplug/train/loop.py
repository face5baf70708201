"""The training loop: DeepSpeed steps, per-step logs, checkpoints, preemption, export.

`fit(model, dataset, collate_fn, loop, optim, engine_cfg, out_dir, ...)` trains any model whose
`forward(batch)` returns `{"loss": scalar, <component>: scalar...}` (or uses a recipe's
`step_fn`). It writes under `out_dir`:
  train_log.jsonl   one JSON object per optimizer step: step, epoch, every loss component, the
                    lr of each parameter group, samples/s, memory
  tensorboard/      the same scalars every `log_every` steps
  checkpoints/      see checkpoint.py
  model.safetensors final weights (incl. buffers such as ITC queues) for evaluation
  summary.json      what ran (engine, steps, first/last losses, wall time, provenance)

Preemption: SIGTERM, SIGUSR1 or SIGALRM (armed before a SLURM time limit: train/walltime.py) sets
a flag; the current step finishes, every rank agrees, a checkpoint is written and `Preempted`
(exit code 75, EX_TEMPFAIL) is raised. Rerunning the command with `--resume latest` continues from that step.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from mplug.errors import ConfigError, MplugError
from mplug.train import EXIT_PREEMPTED
from mplug.train.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from mplug.train.deepspeed_config import EngineConfig
from mplug.train.distributed import any_rank, barrier, detect
from mplug.train.engine import build_engine, export_state_dict, module_dtype, to_device
from mplug.train.loss_log import LossBuffer
from mplug.train.optim import OptimConfig
from mplug.train.sampler import BatchPlan
from mplug.utils.io import atomic_write_json, atomic_write_text
from mplug.utils.logging import get_logger

log = get_logger("mplug.train")

LOG_FILE = "train_log.jsonl"
SUMMARY_FILE = "summary.json"
MODEL_FILE = "model.safetensors"


class Preempted(MplugError):
    """SIGTERM/SIGUSR1 arrived: a checkpoint was written; rerun with `--resume latest`."""

    exit_code = EXIT_PREEMPTED


@dataclass
class LoopConfig:
    """Loop settings of one stage (from the YAML train section)."""

    epochs: int
    batch_size: int  # global, all ranks and accumulation steps together
    max_steps: int | None = None  # run length in optimizer steps, overriding epochs; None = epochs
    seed: int = 42
    log_every: int = 50
    save_every: int = 0  # optimizer steps between checkpoints; 0 = at the end of each epoch only
    eval_every: int = 0  # optimizer steps between keep-best evaluations (with an evaluator); 0 = off
    keep_checkpoints: int = 2
    num_workers: int = 0
    progress: bool = True
    tensorboard: bool = True


@dataclass
class StepContext:
    """What a recipe's step function may need (e.g. ALBEF's alpha warm-up in epoch 0)."""

    epoch: int
    step: int  # optimizer steps done before this one
    micro_in_epoch: int
    micro_per_epoch: int
    extra: dict[str, Any] = field(default_factory=dict)


StepFn = Callable[[Any, dict, StepContext], dict]


def default_step(engine, batch: dict, ctx: StepContext) -> dict:
    return engine(batch)


class _Preemption:
    """Flag set by SIGTERM/SIGUSR1/SIGALRM while training; handlers restored afterwards (and
    the alarm that mplug.train.walltime may have armed before a SLURM time limit cancelled)."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGALRM)

    def __init__(self) -> None:
        self.signal: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "_Preemption":
        for sig in self.SIGNALS:
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:  # noqa: ARG002 - signal API
        self.signal = signum

    def __exit__(self, *exc) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _signal_name(signum: int) -> str:
    name = signal.Signals(signum).name
    return f"{name} (the SLURM job's time limit is near)" if signum == signal.SIGALRM else name


def _memory_mb() -> dict[str, float]:
    import torch

    out = {"max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    if torch.cuda.is_available():
        out["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def _truncate_log(path: Path, step: int) -> list[dict]:
    """Keep log records up to `step` (a resumed run redoes the steps after its checkpoint)."""
    if not path.is_file():
        return []
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a line cut by SIGKILL
            continue
        if rec.get("step", math.inf) <= step:
            kept.append(rec)
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
    return kept


def _pin_memory() -> bool:
    """Page-locked batches where CUDA is present: to_device's non_blocking copies then overlap
    the step (from pageable memory they are synchronous)."""
    import torch

    return torch.cuda.is_available()


def _stream(dataset, collate_fn, plan: BatchPlan, loop: LoopConfig, epoch: int, dist, skip: int):
    """Micro batches of an IterableDataset (webdataset shards): its own order, every
    world-th batch to this rank, `plan.micro_batches_per_epoch` of them. Resuming mid-epoch
    re-reads and drops the first `skip` batches; the RNG draws their transforms make are undone
    so that the resumed run continues with exactly the checkpoint's RNG state."""
    import itertools

    from torch.utils.data import DataLoader

    from mplug.train.checkpoint import capture_rng, restore_rng

    import torch

    # an explicit generator: without one, creating the iterator draws its worker base seed from
    # the global RNG, which a resumed run would do once more than the original
    gen = torch.Generator().manual_seed(loop.seed * 7_919 + epoch * 104_729)
    if hasattr(dataset, "set_epoch"):  # the stream's own shuffle (seeded: same on every rank)
        dataset.set_epoch(epoch, loop.seed)
    loader = DataLoader(dataset, batch_size=plan.micro_batch, drop_last=True, collate_fn=collate_fn,
                        num_workers=loop.num_workers, generator=gen, pin_memory=_pin_memory())
    mine = (b for i, b in enumerate(loader) if i % dist.world_size == dist.rank)
    mine = itertools.islice(mine, plan.micro_batches_per_epoch)
    if skip:
        rng = capture_rng()
        for _ in itertools.islice(mine, skip):
            pass
        restore_rng(rng)
    return mine


def set_seed(seed: int) -> None:
    """Seed python, numpy and torch (model init and the training RNG stream)."""
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def fit(model, dataset, collate_fn, loop: LoopConfig, optim: OptimConfig, engine_cfg: EngineConfig,
        out_dir: str | os.PathLike, resume: str | None = None, step_fn: StepFn = default_step,
        run_info: dict[str, Any] | None = None, evaluator: Callable | None = None,
        preemption: "_Preemption | None" = None) -> dict[str, Any]:
    """Train; returns the summary (also written to OUT/summary.json). See the module doc.
    `evaluator(engine) -> {evaluator.metric: value, ...}` with `loop.eval_every` turns on keep-best
    selection (mplug/train/evaluation.py): model.safetensors is then the best evaluated model.
    `preemption`: a signal handler the caller installed before its start-up (else one is
    installed here, around the loop)."""
    from mplug.train.evaluation import BestKeeper

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dist = detect()
    wall0 = time.perf_counter()
    plan = BatchPlan(len(dataset), loop.batch_size, dist.world_size, engine_cfg.grad_accum, loop.seed)
    # max_steps, when set, is the run length and overrides epochs (as HF Trainer's max_steps):
    # smoke runs ask for N steps over a small dataset, which takes several epochs.
    total_steps = loop.max_steps or plan.steps_per_epoch * loop.epochs
    set_seed(loop.seed + dist.rank)  # the training RNG stream (dropout, masking, negatives)
    engine, info = build_engine(model, optim, engine_cfg, plan.micro_batch, plan.steps_per_epoch,
                                loop.epochs, dist, total_steps=total_steps)
    state = _resume_state(engine, out, resume, total_steps, loop.seed, run_info, dist)
    keeper = BestKeeper(evaluator, loop.eval_every, out, dist.is_main) if evaluator else None
    run = _Run(engine, dataset, collate_fn, plan, loop, engine_cfg, dist, out, total_steps, state,
               step_fn, run_info or {}, keeper)
    telemetry = _Telemetry.open(out, loop, dist, engine, total_steps, state["step"])
    try:
        with contextlib.nullcontext(preemption) if preemption else _Preemption() as pre:
            preempted_by = run.train(pre, telemetry)
    finally:
        if run.losses is not None and len(run.losses):  # a failed run: log the steps it finished
            with contextlib.suppress(Exception):  # never hide the error that stopped the run
                run.flush(telemetry)
        telemetry.close()
    if preempted_by is not None:
        name = _signal_name(preempted_by)
        raise Preempted(f"{name} received: stopped after step {state['step']} and wrote a "
                        f"checkpoint under {out / 'checkpoints'}; rerun the same command with "
                        f"--resume latest (exit code {EXIT_PREEMPTED} asks SLURM/Snakemake to requeue)")
    if keeper and keeper.due(state["step"], True, state):
        keeper.run(engine, state)  # a run that ended short of total_steps (short stream)
    return _finish(engine, info, out, state, telemetry.first, telemetry.window, wall0, dist, run_info,
                   total_steps)


def _resume_state(engine, out: Path, resume: str | None, total_steps: int, seed: int,
                  run_info: dict | None, dist) -> dict[str, Any]:
    """The trainer state to start from: a checkpoint's (`--resume`), else step 0. The logs are
    cut back to the checkpoint's step (a resumed run redoes the steps after it) or, on a fresh
    run, removed."""
    from mplug.train.evaluation import EVAL_LOG_FILE

    state = {"epoch": 0, "micro_in_epoch": 0, "step": 0, "samples": 0, "seed": seed}
    ckpt = find_checkpoint(out, resume)
    logs = (out / LOG_FILE, out / EVAL_LOG_FILE)
    if ckpt is None:
        if dist.is_main:
            for stale in logs:
                stale.unlink(missing_ok=True)  # a fresh run: no stale records from an earlier attempt
            if resume == "latest":
                log.info("--resume latest: no checkpoint under %s yet, starting from step 0", out)
        barrier()
        return state
    state.update(load_checkpoint(engine, ckpt, dist.rank))
    if state["step"] > total_steps:
        raise ConfigError(f"--resume: {ckpt} is at step {state['step']} but this run stops at step "
                          f"{total_steps} (--max-steps / train.max_steps); resuming would replace "
                          f"the results with that checkpoint's weights. Pass --max-steps "
                          f"{state['step']} or more, or use a fresh --out")
    saved = (state.pop("run", None) or {}).get("settings")
    now = (run_info or {}).get("settings")
    if dist.is_main:
        if saved and now and saved != now:
            changed = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
            log.warning("resuming with changed train settings (%s): the result will not equal an "
                        "uninterrupted run", ", ".join(changed))
        for path in logs:
            _truncate_log(path, state["step"])
        log.info("resumed from %s: epoch %d, step %d", ckpt, state["epoch"], state["step"])
    barrier()
    return state


@dataclass
class _Telemetry:
    """Where each optimizer step is reported (main rank only): train_log.jsonl, TensorBoard, the
    progress bar; and the first / recent loss values the summary quotes."""

    log_every: int
    jsonl: Any = None
    writer: Any = None
    bar: Any = None
    first: dict[str, float] = field(default_factory=dict)
    window: dict[str, list[float]] = field(default_factory=dict)

    @classmethod
    def open(cls, out: Path, loop: LoopConfig, dist, engine, total_steps: int, step: int) -> "_Telemetry":
        tel = cls(loop.log_every)
        if not dist.is_main:
            return tel
        if loop.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            tel.writer = SummaryWriter(str(out / "tensorboard"))
        tel.jsonl = open(out / LOG_FILE, "a", encoding="utf-8")
        if loop.progress:
            import sys

            from tqdm import tqdm

            tel.bar = tqdm(total=total_steps, initial=step, desc="train", unit="step", dynamic_ncols=True,
                           mininterval=0.1 if sys.stderr.isatty() else 5.0)
        return tel

    def record(self, rec: dict, loss_keys: Iterable[str]) -> None:
        if self.jsonl is None:
            return
        step = rec["step"]
        self.jsonl.write(json.dumps(rec) + "\n")
        self.jsonl.flush()
        for k in loss_keys:
            if k in rec:
                self.first.setdefault(k, rec[k])
                self.window.setdefault(k, []).append(rec[k])
                del self.window[k][:-max(1, self.log_every)]
        if self.writer and step % self.log_every == 0:
            for k, v in rec.items():
                if k not in ("step", "epoch"):
                    self.writer.add_scalar(f"train/{k}", v, step)
        if self.bar and step % self.log_every == 0:
            self.bar.set_postfix(loss=f"{rec.get('loss', float('nan')):.4f}",
                                 sps=f"{rec['samples_per_s']:.1f}")

    def tick(self) -> None:
        """One optimizer step done (its record may come later, with the next flush)."""
        if self.bar:
            self.bar.update(1)

    def close(self) -> None:
        for handle in (self.bar, self.jsonl, self.writer):
            if handle is not None:
                handle.close()


@dataclass
class _Run:
    """One `fit` call's moving parts; `train` runs the epochs and `state` is the trainer state a
    checkpoint holds (epoch, micro batch in epoch, step, samples, bad images, keep-best)."""

    engine: Any
    dataset: Any
    collate_fn: Callable
    plan: BatchPlan
    loop: LoopConfig
    engine_cfg: EngineConfig
    dist: Any
    out: Path
    total_steps: int
    state: dict[str, Any]
    step_fn: StepFn
    run_info: dict[str, Any]
    keeper: Any = None
    losses: LossBuffer | None = None  # steps whose records wait for the next flush

    def flush(self, telemetry: "_Telemetry") -> None:
        """Write the buffered steps' records: one host copy + one all-reduce for all of them."""
        for rec in self.losses.flush():
            telemetry.record(rec, [k for k in rec if k not in ("step", "epoch")])

    def train(self, pre: "_Preemption", telemetry: _Telemetry) -> int | None:
        """Run to total_steps; return the signal that stopped it early (checkpoint written)."""
        if any_rank(pre.signal is not None):  # arrived during start-up: no step to save
            name = _signal_name(pre.signal or signal.SIGTERM)
            raise Preempted(f"{name} received while starting: no step was run after step "
                            f"{self.state['step']}; rerun the same command with --resume latest "
                            f"(exit code {EXIT_PREEMPTED} asks SLURM/Snakemake to requeue)")
        self.engine.train()
        self.losses = LossBuffer(self.engine_cfg.grad_accum)
        epochs = math.ceil(self.total_steps / self.plan.steps_per_epoch)
        while self.state["step"] < self.total_steps and self.state["epoch"] < epochs:
            epoch = self.state["epoch"]
            preempted_by = self._epoch(epoch, pre, telemetry)
            if preempted_by is not None:
                return preempted_by
            if self.state["epoch"] == epoch and self.state["micro_in_epoch"] > 0:
                # a stream that ran short (bad samples skipped): the epoch is over
                self.state["epoch"], self.state["micro_in_epoch"] = epoch + 1, 0
        return None

    def _loader(self, epoch: int):
        import torch
        from torch.utils.data import DataLoader

        skip = self.state["micro_in_epoch"]
        if isinstance(self.dataset, torch.utils.data.IterableDataset):
            return _stream(self.dataset, self.collate_fn, self.plan, self.loop, epoch, self.dist, skip)
        gen = torch.Generator().manual_seed(self.loop.seed * 7_919 + epoch * 104_729 + skip)
        batches = self.plan.epoch_batches(epoch, self.dist.rank)[skip:]
        return DataLoader(self.dataset, batch_sampler=batches, collate_fn=self.collate_fn,
                          num_workers=self.loop.num_workers, generator=gen, persistent_workers=False,
                          pin_memory=_pin_memory())

    def _epoch(self, epoch: int, pre: "_Preemption", telemetry: _Telemetry) -> int | None:
        state, loop = self.state, self.loop
        t_step = time.perf_counter()
        for batch in self._loader(epoch):
            self._micro_step(epoch, batch)
            if state["micro_in_epoch"] % self.engine_cfg.grad_accum:
                continue  # not an accumulation boundary: DeepSpeed did not step yet
            state["step"] += 1
            state["samples"] += loop.batch_size
            now = time.perf_counter()
            self.losses.end_step(self._step_record(epoch, now - t_step))
            telemetry.tick()
            t_step = now
            done = state["step"] >= self.total_steps
            if state["micro_in_epoch"] >= self.plan.micro_batches_per_epoch:
                state["epoch"], state["micro_in_epoch"] = epoch + 1, 0
            if done or state["step"] % loop.log_every == 0:
                self.flush(telemetry)  # the losses' only host sync
            if self.keeper and self.keeper.due(state["step"], done, state):
                # before this step's checkpoint, which then holds the best
                self.flush(telemetry)
                self.keeper.run(self.engine, state, telemetry.writer)
            if any_rank(pre.signal is not None):
                self.checkpoint(telemetry)
                return pre.signal or signal.SIGTERM
            end_of_epoch = state["micro_in_epoch"] == 0
            if not done and ((loop.save_every and state["step"] % loop.save_every == 0)
                             or (end_of_epoch and not loop.save_every)):
                self.checkpoint(telemetry)
            if done:
                break
        self.flush(telemetry)  # a stream that ran short
        return None

    def _micro_step(self, epoch: int, batch: dict) -> None:
        """Forward + backward of one micro batch; its losses stay on the device (self.losses)."""
        from mplug.data.collate import count_bad

        state = self.state
        # skip-and-count policy: bad images were replaced by the dataset; the run reports how
        # many (summary.json `bad_images`, this rank's share), never silently
        state["bad_images"] = state.get("bad_images", 0) + count_bad(batch)
        ctx = StepContext(epoch, state["step"], state["micro_in_epoch"], self.plan.micro_batches_per_epoch)
        losses = self.step_fn(self.engine, to_device(batch, self.engine.device, module_dtype(self.engine)), ctx)
        self.engine.backward(losses["loss"])
        self.engine.step()
        self.losses.add_micro(losses)
        state["micro_in_epoch"] += 1

    def _step_record(self, epoch: int, seconds: float) -> dict:
        """The step's record but its losses (LossBuffer adds them when it flushes)."""
        groups = self.engine.optimizer.param_groups
        lrs = {f"lr_{g.get('name', str(i))}": g["lr"] for i, g in enumerate(groups)}
        return {"step": self.state["step"], "epoch": epoch, **lrs,
                "samples_per_s": self.loop.batch_size / max(seconds, 1e-9), **_memory_mb()}

    def checkpoint(self, telemetry: "_Telemetry") -> Path:
        # the log first: a resumed run keeps the records up to the checkpoint's step
        self.flush(telemetry)
        return save_checkpoint(self.engine, self.out, self.state["step"], dict(self.state, run=self.run_info),
                               rank=self.dist.rank, keep=self.loop.keep_checkpoints)


def _finish(engine, info, out: Path, state, first, window, wall0, dist, run_info, total_steps):
    from mplug.models.loading import load_state_dict_safe, save_state_dict
    from mplug.train.evaluation import BEST_MODEL_FILE, EVAL_LOG_FILE, LAST_MODEL_FILE
    from mplug.utils.provenance import provenance

    weights = export_state_dict(engine)  # every rank takes part (ZeRO-3 gathers)
    best = (state.get("eval") or {}).get("best")
    summary = {
        "status": "complete", "steps": state["step"], "total_steps": total_steps,
        "epochs_done": state["epoch"], "samples": state["samples"],
        "bad_images": state.get("bad_images", 0),
        "wall_seconds": round(time.perf_counter() - wall0, 2), "engine": info.to_dict(),
        "first_losses": first,
        "last_losses": {k: sum(v) / len(v) for k, v in window.items() if v},
        "run": run_info or {}, "model_file": MODEL_FILE, "log_file": LOG_FILE,
    }
    if best is not None:
        summary.update(best=best, eval_history=state["eval"]["history"], eval_log=EVAL_LOG_FILE,
                       last_model_file=LAST_MODEL_FILE)
    if dist.is_main and best is not None:
        # keep-best: the run's output model is the best evaluated one, the final one is kept too
        save_state_dict(weights, out / LAST_MODEL_FILE, metadata={"steps": str(state["step"])})
        if not (out / BEST_MODEL_FILE).is_file():
            raise MplugError(f"{out / BEST_MODEL_FILE} is missing but the trainer state records a "
                             f"best model at step {best['step']}; it was deleted after the run "
                             "started: rerun without --resume")
        weights = load_state_dict_safe(out / BEST_MODEL_FILE)
        log.info("output model: the best %s=%.3f of step %d (final step %d kept as %s)",
                 best["metric"], best["value"], best["step"], state["step"], LAST_MODEL_FILE)
    if dist.is_main:
        save_state_dict(weights, out / MODEL_FILE, metadata={"steps": str(state["step"] if best is None
                                                                          else best["step"])})
        summary["provenance"] = provenance(config=run_info or {}, checkpoint=out / MODEL_FILE)
        atomic_write_json(out / SUMMARY_FILE, summary)
        log.info("done: %d steps in %.1f s; last losses %s; weights %s", state["step"],
                 summary["wall_seconds"],
                 ", ".join(f"{k}={v:.4f}" for k, v in summary["last_losses"].items()), out / MODEL_FILE)
    barrier()
    return summary
