"""`mplug report --config C --results results/RUN --out reports/RUN [--run-name RUN] [--smoke]`."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, help="the run's YAML config")
    parser.add_argument("--results", type=Path, required=True, help="results/<run> folder")
    parser.add_argument("--out", type=Path, required=True, help="reports/<run> folder to write")
    parser.add_argument("--run-name", default=None, help="run name shown in the report")
    parser.add_argument("--data", type=Path, default=None, help="data/<run> folder (default: beside results)")
    parser.add_argument("--smoke", action="store_true", help="mark the report as a smoke run (banner)")
    parser.add_argument("--tolerance", type=float, default=1.0,
                        help="absolute points within which a reproduced cell 'matches' (default 1.0)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mplug.report.render import ReportOptions, render_report

    report = render_report(ReportOptions(results=args.results, out=args.out, config_path=args.config,
                                         run_name=args.run_name, smoke=args.smoke,
                                         tolerance=args.tolerance, data=args.data))
    print(report)
    return 0
