"""`mplug plan --config RUN.yaml [--bench bench/train.json] [--assume-mfu 0.35] [--json PATH]
[--out PATH]`: GPU-hours per stage, SLURM jobs and disk."""
from __future__ import annotations

import argparse


def _mfu(text: str) -> float:
    from mplug.errors import ConfigError
    from mplug.plan import check_mfu

    try:
        return check_mfu(float(text))
    except (ValueError, ConfigError) as err:
        raise argparse.ArgumentTypeError(str(err) if isinstance(err, ConfigError)
                                         else f"{text!r}: not a number in (0, 1]") from None


def register(parser: argparse.ArgumentParser) -> None:
    from mplug.plan import ASSUMED_MFU

    parser.add_argument("--config", required=True, help="run config YAML (e.g. config/config.yaml)")
    parser.add_argument("--bench", help="`mplug bench train` JSON: its start-up, and the FLOP/s of "
                                         "the row run as each job runs, give durations")
    parser.add_argument("--assume-mfu", type=_mfu, default=ASSUMED_MFU, metavar="FRACTION",
                        help="without --bench: FLOP/s per GPU = the configured gpu_model's datasheet "
                             f"dense peak x this MFU, in (0, 1] (default {ASSUMED_MFU:g}, see mplug/plan.py)")
    parser.add_argument("--json", metavar="PATH", help="also write the plan as JSON here")
    parser.add_argument("--out", metavar="PATH", help="write the printed plan here too (the DAG's `plan` target)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from mplug import config as mcfg
    from mplug import plan

    cfg = mcfg.load_config(args.config)
    result = plan.make_plan(cfg, args.bench, assume_mfu=args.assume_mfu)
    text = plan.render(result)
    print(text)
    from mplug.utils.io import atomic_write_json, atomic_write_text

    if args.json:
        atomic_write_json(args.json, result)
    if args.out:
        atomic_write_text(args.out, text + "\n")
    return 0
