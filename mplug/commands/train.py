"""`mplug train pretrain|finetune`: DeepSpeed training on GPUs or the CPU (docs/training.md).

Exit codes: 0 done; 2 bad input (config, data, checkpoint); 75 preempted (SIGTERM/SIGUSR1): a
checkpoint was written, rerun the same command (it passes --resume latest) to continue.
"""
from __future__ import annotations

import argparse

from mplug.task_registry import task_names


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="run config YAML (config/config.yaml, config/smoke.yaml)")
    p.add_argument("--model", required=True,
                   help="model key of the config's `models` (or its registry arch, e.g. mplug_smoke)")
    p.add_argument("--data", required=True, help="data root holding the dataset folders (data/RUN)")
    p.add_argument("--out", required=True, help="output folder: model.safetensors, summary.json, "
                   "train_log.jsonl, checkpoints/, tensorboard/")
    p.add_argument("--resume", default=None, metavar="latest|DIR",
                   help="continue from OUT/checkpoints/latest (no checkpoint yet: start fresh) or "
                        "from a checkpoint directory")
    p.add_argument("--tokenizer", default=None, help="vocab.txt or tokenizer folder (default: the "
                   "config's `tokenizer:`, else vocab.txt in --data)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="stop after this many optimizer steps (overrides train.max_steps)")
    p.add_argument("--seed", type=_seed, default=None,
                   help="random seed (overrides the config's `seed`; evaluate.<job>.seeds runs one per seed)")


def _seed(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: a seed is an integer >= 0")
    return int(text)


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="kind", metavar="{pretrain,finetune}")
    pre = sub.add_parser("pretrain", help="ITC+ITM+MLM+PrefixLM pretraining (paper 3.3, 5.1)")
    pre.add_argument("--stage", required=True, help="pretrain stage of the config "
                     "(pretrain_14m, pretrain_4m)")
    pre.add_argument("--init", default=None, help="starting weights (safetensors/pth): a previous "
                     "stage, a converted official checkpoint, or a CLIP+BERT init file")
    pre.add_argument("--clip", default=None, help="OpenAI CLIP checkpoint for a from-scratch init (with --bert)")
    pre.add_argument("--bert", default=None, help="bert-base-uncased folder or file (with --clip)")
    _common(pre)
    pre.set_defaults(func=_run, task="pretrain")
    fin = sub.add_parser("finetune", help="fine-tune on a downstream task (Table 11)")
    fin.add_argument("task", choices=task_names("finetune"))
    fin.add_argument("--stage", default=None, help="fine-tuning job of the config (e.g. caption_ce, "
                     "caption_scst, grounding_mixed); default: the job named like TASK")
    fin.add_argument("--init", default=None, help="starting weights: a pretrain stage's or another "
                     "job's model.safetensors, or a converted official checkpoint")
    _common(fin)
    for p in (pre, fin):
        p.add_argument("--allow-partial-init", action="store_true",
                       help="train even when --init covers only part of the backbone (visual, text "
                            "and fusion encoders); by default that is an error")
    fin.set_defaults(func=_run, clip=None, bert=None)


def _run(args: argparse.Namespace) -> int:
    from mplug.train.run import train

    summary = train(args.kind, args.task, args.config, args.model, args.stage, args.data, args.out,
                    init=args.init, resume=args.resume, clip=args.clip, bert=args.bert,
                    max_steps=args.max_steps, tokenizer=args.tokenizer,
                    allow_partial_init=args.allow_partial_init, seed=args.seed)
    print(f"trained {summary['steps']} steps in {summary['wall_seconds']} s -> {args.out}/model.safetensors")
    return 0
