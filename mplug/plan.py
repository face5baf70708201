"""GPU-hours plan of a run, from its config: per training job and model, the GPUs the workflow
gives it (mplug.config.rule_resources, the same merge as workflow/rules/common.smk) and an expected
wall time from a measured bench (`mplug bench train` JSON), never from a guess:

    wall = start-up + samples x FLOPs per sample / (bench FLOP/s x GPUs)

- samples: train.max_steps x batch_size x grad_accum x GPUs when max_steps is set (it overrides
  epochs, mplug/train/loop.py), else epochs x the training splits' examples in
  data/<run>/<dataset>/stats.json (`splits`);
- FLOPs per sample: the job's own analytic step (mplug.models.flops.train_step_flops with its
  task, batch, text length, resolution, model stride/schedule): a fine-tuning step costs a third
  of a pretraining step, so the bench's samples/s cannot be used as is;
- bench FLOP/s: the bench's best row (samples_per_s x its flops_per_sample), on the bench's
  hardware, assumed to scale linearly per GPU;
- start-up: the bench's `startup_s` (a fresh process that imports the training stack, builds the
  model and engine and writes a checkpoint and the weights), paid once per job. What the model
  leaves out (the job's data loading, periodic checkpoints, small-batch efficiency) shows as the
  plan's error, which plan_vs_actual measures against Snakemake's
  `benchmark:` files.

The paper states hardware (16 A100, 30 epochs, batch 1024) but no time, so without a bench JSON a
row has no estimate and says so; evaluation jobs and SCST fine-tuning (beam search in every step)
are listed without one (the train bench times plain training steps only). The configured
`runtime` is a limit, shown as such, never as an estimate."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mplug import config as mcfg
from mplug.errors import DataError

PAPER_NOTE = ("paper: pretraining on 16 NVIDIA A100 GPUs, 30 epochs, batch 1024 "
              "(no training time stated)")
TRAIN_RULES = ("pretrain", "finetune")


@dataclass(frozen=True)
class BenchRate:
    """What a `mplug bench train` JSON says about this hardware."""

    flops_per_s: float
    startup_s: float | None
    source: str


def bench_rate(path: str) -> BenchRate:
    try:
        data = json.loads(Path(path).read_text())
        rows = [r for r in data["rows"] if r.get("samples_per_s") and r.get("flops_per_sample")]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(f"{path}: not a `mplug bench train` JSON with rows[].samples_per_s ({err})") from err
    if not rows:
        raise DataError(f"{path}: key rows: no row has samples_per_s and flops_per_sample")
    best = max(rows, key=lambda r: r["samples_per_s"])
    hardware = data.get("hardware_name") or data.get("hardware")
    return BenchRate(best["samples_per_s"] * best["flops_per_sample"], data.get("startup_s"),
                     f"bench {path} ({best.get('setting')}, {hardware})")


def _train_examples(cfg: dict, rule: str, job: dict, root: Path) -> int | None:
    """Examples of one epoch: the training splits of the job's datasets, from their stats.json."""
    from mplug.train.recipes import train_splits
    from mplug.train.settings import parse_train_settings

    task = "pretrain" if rule == "pretrain" else job["task"]
    pairs = train_splits(task, parse_train_settings(job["train"], cfg.get("seed", 0)))
    splits = {s for s, _ in pairs} | ({"vg_qa"} if any(x.get("include_vg") for _, x in pairs) else set())
    total = 0
    for name in job.get("datasets", []):
        try:
            counts = json.loads((root / mcfg.data_stats(cfg, name)).read_text())["splits"]
            total += sum(int(counts[s]) for s in splits if s in counts)
        except (OSError, ValueError, KeyError, TypeError):
            return None
    return total


def train_samples(cfg: dict, rule: str, job: dict, gpus: int, root: Path) -> int | None:
    t = job["train"]
    if t.get("max_steps"):
        return t["max_steps"] * t["batch_size"] * t.get("grad_accum", 1) * max(gpus, 1)
    examples = _train_examples(cfg, rule, job, root)
    return None if examples is None else examples * t.get("epochs", 1)


def flops_per_sample(cfg: dict, model_key: str, rule: str, job: dict) -> float:
    """The job's training step, analytically (see the module docstring)."""
    from mplug.models.flops import train_step_flops
    from mplug.models.registry import get_config
    from mplug.task_registry import get_task

    t, entry = job["train"], cfg["models"][model_key]
    over = {k: entry[k] for k in ("stride", "schedule") if entry.get(k) is not None}
    if t.get("image_res"):
        over["vision.image_res"] = t["image_res"]
    task = get_task("pretrain" if rule == "pretrain" else job["task"]).model_task
    step = train_step_flops(get_config(entry["arch"], **over), task, t["batch_size"],
                            t.get("max_text_len") or 30, t.get("image_res"), distill=t.get("distill", True),
                            queue_size=t.get("queue_size"))
    return step["flops_per_sample"]


def _jobs(cfg: dict):
    """(stage, job name, rule, job, model keys) of every job; models: those that run it."""
    models = mcfg.enabled_models(cfg)
    for name, job in (cfg.get("pretrain") or {}).items():
        stage = "continued pretraining" if job.get("init") else "pretraining"
        yield stage, name, "pretrain", job, [k for k, m in models.items() if name in m.get("pretrain", [])]
    for name, job in (cfg.get("finetune") or {}).items():
        yield f"fine-tuning {name}", name, "finetune", job, [k for k, m in models.items()
                                                            if name in m.get("finetune", [])]
    for name, job in (cfg.get("evaluate") or {}).items():
        yield "evaluation", name, "evaluate", job, [None]


def _row(cfg, stage, name, rule, job, model, rate: BenchRate | None, root: Path) -> dict:
    res = mcfg.rule_resources(cfg, rule, job.get("resources"))
    gpus = res.get("nodes", 1) * res.get("gpus_per_node", 0)
    row = {"stage": stage, "job": name, "model": model, "rule": rule, "gpus": gpus,
           "gpu_model": res.get("gpu_model"), "nodes": res.get("nodes", 1), "samples": None,
           "runtime_limit_min": res.get("runtime"), "startup_s": None, "compute_s": None,
           "gpu_hours": None, "wall_hours": None}
    if rule not in TRAIN_RULES:
        return {**row, "source": "no estimate: the train bench times training steps, not evaluation"}
    row["samples"] = train_samples(cfg, rule, job, gpus, root)
    if row["samples"] is None:
        return {**row, "source": "no estimate: training split counts missing from stats.json of "
                                 + ", ".join(job.get("datasets", []))}
    if rate is None:
        return {**row, "source": "no estimate: no bench JSON given (--bench)"}
    if job["train"].get("scst"):
        # measured on the smoke run: 4.7x the FLOP count's time per sample; its beam search is
        # bound by per-token decoding steps, which neither the FLOP count nor the bench times
        return {**row, "source": "no estimate: SCST steps run beam search, not timed by the train "
                                 "bench nor in the FLOP count"}
    # a CPU job (gpus_per_node 0) runs one process at the bench's own rate
    compute = row["samples"] * flops_per_sample(cfg, model, rule, job) / (rate.flops_per_s * max(gpus, 1))
    startup = rate.startup_s or 0.0
    wall = (startup + compute) / 3600
    source = rate.source + (" x linear GPU scaling" if gpus else " (CPU job, 1 process)")
    if rate.startup_s is None:
        source += "; no startup_s in the bench JSON: compute only"
    return {**row, "startup_s": rate.startup_s, "compute_s": compute, "wall_hours": wall,
            "gpu_hours": wall * gpus, "source": source}


def make_plan(cfg: dict, bench: str | None = None, root: Path = Path(".")) -> dict:
    rate = bench_rate(bench) if bench else None
    rows = [_row(cfg, stage, name, rule, job, model, rate, root)
            for stage, name, rule, job, models in _jobs(cfg) for model in models]
    known = [r["gpu_hours"] for r in rows if r["gpu_hours"] is not None]
    return {"run": cfg["run"], "note": PAPER_NOTE, "rows": rows,
            "total_gpu_hours": sum(known) if known else None,
            "rows_without_estimate": sum(r["gpu_hours"] is None for r in rows)}


def render(plan: dict) -> str:
    def f(x):
        if x is None:
            return "-"
        return f"{x:.3g}" if abs(x) < 100 else f"{x:,.0f}"  # smoke jobs last minutes, paper jobs days
    out = [f"plan of run {plan['run']}  ({plan['note']})",
           f"{'stage':<28} {'job':<30} {'model':<14} {'GPUs':>5} {'samples':>12} {'GPU-h':>8} "
           f"{'wall-h':>7} {'limit-h':>7}  source"]
    for r in plan["rows"]:
        lim = None if r["runtime_limit_min"] is None else r["runtime_limit_min"] / 60
        out.append(f"{r['stage']:<28} {r['job']:<30} {r['model'] or '-':<14} {r['gpus']:>5} "
                   f"{r['samples'] or '-':>12} {f(r['gpu_hours']):>8} {f(r['wall_hours']):>7} "
                   f"{f(lim):>7}  {r['source']}")
    out.append(f"total GPU-hours (rows with an estimate): {f(plan['total_gpu_hours'])}; "
               f"rows without estimate: {plan['rows_without_estimate']}; wall = bench start-up + "
               "samples x FLOPs/sample / bench FLOP/s; limit-h = configured runtime (a limit, not an "
               "estimate)")
    return "\n".join(out)


def benchmark_seconds(path: Path) -> float | None:
    """Mean `s` (wall seconds) of a Snakemake `benchmark:` TSV; None when absent or unreadable."""
    try:
        lines = path.read_text().splitlines()
        col = lines[0].split("\t").index("s")
        values = [float(line.split("\t")[col]) for line in lines[1:] if line.strip()]
    except (OSError, ValueError, IndexError):
        return None
    return sum(values) / len(values) if values else None


def _trainer_seconds(path: Path) -> float | None:
    try:
        return float(json.loads(path.read_text())["wall_seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def plan_vs_actual(cfg: dict, root: Path) -> list[dict]:
    """Each training job's planned wall time (bench results/<run>/bench/train.json when present)
    beside the job's whole wall time as Snakemake measured it (its `benchmark:` TSV,
    mplug.config.rule_benchmark) and the training loop's own wall_seconds (summary.json)."""
    bench = root / mcfg.bench_json(cfg, "train")
    try:
        result = make_plan(cfg, str(bench) if bench.exists() else None, root)
    except DataError as err:
        return [{"job": "-", "model": "-", "planned_s": None, "startup_s": None, "compute_s": None,
                 "snakemake_s": None, "trainer_s": None, "ratio": None, "source": str(err)}]
    out = []
    for row in (r for r in result["rows"] if r["rule"] in TRAIN_RULES):
        actual = benchmark_seconds(root / mcfg.rule_benchmark(cfg, row["rule"], row["model"], row["job"]))
        trainer = _trainer_seconds(root / mcfg.checkpoint_dir(cfg, row["model"], row["job"]) / "summary.json")
        if actual is None and trainer is None:
            continue  # the job has not run
        planned = None if row["wall_hours"] is None else row["wall_hours"] * 3600
        out.append({"job": row["job"], "model": row["model"], "planned_s": planned,
                    "startup_s": row["startup_s"], "compute_s": row["compute_s"],
                    "snakemake_s": actual, "trainer_s": trainer,
                    "ratio": planned / actual if planned and actual else None, "source": row["source"]})
    return out
