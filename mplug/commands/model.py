"""`mplug model list` and `mplug model info NAME [--json] [--task T] [--set KEY=VALUE ...]`."""
from __future__ import annotations

import argparse
import json


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    p_list = sub.add_parser("list", help="list the named model configs")
    p_list.set_defaults(func=_list)
    p_info = sub.add_parser("info", help="parameter counts, fusion schedule and config of a model")
    p_info.add_argument("name", help="a named config (see `mplug model list`)")
    p_info.add_argument("--json", action="store_true", help="print one JSON object")
    p_info.add_argument("--task", default="vqa",
                        help="task whose forward pass defines params_effective (default vqa)")
    p_info.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, e.g. --set stride=6 --set schedule=paper")
    p_info.set_defaults(func=_info)


def _parse_value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def _list(args: argparse.Namespace) -> int:
    from mplug.models.registry import list_configs

    for name, desc in list_configs().items():
        print(f"{name:<14} {desc}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from mplug.errors import ConfigError
    from mplug.models.info import model_info
    from mplug.task_registry import model_tasks
    from mplug.models.registry import get_config

    if args.task not in model_tasks():
        raise ConfigError(f"--task {args.task!r}: use one of {', '.join(model_tasks())}")
    overrides = {}
    for item in args.set:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        overrides[key.strip()] = _parse_value(value.strip())
    info = model_info(get_config(args.name, **overrides), args.task)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"model            {info['name']} (task {info['task']})")
    print(f"params_total     {info['params_total']:,} ({info['params_total'] / 1e6:.1f}M)")
    print(f"params_effective {info['params_effective']:,} ({info['params_effective'] / 1e6:.1f}M)")
    print(f"official conv.   {info['params_official_convention'] / 1e6:.1f}M "
          f"({info['official_convention_note']})")
    print(f"fusion schedule  {', '.join(info['fusion_schedule'])}")
    print(f"tokens per image {info['tokens_per_image']}")
    print("config           " + json.dumps(info["config"]))
    return 0
