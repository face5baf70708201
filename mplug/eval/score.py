"""Score prediction files in the field's standard formats (the library behind `mplug score`).

Formats accepted (a malformed file raises DataError naming the file and the first bad record):
- VQA v2 official: questions `{"questions": [{"question_id", "image_id", "question"}]}`,
  annotations `{"annotations": [{"question_id", "answers": [{"answer"}...], "answer_type",
  "question_type"}]}`, predictions `[{"question_id", "answer"}]`. As the official `loadRes`, the
  predictions must cover exactly the annotated questions.
- Captions, COCO format: references `{"images": [{"id", ["domain"]}], "annotations":
  [{"image_id", "caption"}]}`, predictions `[{"image_id", "caption"}]`, one per referenced image.
  Images carrying a NoCaps `domain` (in-domain/near-domain/out-domain) also get per-domain scores.
- Grounding: boxes `[x1, y1, x2, y2]` keyed by expression id, either a mapping
  `{"<id>": [x1, y1, x2, y2]}` or a list `[{"id"|"ref_id"|"expression_id", "box"|"bbox"}]`.
  References may instead map to `{"box": [...], "width": W, "height": H, "split": S}`; with
  width/height the predicted box is clamped to the image, with split a per-split score is added.
"""
from __future__ import annotations

import math
import os
from typing import Any, Iterable, Mapping

from mplug.errors import DataError
from mplug.utils.io import read_json


def _load(path: str | os.PathLike, what: str) -> Any:
    try:
        return read_json(path)
    except FileNotFoundError:
        raise DataError(f"{what} file {path} does not exist") from None
    except (OSError, ValueError) as err:
        raise DataError(f"{what} file: {err}") from None


def _bad(path: Any, index: Any, record: Any, why: str) -> DataError:
    text = repr(record)
    text = text if len(text) <= 120 else text[:117] + "..."
    return DataError(f"{path}: record {index} {why}: {text}")


def _records(obj: Any, path: Any, key: str | None) -> list:
    if key is not None:
        if not isinstance(obj, Mapping) or not isinstance(obj.get(key), list):
            raise DataError(f"{path}: expected a JSON object with a list under {key!r}")
        return obj[key]
    if not isinstance(obj, list):
        raise DataError(f"{path}: expected a JSON list of records")
    return obj


def _unique(records: Iterable[tuple[Any, Any, Any]], path: Any) -> dict:
    out: dict = {}
    for index, rec, key in records:
        if key in out:
            raise _bad(path, index, rec, f"repeats id {key!r}")
        out[key] = rec
    return out


# ---------------------------------------------------------------- VQA
def load_vqa(pred_path, questions_path, annotations_path) -> tuple[dict, dict]:
    """-> (predictions {qid: answer}, annotations {qid: ann}) validated against each other."""
    questions = _records(_load(questions_path, "questions"), questions_path, "questions")
    qids = set()
    for i, q in enumerate(questions):
        if not isinstance(q, Mapping) or not isinstance(q.get("question_id"), (int, str)):
            raise _bad(questions_path, i, q, "has no question_id")
        qids.add(q["question_id"])
    anns_list = _records(_load(annotations_path, "annotations"), annotations_path, "annotations")
    anns = {}
    for i, a in enumerate(anns_list):
        ok = (isinstance(a, Mapping) and isinstance(a.get("question_id"), (int, str))
              and isinstance(a.get("answers"), list) and a["answers"]
              and all(isinstance(x, Mapping) and isinstance(x.get("answer"), str)
                      for x in a["answers"]))
        if not ok:
            raise _bad(annotations_path, i, a,
                       "needs question_id and a non-empty answers list of {\"answer\": str}")
        if a["question_id"] not in qids:
            raise _bad(annotations_path, i, a, "has a question_id missing from the questions file")
        if a["question_id"] in anns:
            raise _bad(annotations_path, i, a, f"repeats question_id {a['question_id']!r}")
        anns[a["question_id"]] = a
    preds_list = _records(_load(pred_path, "predictions"), pred_path, None)
    preds = {}
    for i, p in enumerate(preds_list):
        if not (isinstance(p, Mapping) and isinstance(p.get("question_id"), (int, str))
                and isinstance(p.get("answer"), str)):
            raise _bad(pred_path, i, p, "needs question_id and a string answer")
        if p["question_id"] in preds:
            raise _bad(pred_path, i, p, f"repeats question_id {p['question_id']!r}")
        if p["question_id"] not in anns:
            raise _bad(pred_path, i, p, "answers a question that is not in the annotations")
        preds[p["question_id"]] = p["answer"]
    missing = [q for q in anns if q not in preds]
    if missing:
        raise DataError(f"{pred_path}: no answer for question_id {missing[0]!r} "
                        f"({len(missing)} of {len(anns)} annotated questions unanswered)")
    return preds, anns


def _add_ci(out: dict, ci: dict, unit: str, resamples: int) -> dict:
    if resamples > 0:
        out.update(ci95=ci, ci_resamples=resamples, ci_unit=unit)
    return out


def score_vqa_files(pred_path, questions_path, annotations_path, resamples: int = 1000,
                    seed: int = 0) -> dict:
    from mplug.eval.bootstrap import vqa_ci
    from mplug.eval.vqa_eval import question_accuracy, vqa_accuracy

    preds, anns = load_vqa(pred_path, questions_path, annotations_path)
    res = vqa_accuracy(preds, anns)
    out = {"overall": res["overall"], "perAnswerType": res["perAnswerType"]}
    if resamples <= 0:
        return out
    per_q = [question_accuracy(preds[q], [a["answer"] for a in ann["answers"]])
             for q, ann in anns.items()]
    return _add_ci(out, vqa_ci(per_q, resamples, seed), "question", resamples)


# ---------------------------------------------------------------- captions
def load_captions(pred_path, refs_path) -> tuple[dict, dict, dict]:
    """-> (references {image_id: [captions]}, predictions {image_id: caption}, domains)."""
    refs_obj = _load(refs_path, "references")
    anns = _records(refs_obj, refs_path, "annotations")
    refs: dict = {}
    for i, a in enumerate(anns):
        if not (isinstance(a, Mapping) and isinstance(a.get("image_id"), (int, str))
                and isinstance(a.get("caption"), str)):
            raise _bad(refs_path, i, a, "needs image_id and a string caption")
        refs.setdefault(a["image_id"], []).append(a["caption"])
    if not refs:
        raise DataError(f"{refs_path}: no reference captions under 'annotations'")
    domains = {}
    for img in refs_obj.get("images", []) or []:
        if isinstance(img, Mapping) and isinstance(img.get("domain"), str):
            domains[img.get("id")] = img["domain"]
    preds_list = _records(_load(pred_path, "predictions"), pred_path, None)
    preds: dict = {}
    for i, p in enumerate(preds_list):
        if not (isinstance(p, Mapping) and isinstance(p.get("image_id"), (int, str))
                and isinstance(p.get("caption"), str)):
            raise _bad(pred_path, i, p, "needs image_id and a string caption")
        if p["image_id"] in preds:
            raise _bad(pred_path, i, p, f"repeats image_id {p['image_id']!r}")
        if p["image_id"] not in refs:
            raise _bad(pred_path, i, p, "captions an image that has no references")
        preds[p["image_id"]] = p["caption"]
    missing = [k for k in refs if k not in preds]
    if missing:
        raise DataError(f"{pred_path}: no caption for image_id {missing[0]!r} "
                        f"({len(missing)} of {len(refs)} referenced images uncaptioned)")
    return refs, preds, domains


def score_caption_files(pred_path, refs_path, resamples: int = 1000, seed: int = 0) -> dict:
    from mplug.eval.bootstrap import caption_ci
    from mplug.eval.caption_eval import score_captions, score_nocaps

    refs, preds, domains = load_captions(pred_path, refs_path)
    per: dict = {}
    out = score_captions(refs, preds, per_image=per)
    if domains:
        nocaps = score_nocaps(refs, preds, domains, per_image=per)
        out["nocaps"] = {k: v for k, v in nocaps.items() if k != "unavailable"}
    if resamples <= 0:
        return out
    return _add_ci(out, caption_ci(per, resamples, seed), "image", resamples)


# ---------------------------------------------------------------- grounding
_ID_KEYS = ("id", "ref_id", "expression_id", "sent_id")


def _box(value: Any) -> list[float] | None:
    if (isinstance(value, list) and len(value) == 4
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                    for v in value)):
        return [float(v) for v in value]
    return None


def _grounding_records(obj: Any, path: Any) -> dict[str, dict]:
    if isinstance(obj, Mapping):
        items: Iterable = ((k, k, v) for k, v in obj.items())
    elif isinstance(obj, list):
        def _gen():
            for i, rec in enumerate(obj):
                key = next((rec[k] for k in _ID_KEYS if isinstance(rec, Mapping) and k in rec), None)
                if key is None:
                    raise _bad(path, i, rec, f"has no id (one of {', '.join(_ID_KEYS)})")
                yield i, key, rec
        items = _gen()
    else:
        raise DataError(f"{path}: expected an object keyed by expression id or a list of records")
    out: dict[str, dict] = {}
    for index, key, val in items:
        rec = dict(val) if isinstance(val, Mapping) else {"box": val}
        box = _box(rec.get("box", rec.get("bbox")))
        if box is None or box[2] < box[0] or box[3] < box[1]:
            raise _bad(path, index, val, "needs a box [x1, y1, x2, y2] with x2 >= x1, y2 >= y1")
        rec["box"] = box
        if str(key) in out:
            raise _bad(path, index, val, f"repeats id {key!r}")
        out[str(key)] = rec
    return out


def score_grounding_files(pred_path, refs_path, resamples: int = 1000, seed: int = 0) -> dict:
    import numpy as np

    from mplug.eval.grounding_eval import grounding_accuracy

    refs = _grounding_records(_load(refs_path, "references"), refs_path)
    preds = _grounding_records(_load(pred_path, "predictions"), pred_path)
    extra = [k for k in preds if k not in refs]
    if extra:
        raise DataError(f"{pred_path}: prediction for id {extra[0]!r} has no reference box")
    missing = [k for k in refs if k not in preds]
    if missing:
        raise DataError(f"{pred_path}: no box for id {missing[0]!r} "
                        f"({len(missing)} of {len(refs)} expressions unanswered)")

    def _score(keys: list[str]) -> dict:
        inf = float("inf")  # no image size: no clamp beyond 0
        w = np.array([refs[k].get("width", inf) for k in keys], dtype=np.float64)
        h = np.array([refs[k].get("height", inf) for k in keys], dtype=np.float64)
        return grounding_accuracy([preds[k]["box"] for k in keys], [refs[k]["box"] for k in keys],
                                  width=w, height=h)

    keys = list(refs)
    out = _score(keys)
    if resamples > 0:
        from mplug.eval.bootstrap import grounding_ci
        from mplug.eval.grounding_eval import box_iou, clamp_boxes

        inf = float("inf")
        w = np.array([refs[k].get("width", inf) for k in keys], dtype=np.float64)
        h = np.array([refs[k].get("height", inf) for k in keys], dtype=np.float64)
        iou = box_iou(clamp_boxes([preds[k]["box"] for k in keys], w, h),
                      np.array([refs[k]["box"] for k in keys]))
        _add_ci(out, grounding_ci(iou, resamples=resamples, seed=seed), "expression", resamples)
    splits = sorted({str(refs[k]["split"]) for k in keys if "split" in refs[k]})
    if splits:
        out["per_split"] = {s: _score([k for k in keys if str(refs[k].get("split")) == s])
                            for s in splits}
    return out
