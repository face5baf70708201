"""Fake run trees at exactly the paths the workflow writes (mplug.config helpers, walked the way
workflow/rules/common.smk walks the config), with metric KEYS named as mplug/eval writes them.

Every value written here is a TEST FIXTURE (made-up numbers), not a result.
"""
from __future__ import annotations

import json
from pathlib import Path

from mplug import config as mcfg
from mplug.task_registry import get_task

FIXTURE = {"note": "test fixture: made-up values, not a result"}


def eval_keys(task: str) -> list[str]:
    """The metric keys the evaluator writes for `task`: its TaskSpec's `metrics` (tests/
    test_task_registry.py checks them against the scorers' own names)."""
    return list(get_task(task).metrics)


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def eval_outputs(cfg: dict) -> list[tuple[str, str, str, str]]:
    """(model_key, job, split, path) of every evaluation the DAG runs (common.smk
    all_eval_outputs: every enabled model x its evaluate jobs x the job's splits x its other
    fine-tuning seeds)."""
    return [(m, job, s, mcfg.eval_json(cfg, m, job, s, seed))
            for m, e in mcfg.enabled_models(cfg).items() for job in e["evaluate"]
            for s in cfg["evaluate"][job]["splits"] for seed in [None, *mcfg.other_seeds(cfg, job)]]


def fake_run(root: Path, cfg: dict) -> dict[str, dict[str, float]]:
    """Write every evaluation's metrics.json, the benches, the fine-tuning summaries; return
    {path: {key: fixture value}} (distinct values, so a mis-mapped cell shows)."""
    written: dict[str, dict[str, float]] = {}
    n = 0
    for _model, job, split, path in eval_outputs(cfg):
        keys = eval_keys(cfg["evaluate"][job]["task"])
        metrics = {}
        for k in keys:
            n += 1
            metrics[k] = round(10 + n * 0.37 % 80, 2)  # fixture
        write_json(root / path, {"task": cfg["evaluate"][job]["task"], "split": split,
                                 "metrics": metrics, "provenance": FIXTURE})
        written[path] = metrics
    write_json(root / mcfg.bench_json(cfg, "train"), {"hardware": "FixtureGPU", "rows": [
        {"setting": s, "samples_per_s": v} for s, v in
        (("baseline", 10.0), ("+bf16", 14.7), ("+grad_ckpt", 14.0), ("+zero", 20.0))]})
    for model, e in mcfg.enabled_models(cfg).items():
        for job in e["finetune"]:
            settings = mcfg.train_settings(cfg, "finetune", job, model)
            # the shape mplug/train/loop.py _finish writes
            write_json(root / mcfg.checkpoint_dir(cfg, model, job) / "summary.json",
                       {"status": "complete", "steps": 7, "epochs_done": 1,
                        "run": {"kind": "finetune", "stage": job, "model": model,
                                "settings": settings}, "provenance": FIXTURE})
    return written
