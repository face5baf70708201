"""VQA v2 test-dev / test-std: answers are scored only by the EvalAI server.

We write the submission file EvalAI expects, mark the split's metrics "needs server
submission", and can import the server's result file afterwards.

Accepted server result shapes (EvalAI's evaluation script returns the first one; the page's
"result file" download and hand-made copies are usually one of the others):
    {"result": [{"test-dev": {"yes/no": 92.1, "number": 60.3, "other": 71.0, "overall": 80.0}}]}
    [{"test-dev": {...}}, {"test-standard": {...}}]
    {"test-dev": {...}}
    {"overall": 80.0, "yes/no": ..., "number": ..., "other": ...}   (needs an explicit split)
Split names "test-std" and "test-standard" are the same split. Values are percentages.
"""
from __future__ import annotations

import os
from typing import Any, Iterable, Mapping

from mplug.errors import DataError
from mplug.utils.io import atomic_write_json, read_json

NEEDS_SERVER = "needs server submission"
SERVER_SPLITS = ("test-dev", "test-std")
ANSWER_TYPES = ("yes/no", "number", "other")
_SPLIT_ALIASES = {"test-dev": "test-dev", "testdev": "test-dev", "test_dev": "test-dev",
                  "test-std": "test-std", "test-standard": "test-std", "test_std": "test-std",
                  "teststd": "test-std", "test": "test-std"}


def canonical_split(split: str) -> str | None:
    """'test-standard' -> 'test-std'; None for a split the server does not own (e.g. minival)."""
    return _SPLIT_ALIASES.get(split.lower())


def write_submission(path: str | os.PathLike, predictions: Iterable[tuple[Any, str]]) -> int:
    """Write EvalAI's `[{"question_id": int, "answer": str}]`; returns the number of answers."""
    rows = [{"question_id": int(qid), "answer": str(ans)} for qid, ans in predictions]
    atomic_write_json(path, rows, indent=None)
    return len(rows)


def pending_metrics(split: str) -> dict[str, Any]:
    """Metrics block for a server split before the result is imported: null values + reason."""
    return {"overall": None, "perAnswerType": {t: None for t in ANSWER_TYPES},
            "status": NEEDS_SERVER,
            "unavailable": {"overall": f"{NEEDS_SERVER}: upload the submission file to EvalAI "
                                       f"({split}), then run the import with its result file"}}


def import_server_result(path: str | os.PathLike, split: str) -> dict[str, Any]:
    """Read an EvalAI VQA result file and return our metrics block for `split`."""
    want = canonical_split(split)
    if want is None:
        raise DataError(f"{split!r} is not a VQA server split (use one of {SERVER_SPLITS})")
    try:
        obj = read_json(path)
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read server result file {path}: {err}") from None
    entry = _find_split(obj, want)
    if entry is None:
        raise DataError(f"{path}: no result for split {want!r}; accepted shapes are documented in "
                        "mplug/eval/vqa_server.py")
    try:
        overall = float(entry["overall"])
        per_type = {t: float(entry[t]) for t in ANSWER_TYPES if t in entry}
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{path}: the {want} result needs a numeric 'overall' (and optionally "
                        f"{', '.join(ANSWER_TYPES)}); got {entry!r}") from None
    return {"overall": overall, "perAnswerType": per_type, "status": "server result",
            "source": str(path)}


def _find_split(obj: Any, want: str) -> Mapping | None:
    if isinstance(obj, Mapping) and "result" in obj:
        obj = obj["result"]
    items = obj if isinstance(obj, list) else [obj]
    for item in items:
        if not isinstance(item, Mapping):
            continue
        if "overall" in item:  # flat: the caller named the split
            return item
        for key, val in item.items():
            if canonical_split(str(key)) == want and isinstance(val, Mapping):
                return val
    return None
