"""`mplug evaluate [TASK] --config RUN.yaml --model KEY --job JOB --checkpoint CKPT --data DIR
--split SPLIT --out FILE.json`.

With a run config, `--model` is one of its model keys and `--job` one of its `evaluate:` jobs:
the task, the dataset folder, the architecture (with the model's stride and schedule) and every
generation setting (image_res, max_text_len, beam, prompt, frames, k_test, ...; after the job's
`overrides[arch]` and `paper:`) are resolved from the config once, by `mplug.eval.job`; keys the
evaluator does not act on are logged and stored in the metrics' provenance. The workflow's rules
call it this way. Without a config, `--model` names a registry model and TASK is required.
Command-line options override the resolved settings (lowest to highest: the official defaults of
mplug.eval.run.EvalSettings, the config's job, the options).
"""
from __future__ import annotations

import argparse

from mplug.task_registry import task_names


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", nargs="?", choices=task_names("evaluate"),
                        help="evaluation task (default: the --job's task)")
    parser.add_argument("--config", help="run config YAML: --model and --job name its keys")
    parser.add_argument("--job", help="the config's `evaluate:` job (task, dataset and settings)")
    parser.add_argument("--checkpoint", help="model weights (.safetensors or .pth); omit only to "
                        "evaluate a random-init model (debugging)")
    parser.add_argument("--data", required=True, help="data/<run>/ or the dataset folder itself")
    parser.add_argument("--dataset", help="dataset folder name under --data (e.g. refcoco+, "
                        "flickr_retrieval for zero-shot Flickr); default per task")
    parser.add_argument("--split", required=True, help="split name (<split>.jsonl)")
    parser.add_argument("--out", required=True, help="metrics JSON to write; predictions go "
                        "next to it as <stem>.predictions.json")
    parser.add_argument("--model", help="with --config: a model key of its `models:` (default: the "
                        "only one); without: a registry model (default mplug_base)")
    parser.add_argument("--tokenizer", help="vocab.txt or tokenizer folder (default: vocab.txt "
                        "found in the dataset folder or its parents)")
    parser.add_argument("--image-res", type=int, help="evaluation resolution (default: the job's "
                        "image_res, else the checkpoint's own); a checkpoint trained at another one "
                        "has its position embedding resized")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    parser.add_argument("--limit", type=int, help="only the first N records (debugging)")
    parser.add_argument("--beam", type=int, help="beam size of this task's decoding")
    parser.add_argument("--max-length", type=int, help="max decoded length of this task")
    parser.add_argument("--min-length", type=int, help="min decoded length of this task")
    parser.add_argument("--paper-decoding", action="store_true",
                        help="captioning: the paper's beam 10 / max 20 instead of the official 5 / 25")
    parser.add_argument("--prompt", help="decoding prompt (captioning tasks)")
    parser.add_argument("--k-test", type=int, help="retrieval: ITC candidates reranked by ITM")
    parser.add_argument("--frames", type=int, help="video tasks: frames sampled per video")
    parser.add_argument("--bins", type=int, help="grounding: coordinate bins (default: the "
                        "checkpoint's training summary.json, else the model config's 337)")
    parser.add_argument("--ci-resamples", type=int, help="bootstrap resamples of the 95%% "
                        "intervals stored as metrics.ci95 (default 1000; 0: none)")
    parser.add_argument("--ci-seed", type=int, help="seed of the bootstrap (default 0)")
    parser.set_defaults(func=run)


def _load_config(path: str | None) -> dict:
    from mplug.config import load_config

    return load_config(path) if path else {}


def resolve(args: argparse.Namespace, cfg: dict):
    """(task, dataset, EvalSettings, not-acted-on keys) of the command line."""
    from mplug.eval.run import EvalSettings

    from mplug.errors import ConfigError

    s = EvalSettings.paper_caption() if args.paper_decoding else EvalSettings()
    if not cfg:
        if args.job:
            raise ConfigError("--job names a job of a run config: pass --config too")
        if not args.task:
            raise ConfigError("give the evaluation TASK, or --config and --job")
        return args.task, args.dataset, s.replace(**({"model": args.model} if args.model else {})), {}
    job = _job(args, cfg)
    if args.task and args.task != job.task:
        raise ConfigError(f"{args.config}: evaluate.{job.name} is a {job.task} job, not {args.task}")
    return job.task, args.dataset or job.dataset, s.replace(**job.settings), job.not_acted_on


def _job(args: argparse.Namespace, cfg: dict):
    from mplug.config import enabled_models
    from mplug.eval.job import resolve_job

    from mplug.errors import ConfigError

    models = enabled_models(cfg)
    key = args.model or (next(iter(models)) if len(models) == 1 else None)
    if key not in cfg["models"]:
        raise ConfigError(f"{args.config}: --model must be one of its model keys "
                          f"({', '.join(cfg['models'])}), got {args.model!r}")
    if not args.job:
        same = [j for j, e in cfg["evaluate"].items() if e["task"] == args.task]
        if args.task not in cfg["evaluate"] and len(same) != 1:
            raise ConfigError(f"{args.config}: pass --job, one of the evaluate: jobs "
                              f"({', '.join(cfg['evaluate'])})")
        args.job = args.task if args.task in cfg["evaluate"] else same[0]
    return resolve_job(cfg, args.job, key)


def overrides(args: argparse.Namespace, task: str) -> dict:
    """EvalSettings fields set by command-line options (checked against the task)."""
    from mplug.eval.job import generation_prefixes, option_fields

    from mplug.errors import ConfigError

    over = {"batch_size": args.batch_size, "image_res": args.image_res, "device": args.device, "limit": args.limit,
            "k_test": args.k_test, "ci_resamples": args.ci_resamples, "ci_seed": args.ci_seed}
    gen = (args.beam, args.max_length, args.min_length)
    prefixes = generation_prefixes()
    if task in prefixes:
        p = prefixes[task]
        over.update({f"{p}_beam": gen[0], f"{p}_max_length": gen[1], f"{p}_min_length": gen[2]})
    elif any(v is not None for v in gen):
        raise ConfigError(f"--beam/--max-length/--min-length apply to generation tasks, not {task}")
    for flag, value in (("--prompt", args.prompt), ("--frames", args.frames), ("--bins", args.bins)):
        if value is None:
            continue
        fields = option_fields(flag.removeprefix("--"))
        if task not in fields:
            raise ConfigError(f"{flag} applies to {', '.join(sorted(fields))}, not {task}")
        over[fields[task]] = value
    return {k: v for k, v in over.items() if v is not None}


def run(args: argparse.Namespace) -> int:
    import json

    from pathlib import Path

    from mplug.eval.run import evaluate
    from mplug.utils.io import ensure_writable_dir
    from mplug.utils.logging import get_logger

    cfg = _load_config(args.config)
    task, dataset, settings, not_acted_on = resolve(args, cfg)
    settings = settings.replace(**overrides(args, task))
    for key, why in not_acted_on.items():
        get_logger("mplug.eval").info("evaluate.%s.generation.%s is not acted on: %s", args.job, key, why)
    ensure_writable_dir(Path(args.out).parent)  # before the evaluation, not after it
    result = evaluate(task, args.checkpoint, args.data, args.split, args.out, settings,
                      tokenizer=args.tokenizer, dataset=dataset, config=cfg or None,
                      not_acted_on=not_acted_on)
    print(json.dumps({"task": result["task"], "split": result["split"],
                      "metrics": result["metrics"], "out": args.out}))
    return 0
