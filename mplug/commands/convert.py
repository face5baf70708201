"""`mplug convert`: official mPLUG checkpoint -> our safetensors (or CLIP + BERT -> initial model).

    mplug convert --model NAME [--task T] [--image-res N] IN OUT
    mplug convert --model NAME [--task T] [--image-res N] --clip CLIP.tar --bert BERT OUT

With `--config RUN.yaml`, `--model` is a model key of the run config (the workflow's
`convert_official` rule), resolved to its architecture there.
"""
from __future__ import annotations

import argparse

TASKS = ("pretrain", "vqa", "caption", "retrieval", "grounding")


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="named model config (mplug_base, mplug_large, "
                        "...), or with --config a model key of the run config")
    parser.add_argument("--config", default=None, help="run config YAML whose model key --model is")
    parser.add_argument("--task", default=None, choices=TASKS,
                        help="task model the weights are for (decides which heads, momentum copies "
                             "and queues are kept); default vqa, or pretrain with --clip")
    parser.add_argument("--image-res", type=int, default=None,
                        help="resize the position embedding to this resolution (default: the config's)")
    parser.add_argument("--clip", default=None,
                        help="OpenAI CLIP state dict (ViT-B-16.tar / ViT-L-14.tar): build the initial "
                             "model from CLIP + BERT instead of converting IN")
    parser.add_argument("--bert", default=None, help="bert-base-uncased folder or weights file (with --clip)")
    parser.add_argument("--verbose", action="store_true", help="list every filled key")
    parser.add_argument("paths", nargs="+", metavar="IN OUT",
                        help="official checkpoint and output .safetensors (only OUT with --clip)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mplug.errors import ConfigError
    from mplug.models.convert import convert_checkpoint, init_checkpoint

    if args.config:
        from mplug.config import load_config, model_settings

        args.model = model_settings(load_config(args.config), args.model)["arch"]
    if args.clip or args.bert:
        if not (args.clip and args.bert) or len(args.paths) != 1:
            raise ConfigError("initial-model mode needs --clip CLIP --bert BERT and exactly one path, OUT")
        report = init_checkpoint(args.clip, args.bert, args.paths[0], args.model,
                                 task=args.task or "pretrain",
                                 image_res=args.image_res)
        out = args.paths[0]
    else:
        if len(args.paths) != 2:
            raise ConfigError("expected IN OUT (an official checkpoint and the output .safetensors)")
        report = convert_checkpoint(args.paths[0], args.paths[1], args.model, task=args.task or "vqa",
                                    image_res=args.image_res)
        out = args.paths[1]
    print(report.format(verbose=args.verbose))
    print(f"wrote {out}")
    return 0
