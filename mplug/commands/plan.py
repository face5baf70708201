"""`mplug plan --config RUN.yaml [--bench bench/train.json] [--json PATH]`: GPU-hours per stage."""
from __future__ import annotations

import argparse


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="run config YAML (e.g. config/config.yaml)")
    parser.add_argument("--bench", help="`mplug bench train` JSON: its start-up and best FLOP/s give durations")
    parser.add_argument("--json", metavar="PATH", help="also write the plan as JSON here")
    parser.set_defaults(func=run)


def run(args) -> int:
    from mplug import config as mcfg
    from mplug import plan

    cfg = mcfg.load_config(args.config)
    result = plan.make_plan(cfg, args.bench)
    print(plan.render(result))
    if args.json:
        from mplug.utils.io import atomic_write_json

        atomic_write_json(args.json, result)
    return 0
