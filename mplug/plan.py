"""GPU-hours plan of a run, from its config: per training/evaluation job, the GPUs the workflow
gives it (mplug.config.rule_resources, the same merge as workflow/rules/common.smk) and an expected
duration from a stated source. The only duration source is measured throughput: `mplug bench train`
JSON rows (`samples_per_s`, best row, on the bench's hardware, assumed to scale linearly per GPU)
x samples (epochs x dataset `examples` from data/<run>/<dataset>/stats.json). The paper states
hardware (16 A100, 30 epochs, batch 1024) but no time, so without a bench JSON a row has no
estimate and says so. The configured `runtime` is a limit, shown as such, never as an estimate."""
from __future__ import annotations

import json
from pathlib import Path

from mplug import config as mcfg
from mplug.errors import DataError

PAPER_NOTE = ("paper: pretraining on 16 NVIDIA A100 GPUs, 30 epochs, batch 1024 "
              "(no training time stated)")


def bench_throughput(path: str) -> tuple[float, str]:
    try:
        data = json.loads(Path(path).read_text())
        rows = [r for r in data["rows"] if r.get("samples_per_s")]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(f"{path}: not a `mplug bench train` JSON with rows[].samples_per_s ({err})") from err
    if not rows:
        raise DataError(f"{path}: key rows: no row has samples_per_s")
    best = max(rows, key=lambda r: r["samples_per_s"])
    return float(best["samples_per_s"]), f"bench {path} ({best.get('setting')}, {data.get('hardware')})"


def _examples(cfg: dict, datasets: list[str], root: Path) -> int | None:
    total = 0
    for name in datasets:
        p = root / mcfg.data_stats(cfg, name)
        if not p.exists():
            return None
        n = json.loads(p.read_text()).get("examples")
        if not isinstance(n, int):
            return None
        total += n
    return total


def _jobs(cfg: dict):
    for name, job in (cfg.get("pretrain") or {}).items():
        stage = "continued pretraining" if job.get("init") else "pretraining"
        yield stage, name, "pretrain", job.get("datasets", []), job["train"].get("epochs", 1), job
    for name, job in (cfg.get("finetune") or {}).items():
        yield f"fine-tuning {name}", name, "finetune", job.get("datasets", []), job["train"].get("epochs", 1), job
    for name, job in (cfg.get("evaluate") or {}).items():
        ds = [job["dataset"]] if job.get("dataset") else []
        yield "evaluation", name, "evaluate", ds, len(job.get("splits", [])) or 1, job


def make_plan(cfg: dict, bench: str | None = None, root: Path = Path(".")) -> dict:
    tput, tsource = bench_throughput(bench) if bench else (None, None)
    rows = []
    for stage, name, rule, datasets, passes, job in _jobs(cfg):
        res = mcfg.rule_resources(cfg, rule, job.get("resources"))
        gpus = res.get("nodes", 1) * res.get("gpus_per_node", 0)
        samples = _examples(cfg, datasets, root)
        row = {"stage": stage, "job": name, "rule": rule, "gpus": gpus, "gpu_model": res.get("gpu_model"),
               "nodes": res.get("nodes", 1), "samples": samples * passes if samples is not None else None,
               "runtime_limit_min": res.get("runtime"), "gpu_hours": None, "wall_hours": None}
        if samples is None:
            row["source"] = "no estimate: dataset stats.json (examples) missing for " + ", ".join(datasets)
        elif tput is None:
            row["source"] = "no estimate: no bench JSON given (--bench)"
        else:  # a CPU job (gpus_per_node 0) runs one process at the bench's own rate
            wall = row["samples"] / (tput * max(gpus, 1)) / 3600
            row.update(wall_hours=wall, gpu_hours=wall * gpus,
                       source=tsource + (" x linear GPU scaling" if gpus else " (CPU job, 1 process)"))
        rows.append(row)
    known = [r["gpu_hours"] for r in rows if r["gpu_hours"] is not None]
    return {"run": cfg["run"], "note": PAPER_NOTE, "rows": rows,
            "total_gpu_hours": sum(known) if known else None,
            "rows_without_estimate": sum(r["gpu_hours"] is None for r in rows)}


def render(plan: dict) -> str:
    def f(x):
        return "-" if x is None else f"{x:.1f}"
    out = [f"plan of run {plan['run']}  ({plan['note']})",
           f"{'stage':<28} {'job':<30} {'GPUs':>5} {'samples':>12} {'GPU-h':>8} {'wall-h':>7} "
           f"{'limit-h':>7}  source"]
    for r in plan["rows"]:
        lim = None if r["runtime_limit_min"] is None else r["runtime_limit_min"] / 60
        out.append(f"{r['stage']:<28} {r['job']:<30} {r['gpus']:>5} {r['samples'] or '-':>12} "
                   f"{f(r['gpu_hours']):>8} {f(r['wall_hours']):>7} {f(lim):>7}  {r['source']}")
    out.append(f"total GPU-hours (rows with an estimate): {f(plan['total_gpu_hours'])}; "
               f"rows without estimate: {plan['rows_without_estimate']}; limit-h = configured runtime "
               "(a limit, not an estimate)")
    return "\n".join(out)


def plan_vs_actual(cfg: dict, root: Path) -> list[dict]:
    """Each training job's planned wall time (bench results/<run>/bench/train.json when present) next
    to the wall_seconds its summary.json recorded (mplug/train/loop.py), per enabled model."""
    bench = root / mcfg.bench_json(cfg, "train")
    try:
        result = make_plan(cfg, str(bench) if bench.exists() else None, root)
    except DataError as err:
        return [{"job": "-", "model": "-", "planned_s": None, "actual_s": None, "ratio": None,
                 "source": str(err)}]
    out = []
    for row in (r for r in result["rows"] if r["rule"] in ("pretrain", "finetune")):
        for key in mcfg.enabled_models(cfg):
            path = root / mcfg.checkpoint_dir(cfg, key, row["job"]) / "summary.json"
            try:
                actual = float(json.loads(path.read_text())["wall_seconds"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            planned = None if row["wall_hours"] is None else row["wall_hours"] * 3600
            out.append({"job": row["job"], "model": key, "planned_s": planned, "actual_s": actual,
                        "ratio": planned / actual if planned and actual else None, "source": row["source"]})
    return out
