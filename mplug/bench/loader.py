"""`mplug bench loader`: the training data path alone (read, decode, augment, tokenize, collate),
in samples/s per DataLoader worker count, for one job of a run config on its own data.

The dataset, transforms and collate are those `mplug train` builds for the job
(mplug.train.recipes.build_train_data with the job's settings, as the model runs it), so the
figure is what feeds one GPU's trainer. With `--train-json` (a `mplug bench train` result on the
same hardware) each row also gives loader ÷ step throughput: below 1 the GPU waits for data.
Pinned memory is used where CUDA is present, as the trainer does (mplug.train.loop)."""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mplug.bench.common import envelope, format_table
from mplug.errors import ConfigError, DataError


@dataclass
class LoaderBenchOptions:
    config: str = "config/config.yaml"
    job: str = "pretrain_14m"  # a pretrain or finetune job of the config
    model: str | None = None  # default: the first enabled model that runs the job
    data: str | None = None  # default: the run's data/<run>/
    workers: tuple[int, ...] = (0, 2, 4, 8)
    batch: int | None = None  # default: the job's micro batch (train.batch_size)
    batches: int = 20  # micro batches timed per row, after the first
    train_json: str | None = None
    threads: int | None = None  # torch threads of the main process (workers 0: it decodes)
    device: str = "cpu"  # the data path runs on the CPU; 'auto' is the CLI's default
    repeats: int = 1  # one timed pass per worker count (--batches sets its length)

    @classmethod
    def quick(cls, **kw: Any) -> "LoaderBenchOptions":
        base = dict(workers=(0, 2), batches=4)
        base.update({k: v for k, v in kw.items() if v is not None})
        return cls(**base)

    def validate(self) -> "LoaderBenchOptions":
        if self.batches < 1 or (self.batch is not None and self.batch < 1):
            raise ConfigError("--batches and --batch must be >= 1")
        if not self.workers or min(self.workers) < 0:
            raise ConfigError(f"--workers {','.join(map(str, self.workers))}: counts >= 0")
        if self.device not in ("auto", "cpu"):
            raise ConfigError(f"--device {self.device}: the data path runs on the CPU (batches are "
                              "pinned where CUDA is present); drop --device")
        if self.repeats != 1:
            raise ConfigError(f"--repeats {self.repeats}: the loader bench times one pass per worker "
                              "count; raise --batches for a longer one")
        return self


def _job(cfg: dict, opts: LoaderBenchOptions) -> tuple[str, str, str]:
    """(kind, task, model) of `opts.job`."""
    from mplug import config as mcfg

    kind = next((k for k in ("pretrain", "finetune") if opts.job in (cfg.get(k) or {})), None)
    if kind is None:
        jobs = [*(cfg.get("pretrain") or {}), *(cfg.get("finetune") or {})]
        raise ConfigError(f"--job {opts.job}: not a pretrain or finetune job of {opts.config} "
                          f"(jobs: {', '.join(jobs)})")
    models = [k for k, m in mcfg.enabled_models(cfg).items() if opts.job in m.get(kind, [])]
    model = opts.model or (models[0] if models else None)
    if model not in models:
        raise ConfigError(f"--model {model}: no enabled model runs {opts.job} (those that do: "
                          f"{', '.join(models) or 'none'})")
    return kind, ("pretrain" if kind == "pretrain" else cfg[kind][opts.job]["task"]), model


def build_job_data(opts: LoaderBenchOptions) -> tuple[Any, Any, dict]:
    """(dataset, collate_fn, facts) of the job, built as `mplug train` builds them."""
    from mplug import config as mcfg
    from mplug.data.tokenizer import find_vocab, load_tokenizer
    from mplug.train import recipes
    from mplug.train.settings import parse_train_settings

    cfg = mcfg.load_config(opts.config)
    kind, task, model = _job(cfg, opts)
    where = f"{kind}.{opts.job}.train"
    settings = parse_train_settings(mcfg.train_settings(cfg, kind, opts.job, model), cfg["seed"], where)
    data_dir = Path(opts.data or mcfg.data_root(cfg))
    tok = load_tokenizer(find_vocab(data_dir, cfg.get("tokenizer")))
    names = list(cfg[kind][opts.job].get("datasets") or [])
    dataset, collate, used = recipes.build_train_data(task, data_dir, names, settings, tok,
                                                      opts.job if kind == "pretrain" else None)
    facts = {"job": opts.job, "kind": kind, "task": task, "model": model, "datasets": used,
             "image_res": settings.model_overrides["image_res"],
             "batch": opts.batch or int(settings.raw["batch_size"])}
    return dataset, collate, facts


def _time_loader(dataset, collate, batch: int, workers: int, batches: int) -> dict[str, float]:
    import torch
    from torch.utils.data import DataLoader, IterableDataset

    stream = isinstance(dataset, IterableDataset)
    if not stream and len(dataset) < batch:
        raise DataError(f"the job's data has {len(dataset)} examples, fewer than one batch of {batch}")
    loader = DataLoader(dataset, batch_size=batch, shuffle=not stream, drop_last=True, collate_fn=collate,
                        num_workers=workers, pin_memory=torch.cuda.is_available(),
                        generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    it, first, done, in_epoch = iter(loader), None, 0, 0
    while done <= batches:
        try:
            next(it)
        except StopIteration:  # a small dataset: the next epoch
            if not in_epoch:
                raise DataError(f"the job's data gave no batch of {batch} in a whole epoch") from None
            it, in_epoch = iter(loader), 0
            continue
        in_epoch += 1
        if first is None:
            first = time.perf_counter() - t0  # worker start-up + the first batch
            t1 = time.perf_counter()
        done += 1
    elapsed = time.perf_counter() - t1
    return {"first_batch_s": first, "time_s": elapsed, "samples_per_s": batches * batch / elapsed,
            "ms_per_batch": 1e3 * elapsed / batches}


def _step_rate(path: str | None) -> dict | None:
    if not path:
        return None
    try:
        rows = [r for r in json.loads(Path(path).read_text())["rows"] if r.get("samples_per_s")]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(f"{path}: not a `mplug bench train` JSON with rows[].samples_per_s ({err})") from err
    if not rows:
        raise DataError(f"{path}: key rows: no row has samples_per_s")
    best = max(rows, key=lambda r: r["samples_per_s"])
    return {"path": path, "setting": best.get("setting"), "samples_per_s": best["samples_per_s"]}


def run_loader(opts: LoaderBenchOptions) -> dict[str, Any]:
    from mplug.bench.common import setup

    opts.validate()
    setup(opts.threads, "cpu")
    step = _step_rate(opts.train_json)
    dataset, collate, facts = build_job_data(opts)
    rows = []
    for workers in opts.workers:
        row = {"workers": workers, "batch": facts["batch"],
               **_time_loader(dataset, collate, facts["batch"], workers, opts.batches)}
        if step:
            row["loader_over_step"] = row["samples_per_s"] / step["samples_per_s"]
        rows.append(row)
    settings = {**asdict(opts), "workers": list(opts.workers)}
    return envelope("loader", rows, settings, device="cpu", job=facts, train_step=step)


def summary(result: dict[str, Any]) -> str:
    cols = [("workers", "workers", ""), ("batch", "batch", ""), ("samples_per_s", "samples/s", ".1f"),
            ("ms_per_batch", "ms/batch", ".1f"), ("first_batch_s", "first batch s", ".2f")]
    if result.get("train_step"):
        cols.append(("loader_over_step", "loader/step", ".2f"))
    j = result["job"]
    head = (f"training data path of {j['job']} ({j['task']}, {j['model']}, {j['image_res']} px, "
            f"{', '.join(j['datasets'])}) on {result['hardware_name']}")
    tail = ""
    if result.get("train_step"):
        s = result["train_step"]
        tail = (f"\nstep: {s['samples_per_s']:.1f} samples/s ({s['setting']}, {s['path']}); "
                "loader/step < 1: the trainer waits for data")
    return head + "\n" + format_table(result["rows"], cols) + tail
