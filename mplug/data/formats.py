"""The normalised data format: one JSONL record schema per task, validated on read and on write.

Real preprocessing (`mplug data preprocess`) and the synthetic world (`mplug data synth`) both
write this format; every loader in `mplug.data.datasets` reads only this format. The layout and
every field are documented in `mplug/data/README.md` (keep the two in step).

A dataset folder `data/<run>/<dataset>/` holds `<split>.jsonl` files, the images they point at
(paths relative to the dataset folder, `..` allowed to share images with a sibling dataset),
optional `answer_list.json` (VQA, video QA), optional `shards.txt` (pretraining webdataset
shards) and a `stats.json` (images/texts obtained and failed: the reproduced column of Table 12).

This module imports only the standard library (and mplug's errors, io helpers and task registry)
so that preprocessing code can use it cheaply. A task's schema and default folder are its
`mplug.task_registry.TaskSpec`'s `schema` and `dataset`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from mplug.errors import DataError
from mplug.task_registry import TASKS, TaskSpec, find_task
from mplug.utils.io import atomic_write_json, atomic_write_text, iter_utf8_lines

FORMAT_VERSION = 1

# ---------------------------------------------------------------------------------------------
# Field kinds. Each checker returns an error string (what is wrong) or None.


def _is_str(v: Any) -> bool:
    return isinstance(v, str) and v != ""


def _check_kind(kind: str, v: Any) -> str | None:
    if kind == "str":
        return None if _is_str(v) else "expected a non-empty string"
    if kind == "id":  # dataset ids are ints in COCO/VQA and strings elsewhere: accept both
        ok = (isinstance(v, int) and not isinstance(v, bool)) or _is_str(v)
        return None if ok else "expected an int or a non-empty string id"
    if kind == "int":
        ok = isinstance(v, int) and not isinstance(v, bool) and v >= 0
        return None if ok else "expected a non-negative integer"
    if kind == "posint":
        ok = isinstance(v, int) and not isinstance(v, bool) and v > 0
        return None if ok else "expected a positive integer"
    if kind == "bool":
        return None if isinstance(v, bool) else "expected true or false (JSON boolean)"
    if kind == "list[str]":
        ok = isinstance(v, list) and all(_is_str(x) for x in v)
        return None if ok else "expected a list of non-empty strings"
    if kind == "list[id]":
        ok = isinstance(v, list) and all(_check_kind("id", x) is None for x in v)
        return None if ok else "expected a list of ids (int or string)"
    if kind == "box":
        ok = (isinstance(v, list) and len(v) == 4
              and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
              and v[2] > 0 and v[3] > 0 and v[0] >= 0 and v[1] >= 0)
        return None if ok else "expected [x, y, w, h] in pixels with w > 0, h > 0, x, y >= 0"
    raise AssertionError(f"unknown field kind {kind}")


@dataclass(frozen=True)
class Field:
    """One field of a record: its name, kind, whether it must be present, and allowed values."""

    name: str
    kind: str
    required: bool = True
    choices: tuple | None = None
    min_len: int | None = None  # for lists
    doc: str = ""


@dataclass(frozen=True)
class Schema:
    """A task's record schema. `check` adds cross-field rules (returns (field, problem) or None)."""

    task: str
    fields: tuple[Field, ...]
    doc: str
    check: Callable[[dict], tuple[str, str] | None] | None = None

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


def _same_len(a: str, b: str) -> Callable[[dict], tuple[str, str] | None]:
    def check(rec: dict) -> tuple[str, str] | None:
        if a in rec and b in rec and len(rec[a]) != len(rec[b]):
            return b, f"has {len(rec[b])} entries but '{a}' has {len(rec[a])}: one id per text"
        return None
    return check


def _vqa_check(rec: dict) -> tuple[str, str] | None:
    # VQA v2 has 10 answers per question; VG-QA has one; test questions have none.
    n = len(rec.get("answers", []))
    if rec.get("dataset", "vqa") == "vqa" and n not in (0, 10):
        return "answers", f"a VQA question needs 10 answers (or 0 for a test split), got {n}"
    if rec.get("dataset") == "vg" and n < 1:
        return "answers", "a VG-QA question needs at least one answer"
    return None


def _grounding_check(rec: dict) -> tuple[str, str] | None:
    x, y, w, h = rec["box"]
    if x + w > rec["width"] + 1e-3 or y + h > rec["height"] + 1e-3:
        return "box", f"box {rec['box']} extends past the image ({rec['width']}x{rec['height']})"
    return None


def _video_check(rec: dict) -> tuple[str, str] | None:
    if "video" not in rec and "frames" not in rec:
        return "video", "missing: give 'video' (a frame folder or video file) or 'frames'"
    return None


def _chain(*checks: Callable[[dict], tuple[str, str] | None]) -> Callable:
    def check(rec: dict) -> tuple[str, str] | None:
        for c in checks:
            out = c(rec)
            if out:
                return out
        return None
    return check


F = Field
_IMAGE = F("image", "str", doc="image path relative to the dataset folder")
_VIDEO = (F("video_id", "id"),
          F("video", "str", required=False, doc="frame folder (sorted image files) or video file"),
          F("frames", "list[str]", required=False, min_len=1, doc="explicit frame image paths"))

SCHEMAS: dict[str, Schema] = {s.task: s for s in [
    Schema("pretrain", (
        _IMAGE, F("image_id", "id"), F("caption", "str"),
        F("source", "str", required=False, doc="coco, vg, sbu, cc3m, cc12m or synth"),
    ), "one image-text pair per line (an image with k captions has k lines)"),
    Schema("caption", (
        _IMAGE, F("image_id", "id"), F("captions", "list[str]", min_len=1, doc="all references"),
        F("split", "str"), F("width", "posint", required=False), F("height", "posint", required=False),
    ), "one image per line with all its reference captions (COCO Karpathy style)"),
    Schema("nocaps", (
        _IMAGE, F("image_id", "id"), F("captions", "list[str]", min_len=0),
        F("split", "str"), F("domain", "str", choices=("in", "near", "out")),
    ), "NoCaps: one image per line, references (empty for test) and its domain"),
    Schema("vqa", (
        F("question_id", "id"), _IMAGE, F("image_id", "id", required=False), F("question", "str"),
        F("answers", "list[str]", min_len=0, doc="10 annotator answers (VQA), >=1 (VG-QA), 0 (test)"),
        F("answer_type", "str", required=False, choices=("yes/no", "number", "other")),
        F("multiple_choice_answer", "str", required=False),
        F("dataset", "str", required=False, choices=("vqa", "vg"), doc="vg answers weigh 0.5"),
    ), "one question per line", _vqa_check),
    Schema("retrieval", (
        _IMAGE, F("image_id", "id"), F("captions", "list[str]", min_len=1),
        F("text_ids", "list[id]", min_len=1, doc="one global text id per caption"),
    ), "one image per line with its captions (5 for COCO/Flickr)", _same_len("captions", "text_ids")),
    Schema("grounding", (
        F("ref_id", "id"), _IMAGE, F("image_id", "id", required=False), F("expression", "str"),
        F("box", "box", doc="[x, y, w, h] in pixels of the original image"),
        F("width", "posint"), F("height", "posint"),
        F("dataset", "str", choices=("refcoco", "refcoco+", "refcocog")), F("split", "str"),
    ), "one referring expression per line", _grounding_check),
    Schema("nlvr2", (
        F("pair_id", "id"), F("image_left", "str"), F("image_right", "str"),
        F("statement", "str"), F("label", "bool"),
    ), "one (image pair, statement) per line; label true/false"),
    Schema("snli_ve", (
        F("pair_id", "id"), _IMAGE, F("image_id", "id", required=False), F("hypothesis", "str"),
        F("label", "str", choices=("entailment", "neutral", "contradiction")),
    ), "one (premise image, hypothesis) per line"),
    Schema("video_retrieval", (
        *_VIDEO, F("captions", "list[str]", min_len=1), F("text_ids", "list[id]", min_len=1),
    ), "one video per line with its captions", _chain(_video_check, _same_len("captions", "text_ids"))),
    Schema("video_qa", (
        F("question_id", "id"), *_VIDEO, F("question", "str"), F("answer", "str"),
        F("answer_type", "str", required=False),
    ), "one question per line; answers ranked over answer_list.json", _video_check),
    Schema("video_caption", (
        *_VIDEO, F("captions", "list[str]", min_len=1),
    ), "one video per line with all its reference captions", _video_check),
]}

def _data_task_names() -> list[str]:
    return sorted({*TASKS, *(a for spec in TASKS.values() for a in spec.aliases)})


def data_task(task: str) -> TaskSpec:
    """The registry's spec of a task or of a record-schema alias (`retrieval`, `video_qa`), else a
    DataError listing the names the data layer accepts."""
    spec = find_task(task)
    if spec is None:
        raise DataError(f"unknown task '{task}'; known: {', '.join(_data_task_names())}")
    return spec


def get_schema(task: str) -> Schema:
    """The record schema of a task (its TaskSpec's `schema`) or of a schema name."""
    spec = find_task(task)
    name = spec.schema if spec else task
    if name not in SCHEMAS:
        raise DataError(f"unknown task or record schema '{task}'; known: "
                        f"{', '.join(sorted({*SCHEMAS, *_data_task_names()}))}")
    return SCHEMAS[name]


def validate_record(rec: Any, schema: Schema | str) -> tuple[str, str] | None:
    """Return (field, problem) for the first problem in `rec`, or None if it is valid."""
    schema = get_schema(schema) if isinstance(schema, str) else schema
    if not isinstance(rec, dict):
        return "<record>", f"expected a JSON object, got {type(rec).__name__}"
    for f in schema.fields:
        if f.name not in rec:
            if f.required:
                return f.name, "missing"
            continue
        v = rec[f.name]
        err = _check_kind(f.kind, v)
        if err:
            return f.name, f"{err}, got {json.dumps(v)[:80]}"
        if f.choices is not None and v not in f.choices:
            return f.name, f"must be one of {list(f.choices)}, got {json.dumps(v)[:80]}"
        if f.min_len is not None and len(v) < f.min_len:
            return f.name, f"needs at least {f.min_len} entries, got {len(v)}"
    if schema.check:
        return schema.check(rec)
    return None


def iter_records(path: str | os.PathLike, task: str) -> Iterator[dict]:
    """Yield validated records of a JSONL file; a bad line raises DataError naming file:line."""
    path = Path(path)
    schema = get_schema(task)
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found")
    for lineno, line in iter_utf8_lines(path, DataError):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{lineno}: invalid JSON ({err.msg} at column {err.colno}); "
                            f"fix or regenerate the file") from None
        bad = validate_record(rec, schema)
        if bad:
            raise DataError(f"{path}:{lineno}: field '{bad[0]}' {bad[1]} "
                            f"(schema '{schema.task}', see mplug/data/README.md)")
        yield rec


def read_records(path: str | os.PathLike, task: str) -> list[dict]:
    return list(iter_records(path, task))


def dumps_record(rec: dict) -> str:
    """One JSONL line. Key order is kept and no whitespace is added, so output is deterministic."""
    return json.dumps(rec, ensure_ascii=False, separators=(",", ":"))


def write_records(path: str | os.PathLike, task: str, records: Iterable[dict]) -> int:
    """Validate and write records atomically as JSONL; return the count."""
    schema = get_schema(task)
    lines = []
    for i, rec in enumerate(records, 1):
        bad = validate_record(rec, schema)
        if bad:
            raise DataError(f"{path}: record {i}: field '{bad[0]}' {bad[1]} (schema '{schema.task}')")
        lines.append(dumps_record(rec))
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return len(lines)


# ---------------------------------------------------------------------------------------------
# Answer lists and stats.json


def write_answer_list(path: str | os.PathLike, answers: list[str]) -> None:
    atomic_write_json(path, list(answers), indent=0)


def read_answer_list(path: str | os.PathLike) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: answer list not found (written by preprocess or synth)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from None
    if not isinstance(data, list) or not all(_is_str(a) for a in data):
        raise DataError(f"{path}: expected a JSON list of non-empty answer strings")
    return data


STATS_KEYS = {
    "dataset": str,           # folder name, e.g. "coco_caption"
    "source": str,            # "synthetic" or the upstream source (e.g. "coco2014+karpathy")
    "images_expected": int,   # images listed upstream
    "images_obtained": int,   # images actually on disk and decodable
    "images_failed": int,     # expected - obtained (missing, 404, corrupt)
    "texts_expected": int,
    "texts_obtained": int,    # captions/questions/expressions kept
    "texts_failed": int,
    "splits": dict,           # split -> number of records in <split>.jsonl
}


def record_texts(rec: dict) -> int:
    """Texts in one record: a caption/retrieval record holds all of its image's captions, any
    other record one text. Training iterates caption and retrieval data per caption
    (mplug.data.datasets), so a split's training examples are the sum of this."""
    return len(rec["captions"]) if "captions" in rec else 1


def make_stats(dataset: str, source: str, *, images_expected: int, images_obtained: int,
               texts_expected: int, texts_obtained: int, splits: dict[str, int],
               split_texts: dict[str, int] | None = None, **extra: Any) -> dict:
    """Build a stats.json dict (the Table 12 'reproduced' counts); extra keys are kept.
    `splits`: records per split; `split_texts`: texts per split (record_texts), the examples a
    training epoch iterates, which `mplug plan` reads."""
    stats = {
        "format_version": FORMAT_VERSION, "dataset": dataset, "source": source,
        "images_expected": images_expected, "images_obtained": images_obtained,
        "images_failed": images_expected - images_obtained,
        "texts_expected": texts_expected, "texts_obtained": texts_obtained,
        "texts_failed": texts_expected - texts_obtained,
        "splits": dict(splits),
    }
    if split_texts is not None:
        stats["split_texts"] = dict(split_texts)
    stats.update(extra)
    validate_stats(stats, "<new stats>")
    return stats


def validate_stats(stats: Any, where: str) -> None:
    if not isinstance(stats, dict):
        raise DataError(f"{where}: stats must be a JSON object")
    for key, typ in STATS_KEYS.items():
        if key not in stats:
            raise DataError(f"{where}: key '{key}' missing")
        if not isinstance(stats[key], typ) or isinstance(stats[key], bool):
            raise DataError(f"{where}: key '{key}' must be {typ.__name__}")


def write_stats(dataset_dir: str | os.PathLike, stats: dict) -> None:
    validate_stats(stats, str(Path(dataset_dir) / "stats.json"))
    atomic_write_json(Path(dataset_dir) / "stats.json", stats)


def read_stats(dataset_dir: str | os.PathLike) -> dict:
    path = Path(dataset_dir) / "stats.json"
    if not path.is_file():
        raise DataError(f"{path}: not found (written by `mplug data preprocess` or `mplug data synth`)")
    stats = json.loads(path.read_text(encoding="utf-8"))
    validate_stats(stats, str(path))
    return stats


def split_path(dataset_dir: str | os.PathLike, split: str) -> Path:
    """Where a split's records live: `<dataset_dir>/<split>.jsonl`."""
    return Path(dataset_dir) / f"{split}.jsonl"


def resolve_path(dataset_dir: str | os.PathLike, rel: str) -> Path:
    """An image/frame path from a record, relative to its dataset folder (absolute allowed)."""
    p = Path(rel)
    return p if p.is_absolute() else Path(dataset_dir) / p


# ---------------------------------------------------------------------------------------------
# Canonical dataset folders under data/<run>/: folder -> (record schema, splits). Synthetic and
# real data use the same names so that every rule and loader is shared.

@dataclass(frozen=True)
class DatasetSpec:
    name: str
    schema: str
    splits: tuple[str, ...]
    extra: tuple[str, ...] = ()   # other files the folder must hold (besides stats.json)
    doc: str = ""


DATASETS: dict[str, DatasetSpec] = {d.name: d for d in [
    DatasetSpec("pretrain_4m", "pretrain", ("train",),
                doc="COCO+VG+SBU+CC3M pairs; also shards.txt (webdataset tars) if present"),
    DatasetSpec("pretrain_14m", "pretrain", ("train",), doc="4M + CC12M"),
    DatasetSpec("coco_caption", "caption", ("train", "val", "test"), doc="COCO Karpathy splits"),
    DatasetSpec("nocaps", "nocaps", ("val",), doc="NoCaps validation (in/near/out domain)"),
    DatasetSpec("vqa", "vqa", ("train", "val", "test", "vg_qa"), ("answer_list.json",),
                doc="VQA v2 (train=train+nominival, val=minival, test=test2015, test-dev its subset) + VG-QA"),
    DatasetSpec("coco_retrieval", "retrieval", ("train", "val", "test"), doc="COCO 5K Karpathy"),
    DatasetSpec("flickr_retrieval", "retrieval", ("train", "val", "test"), doc="Flickr30K 1K"),
    DatasetSpec("refcoco", "grounding", ("train", "val", "testA", "testB"), doc="UNC splits"),
    DatasetSpec("refcoco+", "grounding", ("train", "val", "testA", "testB"), doc="UNC splits"),
    DatasetSpec("refcocog", "grounding", ("train", "val_u", "test_u"),
                doc="UMD splits (the paper's val-u/test-u = umd val/test)"),
    DatasetSpec("nlvr2", "nlvr2", ("train", "dev", "test_p"), doc="test_p = test1"),
    DatasetSpec("snli_ve", "snli_ve", ("train", "dev", "test")),
    DatasetSpec("msrvtt_retrieval", "video_retrieval", ("test",), doc="1k-A test"),
    DatasetSpec("msrvtt_qa", "video_qa", ("test",), ("answer_list.json",)),
    DatasetSpec("msvd_qa", "video_qa", ("test",), ("answer_list.json",)),
    DatasetSpec("vatex_caption", "video_caption", ("test",), doc="public English test"),
]}
