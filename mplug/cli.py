"""The `mplug` command. One verb per area; each verb lives in `mplug/commands/<verb>.py`.

Command modules are imported only when their verb is used, so `mplug --help` stays fast (no
torch import). A command module defines `register(parser)` to add its arguments/sub-verbs and
sets `func` defaults that take the parsed namespace and return an exit code.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# verb -> (module, one-line help). Order is the order `--help` lists them.
COMMANDS: dict[str, tuple[str, str]] = {
    "model": ("mplug.commands.model", "inspect named model configs (info, list)"),
    "convert": ("mplug.commands.convert", "convert an official mPLUG checkpoint to safetensors"),
    "data": ("mplug.commands.data", "synthesise, download and preprocess datasets"),
    "train": ("mplug.commands.train", "pretrain or fine-tune with DeepSpeed"),
    "evaluate": ("mplug.commands.evaluate", "run a checkpoint on a task split and write metrics"),
    "score": ("mplug.commands.score", "score a predictions file (vqa, caption, grounding)"),
    "bench": ("mplug.commands.bench", "benchmarks: fusion, train, generate, retrieval, video"),
    "report": ("mplug.commands.report", "render the HTML report of a run"),
    "miniature": ("mplug.commands.miniature", "write the paper run in miniature (only sizes shrunk)"),
    "plan": ("mplug.commands.plan", "GPU-hours per stage of a run, from its config (+ bench JSON)"),
}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mplug",
        description="Reproduce mPLUG (Li et al., EMNLP 2022) end to end.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + "\n".join(f"  {k:<10} {h}" for k, (_, h) in COMMANDS.items())
        + "\n\nRun `mplug COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("command", nargs="?", choices=list(COMMANDS), metavar="COMMAND",
                        help="one of: " + ", ".join(COMMANDS))
    return parser


def build_command_parser(verb: str) -> argparse.ArgumentParser:
    module_name, help_text = COMMANDS[verb]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"mplug {verb}", description=help_text)
    module.register(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        top = _top_parser()
        args = top.parse_args(argv)
        if args.version:
            from mplug import __version__

            print(__version__)
            return 0
        top.print_help()
        return 0 if not argv else 2
    from mplug.errors import MplugError

    parser = build_command_parser(argv[0])
    args = parser.parse_args(argv[1:])
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except MplugError as err:
        print(f"mplug {argv[0]}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"mplug {argv[0]}: interrupted", file=sys.stderr)
        return 130
    except OSError as err:
        from mplug.utils.io import WRITE_ERRNOS, output_error

        if err.errno not in WRITE_ERRNOS:
            raise  # a bug or an unexpected fault: keep the traceback
        # a full or read-only disk met by a write no helper wrapped (an image, a torch file)
        named = output_error(err.filename or "an output file", err)
        print(f"mplug {argv[0]}: error: {named}", file=sys.stderr)
        return named.exit_code


if __name__ == "__main__":
    sys.exit(main())
