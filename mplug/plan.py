"""GPU-hours plan of a run, from its config: per training job and model, the GPUs the workflow
gives it (mplug.config.rule_resources, the same merge as workflow/rules/common.smk) and an expected
wall time, measured where the run has a bench (`mplug bench train` JSON), else assumed and said so:

    wall = start-up + samples x FLOPs per sample / (FLOP/s per GPU x GPUs)

- samples: train.max_steps x batch_size x grad_accum x GPUs when max_steps is set (it overrides
  epochs, mplug/train/loop.py), else epochs x the training splits' examples in
  data/<run>/<dataset>/stats.json (`splits`), else x the sizes the datasets document
  (mplug.data.sources.documented_train_size: paper Table 12, the datasets' own papers/READMEs);
- FLOPs per sample: the job's own analytic step (mplug.models.flops.train_step_flops with its
  task, batch, text length, resolution, model stride/schedule): a fine-tuning step costs a third
  of a pretraining step, so the bench's samples/s cannot be used as is;
- FLOP/s per GPU, measured: samples_per_s x flops_per_sample of the bench row that runs as the
  job does (its precision, gradient checkpointing and ZeRO stage; MeasuredBench.rate), on the
  bench's hardware, assumed to scale linearly per GPU. A step's FLOP/s grows with its micro batch
  (mplug_smoke on 1 CPU thread: 48 samples/s at 4, 100 at 32), so a bench meant for planning
  runs at the jobs' batch (config/smoke.yaml `bench.train.args`); the source notes a mismatch;
  assumed (no bench JSON): the configured gpu_model's datasheet dense peak in the job's
  precision (mplug.bench.mfu.PEAK_TFLOPS) x an assumed MFU (ASSUMED_MFU, `mplug plan --assume-mfu`);
- start-up: the bench's `startup_s` (a fresh process that imports the training stack, builds the
  model and engine and writes a checkpoint and the weights), paid once per job; none when assumed.
  What the model leaves out (the job's data loading, periodic checkpoints, small-batch efficiency)
  shows as the plan's error, which plan_vs_actual measures against Snakemake's `benchmark:` files.

The paper states hardware (16 A100, 30 epochs, batch 1024) but no time. Evaluation jobs and SCST
fine-tuning (beam search in every step) are listed without an estimate (the train bench times
plain training steps only, and the FLOP count has no beam search). The configured `runtime` is a
limit, shown as such, never as an estimate."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from mplug import config as mcfg
from mplug.errors import ConfigError, DataError

EVAL_RULES = ("evaluate", "zeroshot")
PAPER_NOTE = ("paper: pretraining on 16 NVIDIA A100 GPUs, 30 epochs, batch 1024 "
              "(no training time stated)")
TRAIN_RULES = ("pretrain", "finetune")
# Without a bench JSON a GPU runs at its datasheet dense peak x this model FLOP utilisation: the
# issue's target for this stack is 40% MFU, and tuned large-model stacks report 30-50% (PaLM 46%,
# Chowdhery et al. 2022; Megatron-LM 3D parallelism 44-52% of A100 peak, Narayanan et al. 2021);
# 0.35 sits below the target since a ViT+BERT step at 224-336 px has smaller matmuls than a large
# LM's. Override with `mplug plan --assume-mfu`.
ASSUMED_MFU = 0.35


@dataclass(frozen=True)
class BenchRate:
    """FLOP/s per GPU for one job: a bench row's measurement or an assumption."""

    flops_per_s: float
    startup_s: float | None
    source: str
    assumed: bool = False  # True: a datasheet peak x an assumed MFU, not a measurement


# the fields a job's train settings and a bench row share, most decisive first: fp32 vs bf16
# moves a GPU's FLOP/s several-fold, recomputation ~1.3x, the ZeRO stage little on one device
_ROW_FIELDS = (("precision", "fp32"), ("grad_checkpointing", False), ("zero_stage", 0))


@dataclass(frozen=True)
class MeasuredBench:
    """What a `mplug bench train` JSON says about this hardware: its rows and start-up."""

    rows: tuple[dict, ...]
    startup_s: float | None
    path: str
    hardware: str | None

    def rate(self, train: dict) -> BenchRate:
        """FLOP/s of the row that runs as the job does (precision, then grad checkpointing, then
        ZeRO stage; the fastest among equals), noting a micro batch other than the job's."""
        want = [train.get(k, default) for k, default in _ROW_FIELDS]

        def key(row: dict) -> tuple:
            return (*(row.get(k) == w for (k, _), w in zip(_ROW_FIELDS, want)), row["samples_per_s"])

        row = max(self.rows, key=key)
        note = ""
        if row.get("batch") and train.get("batch_size") and row["batch"] != train["batch_size"]:
            note = f", micro batch {row['batch']} vs the job's {train['batch_size']}"
        return BenchRate(row["samples_per_s"] * row["flops_per_sample"], self.startup_s,
                         f"bench {self.path} ({row.get('setting')}{note}, {self.hardware})")


def read_bench(path: str) -> MeasuredBench:
    try:
        data = json.loads(Path(path).read_text())
        rows = [r for r in data["rows"] if r.get("samples_per_s") and r.get("flops_per_sample")]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(f"{path}: not a `mplug bench train` JSON with rows[].samples_per_s ({err})") from err
    if not rows:
        raise DataError(f"{path}: key rows: no row has samples_per_s and flops_per_sample")
    return MeasuredBench(tuple(rows), data.get("startup_s"), path,
                         data.get("hardware_name") or data.get("hardware"))


def _documented(cfg: dict, name: str) -> tuple[dict, str] | None:
    from mplug.data.sources import documented_train_size

    entry = ((cfg.get("data") or {}).get("datasets") or {}).get(name) or {}
    size = documented_train_size(name, entry.get("downloads") or ())
    return None if size is None else (size.splits, f"documented size ({size.source})")


def _stats_examples(stats: dict) -> tuple[dict, str]:
    """Per split, the examples an epoch iterates: `split_texts` (a caption dataset iterates its
    captions), else the records of a stats.json written before split_texts existed."""
    if "split_texts" in stats:
        return stats["split_texts"], "stats.json"
    return stats["splits"], "stats.json records (no split_texts: rerun its preprocessing to count captions)"


def _train_examples(cfg: dict, rule: str, job: dict, root: Path) -> tuple[int, str] | None:
    """(examples of one epoch, where the counts came from): the training splits of the job's
    datasets, from their stats.json, else the sizes the datasets document (mplug.data.sources)."""
    from mplug.train.recipes import train_splits
    from mplug.train.settings import parse_train_settings

    task = "pretrain" if rule == "pretrain" else job["task"]
    pairs = train_splits(task, parse_train_settings(job["train"], cfg.get("seed", 0)))
    splits = {s for s, _ in pairs} | ({"vg_qa"} if any(x.get("include_vg") for _, x in pairs) else set())
    total, sources = 0, []
    for name in job.get("datasets", []):
        try:
            counts, src = _stats_examples(json.loads((root / mcfg.data_stats(cfg, name)).read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            documented = _documented(cfg, name)
            if documented is None:
                return None
            counts, src = documented
        total += sum(int(counts[s]) for s in splits if s in counts)
        sources.append(f"{name}: {src}")
    return total, "; ".join(sources)


def _samples(cfg: dict, rule: str, job: dict, gpus: int, root: Path) -> tuple[int | None, str]:
    t = job["train"]
    if t.get("max_steps"):
        return (t["max_steps"] * t["batch_size"] * t.get("grad_accum", 1) * max(gpus, 1),
                "train.max_steps x batch")
    examples = _train_examples(cfg, rule, job, root)
    if examples is None:
        return None, ("no training split counts: no stats.json and no documented size for "
                      + ", ".join(job.get("datasets", [])))
    return examples[0] * t.get("epochs", 1), f"train.epochs x ({examples[1]})"


def train_samples(cfg: dict, rule: str, job: dict, gpus: int, root: Path) -> int | None:
    return _samples(cfg, rule, job, gpus, root)[0]


def assumed_rate(gpu_model: str | None, precision: str, mfu: float) -> BenchRate | None:
    """Per-GPU FLOP/s assumed without a bench: the datasheet dense peak of `gpu_model` in the
    matmuls' precision (mplug.bench.mfu.PEAK_TFLOPS; fp16 = the bf16 figure, as on the
    datasheets) x `mfu`; None when the GPU model is not in the table."""
    from mplug.bench.mfu import PEAK_TFLOPS, gpu_key

    key = gpu_key(gpu_model or "")
    prec = "bf16" if precision in ("bf16", "fp16", "amp_bf16") else "fp32"
    if key is None:
        return None
    peak = PEAK_TFLOPS[key][prec]
    return BenchRate(peak * 1e12 * mfu, None,
                     f"assumed: {key} {prec} peak {peak:g} TFLOP/s x MFU {mfu:g}", assumed=True)


def flops_per_sample(cfg: dict, model_key: str, rule: str, job: dict) -> float:
    """The job's training step, analytically (see the module docstring)."""
    from mplug.models.flops import train_step_flops
    from mplug.plan_disk import job_model_config

    t = job["train"]
    model_cfg, task = job_model_config(cfg, model_key, rule, job)
    step = train_step_flops(model_cfg, task, t["batch_size"],
                            t.get("max_text_len") or 30, t.get("image_res"), distill=t.get("distill", True),
                            queue_size=t.get("queue_size"))
    return step["flops_per_sample"]


def _jobs(cfg: dict):
    """(stage, job name, rule, job, model keys) of every job, named by the workflow rule that runs
    it; models: those that run it."""
    models = mcfg.enabled_models(cfg)
    pretrain = "convert_official" if cfg["pretrained"]["source"] == "official" else "pretrain"
    for name, job in (cfg.get("pretrain") or {}).items():
        stage = "continued pretraining" if job.get("init") else "pretraining"
        yield stage, name, pretrain, job, [k for k, m in models.items() if name in m.get("pretrain", [])]
    for name, job in (cfg.get("finetune") or {}).items():
        yield f"fine-tuning {name}", name, "finetune", job, [k for k, m in models.items()
                                                            if name in m.get("finetune", [])]
    for name, job in (cfg.get("evaluate") or {}).items():
        rule = "zeroshot" if job.get("zeroshot") else "evaluate"
        yield "evaluation", name, rule, job, [k for k, m in models.items() if name in m.get("evaluate", [])]


def _seeds(cfg: dict, rule: str, name: str) -> list[int]:
    """The extra fine-tuning seeds a job runs again for (rules finetune_seed / evaluate_seed)."""
    if rule == "finetune":
        return mcfg.finetune_seeds(cfg, name)
    return mcfg.other_seeds(cfg, name) if rule == "evaluate" else []


def submissions(wall_hours: float | None, limit_min: float | None) -> int:
    """SLURM jobs a training job takes: one per time limit its wall time spans (each ends on the
    early signal with a checkpoint and is resubmitted; docs/cluster.md)."""
    if not wall_hours or not limit_min:
        return 1
    return max(1, math.ceil(wall_hours * 60 / limit_min))


def support_jobs(cfg: dict) -> dict[str, int]:
    """SLURM jobs besides training and evaluation, per rule, as the workflow makes them (`synth`,
    the tables and `all` are local rules: no job)."""
    from mplug.data.synth_weights import WEIGHT_SOURCES
    from mplug.plan_disk import run_sources, weight_sources

    jobs = {"bench": sum(1 for e in (cfg.get("bench") or {}).values() if e.get("enabled")), "report": 1}
    if cfg["data"]["source"] == "synth":
        jobs["synth_weights"] = sum(s in WEIGHT_SOURCES for s in weight_sources(cfg))
    else:
        jobs.update(download=len(run_sources(cfg)), preprocess=len(cfg["data"]["datasets"]))
    return {k: v for k, v in jobs.items() if v}


def _train_disk(cfg: dict, model: str, rule: str, job: dict) -> dict:
    from mplug.plan_disk import meta_task_model, training_disk

    return training_disk(meta_task_model(cfg, model, rule, job), job["train"])


def model_job(cfg: dict, rule: str, name: str, job: dict, model: str | None) -> dict:
    """The job as `model` runs it: its `train` merged with overrides[arch] (and `paper` with
    hparams: paper), mplug.config.train_settings, as the training rules read it."""
    if rule not in TRAIN_RULES:
        return job
    return {**job, "train": mcfg.train_settings(cfg, rule, name, model)}


def _row(cfg, stage, name, rule, job, model, bench: MeasuredBench | None, mfu: float, root: Path) -> dict:
    res = mcfg.rule_resources(cfg, rule, job.get("resources"))
    gpus = res.get("nodes", 1) * res.get("gpus_per_node", 0)
    row = {"stage": stage, "job": name, "model": model, "rule": rule, "gpus": gpus,
           "gpu_model": res.get("gpu_model"), "nodes": res.get("nodes", 1), "samples": None,
           "runtime_limit_min": res.get("runtime"), "startup_s": None, "compute_s": None,
           "gpu_hours": None, "wall_hours": None, "assumed": False, "samples_source": None,
           "rate_source": None, "slurm_jobs": 1, "disk_bytes": None}
    if rule in EVAL_RULES:
        return {**row, "slurm_jobs": len(job.get("splits") or ()),
                "source": "no estimate: the train bench times training steps, not evaluation"}
    if rule not in TRAIN_RULES:
        return {**row, "source": "no estimate: a conversion of the released checkpoint (CPU)"}
    row.update(_train_disk(cfg, model, rule, job))
    row["samples"], row["samples_source"] = _samples(cfg, rule, job, gpus, root)
    if row["samples"] is None:
        return {**row, "source": "no estimate: " + row["samples_source"]}
    rate = bench.rate(job["train"]) if bench else None
    if rate is None and gpus:
        rate = assumed_rate(res.get("gpu_model"), job["train"].get("precision", "fp32"), mfu)
    if rate is None:
        why = (f"GPU model {res.get('gpu_model')!r} not in mplug.bench.mfu.PEAK_TFLOPS" if gpus
               else "a CPU job")
        return {**row, "source": f"no estimate: no bench JSON given (--bench) and {why}"}
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
        source += "; no start-up time" + ("" if rate.assumed else " (no startup_s in the bench JSON)") \
            + ": compute only"
    return {**row, "startup_s": rate.startup_s, "compute_s": compute, "wall_hours": wall,
            "gpu_hours": wall * gpus, "slurm_jobs": submissions(wall, res.get("runtime")),
            "assumed": rate.assumed, "rate_source": source,
            "source": f"{row['samples_source']}; {source}"}


def check_mfu(mfu: float) -> float:
    if not 0 < mfu <= 1:
        raise ConfigError(f"--assume-mfu {mfu:g}: an MFU is a fraction of the peak, in (0, 1]")
    return mfu


def _stage_totals(rows: list[dict]) -> list[dict]:
    out: dict[str, dict] = {}
    for r in rows:
        if r["gpu_hours"] is not None:
            t = out.setdefault(r["stage"], {"stage": r["stage"], "gpu_hours": 0.0, "assumed": False})
            t["gpu_hours"] += r["gpu_hours"]
            t["assumed"] |= r["assumed"]
    return list(out.values())


def make_plan(cfg: dict, bench: str | None = None, root: Path = Path("."),
              assume_mfu: float = ASSUMED_MFU) -> dict:
    """The plan's rows and totals; without `bench`, GPU jobs run at assumed_rate(.., assume_mfu)."""
    check_mfu(assume_mfu)
    measured = read_bench(bench) if bench else None
    rows = [{**_row(cfg, stage, name, rule, model_job(cfg, rule, name, job, model), model, measured, assume_mfu,
                    root), "seed": seed}
            for stage, name, rule, job, models in _jobs(cfg) for model in models
            for seed in [None, *_seeds(cfg, rule, name)]]
    known = [r["gpu_hours"] for r in rows if r["gpu_hours"] is not None]
    support = support_jobs(cfg)
    return {"run": cfg["run"], "note": PAPER_NOTE, "rows": rows, "assume_mfu": assume_mfu,
            "stage_gpu_hours": _stage_totals(rows),
            "total_gpu_hours": sum(known) if known else None,
            "total_assumed": any(r["assumed"] for r in rows),
            "rows_without_estimate": sum(r["gpu_hours"] is None for r in rows),
            "support_jobs": support,
            "total_slurm_jobs": sum(r["slurm_jobs"] for r in rows) + sum(support.values()),
            **_disk_totals(cfg, rows, root)}


def dag_jobs(plan: dict) -> dict[str, int]:
    """Jobs per workflow rule as `snakemake -n` counts them (a resubmission is the same job)."""
    out = dict(plan["support_jobs"])
    for r in plan["rows"]:
        rule = r["rule"] + ("_seed" if r["seed"] is not None else "")
        out[rule] = out.get(rule, 0) + (r["slurm_jobs"] if r["rule"] in EVAL_RULES else 1)
    return out


def _disk_totals(cfg: dict, rows: list[dict], root: Path) -> dict:
    from mplug.plan_disk import download_disk

    downloads = [] if cfg["data"]["source"] == "synth" else download_disk(cfg, root)
    return {"downloads": downloads, "download_bytes": sum(d["bytes"] for d in downloads),
            "undocumented_files": sum(d["undocumented_files"] for d in downloads),
            "training_disk_bytes": sum(r["disk_bytes"] or 0 for r in rows)}


def _f(x):
    if x is None:
        return "-"
    return f"{x:.3g}" if abs(x) < 100 else f"{x:,.0f}"  # smoke jobs last minutes, paper jobs days


def _tag(assumed: bool) -> str:
    return " (assumed)" if assumed else " (measured bench)"


def job_label(row: dict) -> str:
    """The job, with its fine-tuning seed when it is one of evaluate.<job>.seeds' extra runs."""
    return row["job"] if row.get("seed") is None else f"{row['job']} seed {row['seed']}"


def render(plan: dict) -> str:
    rows = [{**r, "label": job_label(r)} for r in plan["rows"]]
    ws, wj, wm = (max([len(h)] + [len(str(r[k] or "-")) for r in rows])
                  for k, h in (("stage", "stage"), ("label", "job"), ("model", "model")))
    out = [f"plan of run {plan['run']}  ({plan['note']})",
           f"{'stage':<{ws}}  {'job':<{wj}}  {'model':<{wm}} {'GPUs':>5} {'samples':>13} {'GPU-h':>8} "
           f"{'wall-h':>7} {'limit-h':>7} {'jobs':>4} {'disk-GB':>7}  source"]
    for r in rows:
        lim = None if r["runtime_limit_min"] is None else r["runtime_limit_min"] / 60
        samples = "-" if r["samples"] is None else f"{r['samples']:,}"
        disk = None if r.get("disk_bytes") is None else r["disk_bytes"] / 1e9
        out.append(f"{r['stage']:<{ws}}  {r['label']:<{wj}}  {r['model'] or '-':<{wm}} {r['gpus']:>5} "
                   f"{samples:>13} {_f(r['gpu_hours']):>8} {_f(r['wall_hours']):>7} "
                   f"{_f(lim):>7} {r.get('slurm_jobs', 1):>4} {_f(disk):>7}  {r['source']}")
    out.append("GPU-hours per stage (rows with an estimate):")
    for t in plan.get("stage_gpu_hours", []):
        out.append(f"  {t['stage']:<{ws}} {_f(t['gpu_hours']):>10}{_tag(t['assumed'])}")
    tag = _tag(plan["total_assumed"]) if plan["total_gpu_hours"] is not None else ""
    out.append(f"  {'total':<{ws}} {_f(plan['total_gpu_hours']):>10}{tag}; rows without estimate: "
               f"{plan['rows_without_estimate']}")
    out += _render_jobs_and_disk(plan)
    out.append("wall = start-up + samples x FLOPs/sample / (GPUs x FLOP/s per GPU); FLOP/s per GPU: "
               "measured (--bench) or assumed (datasheet dense peak x MFU, --assume-mfu "
               f"{plan.get('assume_mfu', ASSUMED_MFU):g}); samples: stats.json or documented sizes; "
               "limit-h = configured runtime (a limit, not an estimate)")
    return "\n".join(out)


def _bytes(n: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n / 1e3:.3g} kB"


def _render_jobs_and_disk(plan: dict) -> list[str]:
    rows = plan["rows"]
    train = sum(r["slurm_jobs"] for r in rows if r["rule"] in TRAIN_RULES)
    resubmitted = sum(r["slurm_jobs"] - 1 for r in rows if r["rule"] in TRAIN_RULES)
    evals = sum(r["slurm_jobs"] for r in rows if r["rule"] in EVAL_RULES)
    support = ", ".join(f"{k} {v}" for k, v in plan["support_jobs"].items())
    out = [f"SLURM jobs: {plan['total_slurm_jobs']:,} (training {train}, of which {resubmitted} "
           f"resubmissions at time limits; evaluation {evals} (one per split); {support})"]
    if plan["downloads"]:
        measured = sum(d["basis"] == "measured" for d in plan["downloads"])
        missing = [d["source"] for d in plan["downloads"] if d["undocumented_files"]]
        out.append(f"disk, downloads: >= {_bytes(plan['download_bytes'])} over {len(plan['downloads'])} "
                   f"sources ({measured} measured, the rest documented; {plan['undocumented_files']} files "
                   f"without a documented size, not counted, in: {', '.join(missing) or 'none'})")
    out.append(f"disk, training outputs: {_bytes(plan['training_disk_bytes'])} (per job: the "
               f"checkpoints it keeps + its fp32 weights; mplug/plan_disk.py)")
    return out


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


def run_plan(cfg: dict, root: Path) -> dict:
    """The run's plan made with its own train bench (results/<run>/bench/train.json) when present."""
    bench = root / mcfg.bench_json(cfg, "train")
    return make_plan(cfg, str(bench) if bench.exists() else None, root)


def plan_summary(result: dict) -> dict:
    """The totals the report shows above its plan-vs-actual table."""
    keys = ("total_gpu_hours", "total_assumed", "total_slurm_jobs", "download_bytes",
            "undocumented_files", "training_disk_bytes", "stage_gpu_hours")
    return {k: result[k] for k in keys} | {"sources": len(result["downloads"])}


def plan_vs_actual(cfg: dict, root: Path, result: dict | None = None) -> list[dict]:
    """Each training job's planned wall time (run_plan, or `result`) beside the job's whole wall
    time as Snakemake measured it (its `benchmark:` TSV, mplug.config.rule_benchmark) and the
    training loop's own wall_seconds (summary.json)."""
    try:
        result = result or run_plan(cfg, root)
    except DataError as err:
        return [{"job": "-", "model": "-", "seed": None, "planned_s": None, "startup_s": None, "compute_s": None,
                 "snakemake_s": None, "trainer_s": None, "ratio": None, "source": str(err)}]
    out = []
    for row in (r for r in result["rows"] if r["rule"] in TRAIN_RULES):
        seed = [f"seed{row['seed']}"] if row["seed"] is not None else []
        actual = benchmark_seconds(root / mcfg.rule_benchmark(cfg, row["rule"], row["model"], row["job"], *seed))
        trainer = _trainer_seconds(root / mcfg.checkpoint_dir(cfg, row["model"], row["job"], row["seed"])
                                   / "summary.json")
        if actual is None and trainer is None:
            continue  # the job has not run
        planned = None if row["wall_hours"] is None else row["wall_hours"] * 3600
        out.append({"job": row["job"], "model": row["model"], "seed": row["seed"], "planned_s": planned,
                    "startup_s": row["startup_s"], "compute_s": row["compute_s"],
                    "snakemake_s": actual, "trainer_s": trainer,
                    "ratio": planned / actual if planned and actual else None, "source": row["source"]})
    return out
