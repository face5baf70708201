"""`mplug data preprocess DATASET --src resources/ --out data/RUN/`: official raw layouts -> the
normalised JSONL format (mplug/data/README.md), with a stats.json of what was actually obtained.

Converters live in preprocess_image.py, preprocess_video.py and preprocess_pretrain.py; what they
share (raw-file lookup, JSON reading, media checks, atomic writes) is in preprocess_common.py.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from mplug.data.preprocess_common import PreprocessRun
from mplug.errors import DataError


# --------------------------------------------------------------------------------- registry + CLI

# Output dataset -> the `mplug data download` sources its converter reads (for the workflow's
# download -> preprocess dependencies). Optional extras are used when present: vg for VG-QA in
# vqa, refcoco_plus for the VG eval-overlap filter in pretraining.
PREPROCESS_SOURCES: dict[str, tuple[str, ...]] = {
    "coco_caption": ("coco_karpathy", "coco"), "coco_retrieval": ("coco_karpathy", "coco"),
    "flickr_retrieval": ("flickr30k",), "nocaps": ("nocaps",), "vqa": ("vqa_v2", "coco", "coco_test2015", "vg"),
    "refcoco": ("refcoco", "coco"), "refcoco+": ("refcoco_plus", "coco"), "refcocog": ("refcocog", "coco"),
    "nlvr2": ("nlvr2",), "snli_ve": ("albef_data", "flickr30k"),
    "msrvtt_retrieval": ("msrvtt",), "msrvtt_qa": ("alpro_data", "msrvtt"), "msvd_qa": ("alpro_data", "msvd"),
    "vatex_caption": ("vatex",),
    "pretrain_4m": ("coco_karpathy", "coco", "vg", "sbu", "cc3m"),
    "pretrain_14m": ("coco_karpathy", "coco", "vg", "sbu", "cc3m", "cc12m"),
}

def _converters() -> dict[str, Callable[[PreprocessRun], dict]]:
    from mplug.data import preprocess_image as im
    from mplug.data import preprocess_pretrain as pt
    from mplug.data import preprocess_video as vid

    return {**im.CONVERTERS, **vid.CONVERTERS, **pt.CONVERTERS}


def preprocess(dataset: str, src: str | os.PathLike, out: str | os.PathLike, *, check: str = "verify",
               progress: bool = True) -> dict:
    """Convert raw `src/<source>/...` into `out/<dataset>/` and return its stats.json dict."""
    converters = _converters()
    if dataset not in converters:
        raise DataError(f"unknown dataset '{dataset}' for preprocess; known: {', '.join(sorted(converters))}")
    if check not in ("verify", "exists", "none"):
        raise DataError(f"--check must be verify, exists or none, got '{check}'")
    return converters[dataset](PreprocessRun(Path(src), Path(out), check=check, progress=progress))


def register_preprocess(subparsers) -> None:
    """Add `mplug data preprocess` to the `data` verb's sub-parsers."""
    p = subparsers.add_parser("preprocess", help="convert downloaded raw data to the normalised JSONL format",
                              description="Convert resources/<source>/ (official layouts) into "
                                          "OUT/<dataset>/<split>.jsonl + stats.json (images/texts obtained).")
    p.add_argument("dataset", help="output dataset folder (coco_caption, vqa, refcoco+, pretrain_4m, ...)")
    p.add_argument("--src", default="resources", help="download root (default resources)")
    p.add_argument("--out", required=True, help="run data folder, e.g. data/paper")
    p.add_argument("--check", default="verify", choices=("verify", "exists", "none"),
                   help="image check: verify = open with PIL (default), exists = presence and size only")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    p.set_defaults(func=_cmd_preprocess)


def _cmd_preprocess(args) -> int:
    stats = preprocess(args.dataset, args.src, args.out, check=args.check, progress=args.progress)
    print(f"{args.dataset}: {stats['splits']} records; images {stats['images_obtained']}/"
          f"{stats['images_expected']}, texts {stats['texts_obtained']}/{stats['texts_expected']} "
          f"-> {Path(args.out) / args.dataset}")
    return 0
