"""The paper's published numbers (`config/published/tableNN.csv`) as validated DataFrames.

CSV format (long, one printed cell per row; `-` cells of the paper are absent):
`table,group,model,pretrain_data,setting,metric,value,note`. `value` is the cell as printed;
`load_published` adds `value_num` (float) where the table is numeric. See config/published/README.md.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path

import pandas as pd

from mplug.errors import ConfigError

COLUMNS = ("table", "group", "model", "pretrain_data", "setting", "metric", "value", "note")
REQUIRED = ("table", "model", "setting", "metric", "value")
TABLES = tuple(range(1, 13))
# Cells that are not plain numbers: Table 11's LR column ("2e-5/5e-6", "1e-5&8e-7", parsed with
# `parse_lr`) and Table 12's counts ("113K", parsed with the K/M/B suffix).
LR_METRIC = "LR (ViT-L/BERTbase)"
TEXT_CELLS = {(11, LR_METRIC)}
SUFFIX_TABLES = {12}
_SUFFIX = {"K": 1e3, "M": 1e6, "B": 1e9}

CAPTIONS = {
    1: 'Evaluation Results on COCO Caption "Karpathy" test split and NoCaps validation set. '
       "B@4: BLEU@4, M: METEOR, C: CIDEr, S: SPICE.",
    2: "Evaluation Results on VQA test set.",
    3: "Image-text retrieval results on Flickr30K and COCO datasets.",
    4: "Visual grounding results (Acc@0.5) on ReferCOCO, ReferCOCO+, and ReferCOCOg.",
    5: "Evaluation Results on NLVR2 and SNLI-VE.",
    6: "Training Throughput",
    7: "Image captioning results on NoCaps validation split (zero-shot and finetuned), and "
       "{In, Near, Out} refer to in-domain, near-domain and out-of-domain respectively. "
       "† denotes the models finetuned on COCO Caption dataset.",
    8: "Zero-shot image-text retrieval results on Flickr30K. † denotes the models finetuned on COCO.",
    9: "Zero-shot video-language results on text-to-video retrieval on the 1k test split of the "
       "MSRVTT dataset. † denotes the models finetuned on COCO.",
    10: "Zero-shot video-language results on Question-Answer and Caption tasks.",
    11: "Finetuning hyperparameters for downstream tasks. † denotes two stages fine-tuning.",
    12: "Statistics of the pre-training datasets.",
}


def published_dir() -> Path:
    """`config/published/` of the repository this package lives in."""
    return Path(__file__).resolve().parents[2] / "config" / "published"


def table_path(table: int, root: str | Path | None = None) -> Path:
    return Path(root or published_dir()) / f"table{table:02d}.csv"


def parse_number(text: str, table: int) -> float | None:
    """The numeric value of a printed cell, or None if it is not a number (Table 11 LR pairs)."""
    s = text.strip()
    if table in SUFFIX_TABLES and s and s[-1] in _SUFFIX:
        try:
            return float(s[:-1]) * _SUFFIX[s[-1]]
        except ValueError:
            return None
    try:
        return float(s)
    except ValueError:
        return None


def parse_lr(text: str) -> list[float]:
    """Table 11 LR cell -> numbers: '2e-5/5e-6' -> [2e-5, 5e-6]; '1e-5&8e-7' -> [1e-5, 8e-7]."""
    parts = [p for p in re.split(r"[/&]", str(text)) if p.strip()]
    try:
        return [float(p) for p in parts]
    except ValueError:
        raise ConfigError(f"Table 11 LR cell {text!r} is not 'a/b', 'a&b' or a number") from None


def load_published(table: int, root: str | Path | None = None) -> pd.DataFrame:
    """Read and validate `tableNN.csv`. Errors name the file and line (1-based, header = line 1)."""
    if table not in TABLES:
        raise ConfigError(f"table {table}: the paper has Tables 1-12")
    path = table_path(table, root)
    if not path.is_file():
        raise ConfigError(f"{path}: published table missing (it is part of the repository)")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        unknown = [c for c in header if c not in COLUMNS]
        if unknown:
            raise ConfigError(f"{path}:1: unknown column(s) {unknown}; allowed: {list(COLUMNS)}")
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise ConfigError(f"{path}:1: missing column(s) {missing}")
        rows = []
        for lineno, row in enumerate(reader, start=2):
            rows.append(_validate_row(row, table, path, lineno))
    if not rows:
        raise ConfigError(f"{path}: no rows")
    df = pd.DataFrame(rows, columns=list(COLUMNS) + ["value_num", "line"])
    dup = df.duplicated(["group", "model", "pretrain_data", "setting", "metric"], keep=False)
    if dup.any():
        first = df[dup].iloc[0]
        raise ConfigError(f"{path}:{first['line']}: duplicate cell ({first['model']}, "
                          f"{first['setting']}, {first['metric']})")
    return df


def _validate_row(row: dict, table: int, path: Path, lineno: int) -> dict:
    if None in row:  # more fields than columns
        raise ConfigError(f"{path}:{lineno}: more fields than the {len(row) - 1} columns")
    clean = {c: (row.get(c) or "").strip() for c in COLUMNS}
    for c in REQUIRED:
        if not clean[c]:
            raise ConfigError(f"{path}:{lineno}: empty '{c}'")
    try:
        t = int(clean["table"])
    except ValueError:
        raise ConfigError(f"{path}:{lineno}: table {clean['table']!r} is not an integer") from None
    if t != table:
        raise ConfigError(f"{path}:{lineno}: row says table {t} but the file is table {table}")
    clean["table"] = t
    num = parse_number(clean["value"], table)
    if (table, clean["metric"]) in TEXT_CELLS:
        try:
            parse_lr(clean["value"])
        except ConfigError as err:
            raise ConfigError(f"{path}:{lineno}: {err}") from None
    elif num is None:
        raise ConfigError(f"{path}:{lineno}: value {clean['value']!r} is not a number "
                          f"(Table {table} is numeric)")
    clean["value_num"] = num
    clean["line"] = lineno
    return clean
