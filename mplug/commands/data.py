"""`mplug data {synth,download,preprocess}`.

`synth` lives here. `download` and `preprocess` are added by mplug/data/download.py and
mplug/data/preprocess.py when present: each defines
`register_download(subparsers)` / `register_preprocess(subparsers)` that calls
`subparsers.add_parser(...)` and sets `func=` via set_defaults (same convention as `register`).
Those modules must import heavy dependencies inside functions only.
"""
from __future__ import annotations

import argparse
import importlib

# (module, hook) pairs of sub-verbs owned by other modules; a missing module is skipped.
_HOOKS = (("mplug.data.download", "register_download"),
          ("mplug.data.preprocess", "register_preprocess"))


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    p = sub.add_parser("synth", help="write the synthetic world (every task) + manifest.json",
                       description="Write every task of the paper as a small deterministic "
                                   "synthetic world: DIR/<dataset>/*.jsonl, images, stats.json, "
                                   "DIR/vocab.txt and DIR/manifest.json.")
    p.add_argument("--out", required=True, help="output folder (replaced if it is a synthetic world)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    p.add_argument("--scale", choices=("tiny", "small"), default="tiny",
                   help="tiny: the CI smoke world (seconds); small: about 4x larger")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_synth)
    p = sub.add_parser("synth-weights", help="write a weight source's files (CLIP, BERT, mPLUG) in "
                       "their official formats at the run's model sizes (synthetic runs)",
                       description="For runs on the synthetic world: write resources/SOURCE/ as "
                                   "`mplug data download SOURCE` would, with random weights shaped "
                                   "for the config's architectures (mplug/data/synth_weights.py).")
    p.add_argument("source", help="clip_vit_b16, clip_vit_l14, bert_base_uncased, mplug_base, "
                                  "mplug_large or mplug_large_v2")
    p.add_argument("--config", required=True, help="run config (its architectures and init paths)")
    p.add_argument("--dest", default="resources", help="resources folder (default: resources)")
    p.add_argument("--vocab", required=True, help="the synthetic world's vocab.txt (BERT's vocabulary)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the weights")
    p.set_defaults(func=_synth_weights)
    for module_name, hook in _HOOKS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name:  # the module exists but something it imports is missing
                raise
            continue
        getattr(module, hook)(sub)


def _synth(args: argparse.Namespace) -> int:
    from mplug.data import synth

    m = synth.generate(args.out, seed=args.seed, scale=args.scale, progress=not args.quiet)
    n_files = sum(len(d["splits"]) for d in m["datasets"].values())
    print(f"wrote {len(m['datasets'])} datasets ({n_files} split files) to {args.out} "
          f"in {m['_elapsed_s']:.1f} s (seed {args.seed}, scale {args.scale})")
    return 0


def _synth_weights(args: argparse.Namespace) -> int:
    from mplug.config import load_config
    from mplug.data.synth_weights import write_source

    m = write_source(load_config(args.config), args.source, args.dest, args.vocab, seed=args.seed)
    print(f"wrote {args.dest}/{args.source}/: " + ", ".join(f["name"] for f in m["files"])
          + f" (synthetic weights for {', '.join(m['archs'])})")
    return 0
