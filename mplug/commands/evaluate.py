"""`mplug evaluate TASK --checkpoint CKPT --data DIR --split SPLIT --out FILE.json`.

Settings come from (lowest to highest): the official defaults (mplug.eval.run.EvalSettings), the
run config (config/*.yaml: the model's `arch` under `models:` when there is one model, and the
`generation:` block of the `evaluate:` entry named by --eval-name, default: the entry named like
TASK, else the only entry with that task), then the command-line options.
Generation keys understood: beam_size, min_length, max_length, prompt, batch_size, k_test,
num_frames, rank_k. `length_penalty` is the models' fixed GNMT 0.6 and is not re-settable here.
"""
from __future__ import annotations

import argparse

TASKS = ("vqa", "caption", "nocaps", "retrieval_coco", "retrieval_flickr", "grounding", "nlvr2",
         "snli_ve", "video_retrieval", "video_qa_msrvtt", "video_qa_msvd", "video_caption")


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", choices=TASKS, help="evaluation task")
    parser.add_argument("--config", help="run config YAML (model name, eval settings)")
    parser.add_argument("--checkpoint", help="model weights (.safetensors or .pth); omit only to "
                        "evaluate a random-init model (debugging)")
    parser.add_argument("--data", required=True, help="data/<run>/ or the dataset folder itself")
    parser.add_argument("--dataset", help="dataset folder name under --data (e.g. refcoco+, "
                        "flickr_retrieval for zero-shot Flickr); default per task")
    parser.add_argument("--split", required=True, help="split name (<split>.jsonl)")
    parser.add_argument("--out", required=True, help="metrics JSON to write; predictions go "
                        "next to it as <stem>.predictions.json")
    parser.add_argument("--eval-name", help="the config's `evaluate:` entry to take settings from")
    parser.add_argument("--model", help="named model config (default: config `model`, else mplug_base)")
    parser.add_argument("--tokenizer", help="vocab.txt or tokenizer folder (default: vocab.txt "
                        "found in the dataset folder or its parents)")
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
    if not path:
        return {}
    try:
        from mplug.config import load_config  # the workflow's validated loader, when present
    except ImportError:
        load_config = None
    if load_config is not None:
        cfg = load_config(path)
        return dict(cfg) if not isinstance(cfg, dict) else cfg
    import yaml

    from mplug.errors import ConfigError

    try:
        with open(path, encoding="utf-8") as fh:
            cfg = yaml.safe_load(fh) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot read config {path}: {err}") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: expected a YAML mapping at the top level")
    return cfg


def settings_from(args: argparse.Namespace, cfg: dict):
    from mplug.eval.run import EvalSettings

    from mplug.errors import ConfigError

    s = EvalSettings.paper_caption() if args.paper_decoding else EvalSettings()
    models = cfg.get("models") or {}
    if isinstance(models, dict) and len(models) == 1:
        (name, m), = models.items()
        s = s.replace(model=(m or {}).get("arch", name) if isinstance(m, dict) else name)
    entry = _eval_entry(cfg, args)
    gen = dict(entry.get("generation") or {})
    over_cfg = {"batch_size": gen.get("batch_size"), "k_test": gen.get("k_test"),
                "rank_k": gen.get("rank_k")}
    prefix_cfg = {"vqa": "vqa", "video_caption": "video_caption", "caption": "caption",
                  "nocaps": "caption"}.get(args.task)
    if prefix_cfg:
        over_cfg.update({f"{prefix_cfg}_beam": gen.get("beam_size"),
                         f"{prefix_cfg}_min_length": gen.get("min_length"),
                         f"{prefix_cfg}_max_length": gen.get("max_length")})
    if "prompt" in gen and args.task in ("caption", "nocaps", "video_caption"):
        over_cfg[{"caption": "caption_prompt", "nocaps": "nocaps_prompt",
                  "video_caption": "video_caption_prompt"}[args.task]] = gen["prompt"]
    if "num_frames" in gen:
        over_cfg[{"video_retrieval": "frames_retrieval", "video_caption": "frames_caption"}.get(
            args.task, "frames_qa")] = gen["num_frames"]
    s = s.replace(**{k: v for k, v in over_cfg.items() if v is not None})
    prefix = {"vqa": "vqa", "video_caption": "video_caption", "caption": "caption",
              "nocaps": "caption"}.get(args.task)
    over = {"model": args.model, "batch_size": args.batch_size, "device": args.device,
            "limit": args.limit, "k_test": args.k_test, "ci_resamples": args.ci_resamples,
            "ci_seed": args.ci_seed}
    if prefix:
        over.update({f"{prefix}_beam": args.beam, f"{prefix}_max_length": args.max_length,
                     f"{prefix}_min_length": args.min_length})
    elif any(v is not None for v in (args.beam, args.max_length, args.min_length)):
        raise ConfigError(f"--beam/--max-length/--min-length apply to generation tasks, not {args.task}")
    if args.prompt is not None:
        key = {"nocaps": "nocaps_prompt", "video_caption": "video_caption_prompt",
               "caption": "caption_prompt"}.get(args.task)
        if key is None:
            raise ConfigError(f"--prompt applies to captioning tasks, not {args.task}")
        over[key] = args.prompt
    if args.bins is not None:
        if args.task != "grounding":
            raise ConfigError(f"--bins applies to grounding, not {args.task}")
        over["grounding_bins"] = args.bins
    if args.frames is not None:
        key = {"video_retrieval": "frames_retrieval", "video_caption": "frames_caption",
               "video_qa_msrvtt": "frames_qa", "video_qa_msvd": "frames_qa"}.get(args.task)
        if key is None:
            raise ConfigError(f"--frames applies to video tasks, not {args.task}")
        over[key] = args.frames
    return s.replace(**{k: v for k, v in over.items() if v is not None})


def _eval_entry(cfg: dict, args: argparse.Namespace) -> dict:
    from mplug.errors import ConfigError

    entries = cfg.get("evaluate") or {}
    if not isinstance(entries, dict):
        return {}
    if args.eval_name:
        if args.eval_name not in entries:
            raise ConfigError(f"{args.config}: no evaluate entry {args.eval_name!r}; have "
                              f"{', '.join(entries)}")
        return entries[args.eval_name] or {}
    if isinstance(entries.get(args.task), dict):
        return entries[args.task]
    same = [e for e in entries.values() if isinstance(e, dict) and e.get("task") == args.task]
    return same[0] if len(same) == 1 else {}


def run(args: argparse.Namespace) -> int:
    import json

    from pathlib import Path

    from mplug.eval.run import evaluate
    from mplug.utils.io import ensure_writable_dir

    cfg = _load_config(args.config)
    settings = settings_from(args, cfg)
    ensure_writable_dir(Path(args.out).parent)  # before the evaluation, not after it
    result = evaluate(args.task, args.checkpoint, args.data, args.split, args.out, settings,
                      tokenizer=args.tokenizer, dataset=args.dataset, config=cfg or None)
    print(json.dumps({"task": result["task"], "split": result["split"],
                      "metrics": result["metrics"], "out": args.out}))
    return 0
