"""Image-task converters: official raw layouts (docs/datasets.md) -> normalised records."""
from __future__ import annotations

import collections
import pickle
from typing import Any
from pathlib import Path

from mplug.data import formats
from mplug.data.preprocess_common import (MediaChecker, PreprocessRun, Split, finish, get, keep, load_json,
                                          load_jsonl, rel)
from mplug.errors import DataError

# ----------------------------------------------------------------- Karpathy splits (COCO, Flickr30K)


def _karpathy(ctx: PreprocessRun, source: str, name: str) -> list[dict]:
    path = ctx.need(source, name)
    data = load_json(path)
    images = get(data, "images", str(path), list)
    for i, img in enumerate(images):
        where = f"{path}: images[{i}]"
        get(img, "filename", where, str), get(img, "split", where, str)
        for j, sent in enumerate(get(img, "sentences", where, list)):
            get(sent, "raw", f"{where}.sentences[{j}]", str)  # a renamed key must not drop captions silently
    return images


def _karpathy_split(s: str) -> str:
    return "train" if s == "restval" else s  # Karpathy train = train + restval (113,287 images)


def _coco_image(ctx: PreprocessRun, img: dict) -> Path:
    return ctx.src / "coco" / img.get("filepath", "") / img["filename"]


def coco_caption(ctx: PreprocessRun) -> dict:
    return _caption_or_retrieval(ctx, "coco_caption")


def coco_retrieval(ctx: PreprocessRun) -> dict:
    return _caption_or_retrieval(ctx, "coco_retrieval")


def flickr_retrieval(ctx: PreprocessRun) -> dict:
    return _caption_or_retrieval(ctx, "flickr_retrieval")


def _caption_or_retrieval(ctx: PreprocessRun, dataset: str) -> dict:
    flickr = dataset == "flickr_retrieval"
    source, name = ("flickr30k", "dataset_flickr30k.json") if flickr else ("coco_karpathy", "dataset_coco.json")
    images = _karpathy(ctx, source, name)
    folder, checker = ctx.out / dataset, MediaChecker(ctx.check)
    splits = {s: Split() for s in formats.DATASETS[dataset].splits}
    for img in ctx.bar(images, dataset):
        split = _karpathy_split(img["split"])
        if split not in splits:
            continue
        path = (ctx.src / "flickr30k" / "flickr30k-images" / img["filename"]) if flickr else _coco_image(ctx, img)
        image_id = Path(img["filename"]).stem if flickr else img.get("cocoid", img.get("imgid"))
        caps = [s.get("raw", "").strip() for s in img["sentences"]]
        keep_idx = [i for i, c in enumerate(caps) if c]
        rec = {"image": rel(path, folder), "image_id": image_id, "captions": [caps[i] for i in keep_idx]}
        if dataset == "coco_caption":
            rec["split"] = split
        else:
            rec["text_ids"] = [img["sentences"][i].get("sentid", f"{image_id}_{i}") for i in keep_idx]
        if rec["captions"]:
            keep(splits[split], rec, checker.ok(path))
    return finish(ctx, dataset, f"{source}:{name}", splits, checker)


# ------------------------------------------------------------------------------------- NoCaps

_DOMAIN = {"in-domain": "in", "near-domain": "near", "out-domain": "out"}


def nocaps(ctx: PreprocessRun) -> dict:
    path = ctx.need("nocaps", "nocaps_val_4500_captions.json")
    data = load_json(path)
    caps = collections.defaultdict(list)
    for i, ann in enumerate(get(data, "annotations", str(path), list)):
        where = f"{path}: annotations[{i}]"
        caps[get(ann, "image_id", where)].append(get(ann, "caption", where, str).strip())
    folder, checker, split = ctx.out / "nocaps", MediaChecker(ctx.check), Split()
    for i, img in enumerate(ctx.bar(get(data, "images", str(path), list), "nocaps")):
        where = f"{path}: images[{i}]"
        domain = get(img, "domain", where, str)
        if domain not in _DOMAIN:
            raise DataError(f"{where}: domain '{domain}' is not one of {sorted(_DOMAIN)}")
        file = ctx.src / "nocaps" / "images" / "val" / get(img, "file_name", where, str)
        rec = {"image": rel(file, folder), "image_id": get(img, "id", where), "captions": caps[img["id"]],
               "split": "val", "domain": _DOMAIN[domain]}
        keep(split, rec, checker.ok(file))
    return finish(ctx, "nocaps", "nocaps:nocaps_val_4500_captions.json", {"val": split}, checker)


# ------------------------------------------------------------------------------- VQA v2 + VG-QA

def _vqa_questions(ctx: PreprocessRun, name: str) -> list[dict]:
    path = ctx.need("vqa_v2", name)
    return [(q, f"{path}: questions[{i}]") for i, q in enumerate(get(load_json(path), "questions", str(path), list))]


def _vqa_annotations(ctx: PreprocessRun, name: str) -> dict:
    path = ctx.need("vqa_v2", name)
    out = {}
    for i, ann in enumerate(get(load_json(path), "annotations", str(path), list)):
        where = f"{path}: annotations[{i}]"
        answers = [get(a, "answer", f"{where}.answers[{j}]", str)
                   for j, a in enumerate(get(ann, "answers", where, list))]
        if len(answers) != 10:
            raise DataError(f"{where}: question {ann.get('question_id')} has {len(answers)} answers, VQA v2 has 10")
        out[get(ann, "question_id", where)] = (answers, ann.get("answer_type"), ann.get("multiple_choice_answer"))
    return out


def vqa(ctx: PreprocessRun) -> dict:
    """train = train2014 + nominival, val = LXMERT minival, test = test2015 (official mPLUG split; the
    EvalAI file for test-std must answer all of them, test-dev is a subset);
    without LXMERT's minival.json: train = train2014, val = val2014 (recorded in stats)."""
    folder, checker = ctx.out / "vqa", MediaChecker(ctx.check)
    splits = {s: Split() for s in formats.DATASETS["vqa"].splits}
    minival_path = ctx.maybe("vqa_v2", "minival.json")
    minival = None
    if minival_path:
        minival = {get(q, "question_id", f"{minival_path}: [{i}]") for i, q in enumerate(load_json(minival_path))}
    for coco_split in ("train2014", "val2014"):
        anns = _vqa_annotations(ctx, f"v2_mscoco_{coco_split}_annotations.json")
        qs = _vqa_questions(ctx, f"v2_OpenEnded_mscoco_{coco_split}_questions.json")
        for q, where in ctx.bar(qs, f"vqa {coco_split}"):
            qid, image_id = get(q, "question_id", where), get(q, "image_id", where, int)
            if qid not in anns:
                raise DataError(f"{where}: question {qid} has no annotation in v2_mscoco_{coco_split}_annotations.json")
            answers, atype, mc = anns[qid]
            split = "train" if coco_split == "train2014" else (
                "val" if minival is None or qid in minival else "train")
            path = ctx.src / "coco" / coco_split / f"COCO_{coco_split}_{image_id:012d}.jpg"
            rec = {"question_id": qid, "image": rel(path, folder), "image_id": image_id,
                   "question": get(q, "question", where, str), "answers": answers, "dataset": "vqa"}
            if atype in ("yes/no", "number", "other"):
                rec["answer_type"] = atype
            if mc:
                rec["multiple_choice_answer"] = mc
            keep(splits[split], rec, checker.ok(path))
    test_dev = _vqa_test(ctx, folder, checker, splits["test"])
    _vg_qa(ctx, folder, checker, splits["vg_qa"])
    answers = _answer_list(ctx, splits["train"].records)
    formats.write_answer_list(folder / "answer_list.json", answers)
    return finish(ctx, "vqa", "vqa_v2+vg", splits, checker, answer_list_size=len(answers),
                  val_split="lxmert minival" if minival is not None else "val2014 (minival.json not found)",
                  test_split="test2015 (every test-std question; test-dev2015 is a subset)",
                  test_dev_questions=test_dev)


def _test2015_dir(ctx: PreprocessRun) -> Path:
    """test2015/ from the coco_test2015 source (or from an older `coco --all` download)."""
    for root in (ctx.src / "coco_test2015", ctx.src / "coco"):
        if (root / "test2015").is_dir():
            return root / "test2015"
    return ctx.src / "coco_test2015" / "test2015"


def _vqa_test(ctx: PreprocessRun, folder: Path, checker: MediaChecker, split: Split) -> int:
    """test = every test2015 question: an EvalAI test-std submission must answer all of them, and
    the test-dev phase scores its subset of the same file. Returns how many are test-dev questions."""
    images, listed = _test2015_dir(ctx), set()
    for q, where in ctx.bar(_vqa_questions(ctx, "v2_OpenEnded_mscoco_test2015_questions.json"), "vqa test2015"):
        image_id = get(q, "image_id", where, int)
        path = images / f"COCO_test2015_{image_id:012d}.jpg"
        rec = {"question_id": get(q, "question_id", where), "image": rel(path, folder), "image_id": image_id,
               "question": get(q, "question", where, str), "answers": [], "dataset": "vqa"}
        listed.add(rec["question_id"])
        keep(split, rec, checker.ok(path))
    dev_path = ctx.maybe("vqa_v2", "v2_OpenEnded_mscoco_test-dev2015_questions.json")
    if dev_path is None:
        return 0
    dev = _vqa_questions(ctx, dev_path.name)
    outside = [w for q, w in dev if get(q, "question_id", w) not in listed]
    if outside:
        raise DataError(f"{outside[0]}: test-dev question not in v2_OpenEnded_mscoco_test2015_questions.json "
                        f"({len(outside)} such); both files come from one v2_Questions_Test_mscoco.zip")
    return len(dev)


def _vg_qa(ctx: PreprocessRun, folder: Path, checker: MediaChecker, split: Split) -> None:
    """VG-QA from the raw question_answers.json; images in VG_100K/ or VG_100K_2/."""
    path = ctx.maybe("vg", "question_answers.json")
    if path is None:
        return
    vg = ctx.src / "vg"
    for i, img in enumerate(ctx.bar(load_json(path), "vg_qa")):
        where = f"{path}: [{i}]"
        image_id = get(img, "id", where, int)
        file = vg / "VG_100K" / f"{image_id}.jpg"
        if not file.exists() and (vg / "VG_100K_2" / f"{image_id}.jpg").exists():
            file = vg / "VG_100K_2" / f"{image_id}.jpg"
        for j, qa in enumerate(get(img, "qas", where, list)):
            w = f"{where}.qas[{j}]"
            answer = get(qa, "answer", w, str).strip().rstrip(".")
            if not answer:
                continue
            rec = {"question_id": get(qa, "qa_id", w), "image": rel(file, folder), "image_id": image_id,
                   "question": get(qa, "question", w, str), "answers": [answer], "dataset": "vg"}
            keep(split, rec, checker.ok(file))


def _answer_list(ctx: PreprocessRun, train: list[dict], size: int = 3128) -> list[str]:
    """BLIP/ALBEF answer_list.json (3,128 answers) if downloaded, else the most frequent train answers."""
    path = ctx.maybe("vqa_v2", "answer_list.json")
    if path:
        return formats.read_answer_list(path)
    counts = collections.Counter(r.get("multiple_choice_answer") for r in train if r.get("multiple_choice_answer"))
    return [a for a, _ in counts.most_common(size)]


# ------------------------------------------------------------------ RefCOCO / RefCOCO+ / RefCOCOg


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler for the official refs(*.p) files: only builtin containers and scalars, no classes,
    so a tampered file cannot run code. (The files are Python 2 pickles of dicts/lists/strings;
    `_codecs.encode` is how protocol-2 pickles written by Python 3 rebuild bytes, and is harmless.)"""

    _ALLOWED = {("builtins", n) for n in ("dict", "list", "tuple", "set", "frozenset", "str", "bytes", "int",
                                          "float", "bool", "complex")} | {("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        module = {"__builtin__": "builtins"}.get(module, module)
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise DataError(f"refuses to load {module}.{name}: the refs pickle may only hold builtin types")


def load_refs(path: Path) -> list[dict]:
    try:
        with open(path, "rb") as fh:
            data = RestrictedUnpickler(fh, encoding="bytes").load()
    except DataError as err:
        raise DataError(f"{path}: {err}") from None
    except Exception as err:  # truncated/garbled pickles raise many types
        raise DataError(f"{path}: unreadable pickle ({type(err).__name__}: {err}); download it again") from None
    data = _decode(data)
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a list of refs, got {type(data).__name__}")
    return data


def _decode(obj):
    """Python 2 pickles give bytes for str: decode recursively (UTF-8)."""
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    if isinstance(obj, dict):
        return {_decode(k): _decode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_decode(v) for v in obj]
    return obj


# output dataset -> (source folder, folder inside the zip, refs file, split renames)
_REF = {"refcoco": ("refcoco", "refcoco", "refs(unc).p", {}),
        "refcoco+": ("refcoco_plus", "refcoco+", "refs(unc).p", {}),
        "refcocog": ("refcocog", "refcocog", "refs(umd).p", {"val": "val_u", "test": "test_u"})}


def _expression(sent: dict, where: str) -> str:
    """A refer sentence's text: `raw` (as written), else the normalised `sent`."""
    if not isinstance(sent, dict):
        raise DataError(f"{where}: expected a dict, got {type(sent).__name__}")
    if "raw" not in sent and "sent" not in sent:
        raise DataError(f"{where}: key 'raw' missing (nor 'sent')")
    return (sent.get("raw") or sent.get("sent") or "").strip()


def _clipped_box(ann: dict, img: dict, inst_path: Path) -> tuple[list[float] | None, bool]:
    """(box, clipped): the COCO [x, y, w, h] as written when it lies inside the image (no
    arithmetic, so 177.42 stays 177.42), else clipped to the image; None when nothing is left."""
    where = f"{inst_path}: annotation {ann.get('id')}"
    bbox = get(ann, "bbox", where, list)
    if len(bbox) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox):
        raise DataError(f"{where}: key 'bbox' should be [x, y, w, h] numbers, got {bbox!r}")
    iw = f"{inst_path}: image {img.get('id')}"
    width, height = get(img, "width", iw, int), get(img, "height", iw, int)
    box, clipped = clip_box([float(v) for v in bbox], width, height)
    return (box if box[2] > 0 and box[3] > 0 else None), clipped


def grounding(ctx: PreprocessRun, dataset: str) -> dict:
    source, inner, refs_name, rename = _REF[dataset]
    refs_path = ctx.need(source, f"{inner}/{refs_name}")
    inst_path = refs_path.parent / "instances.json"
    if not inst_path.exists():
        raise DataError(f"{inst_path}: not found; run `mplug data download {source} --dest {ctx.src}`")
    inst = load_json(inst_path)
    images = {get(im, "id", f"{inst_path}: images[{i}]"): im
              for i, im in enumerate(get(inst, "images", str(inst_path), list))}
    anns = {get(a, "id", f"{inst_path}: annotations[{i}]"): a
            for i, a in enumerate(get(inst, "annotations", str(inst_path), list))}
    folder, checker = ctx.out / dataset, MediaChecker(ctx.check)
    splits = {s: Split() for s in formats.DATASETS[dataset].splits}
    clipped = dropped = 0
    for i, ref in enumerate(ctx.bar(load_refs(refs_path), dataset)):
        where = f"{refs_path}: ref {i}"
        split = rename.get(get(ref, "split", where, str), ref["split"])
        if split not in splits:
            continue
        ann, img = anns.get(get(ref, "ann_id", where)), images.get(get(ref, "image_id", where))
        if ann is None or img is None:
            raise DataError(f"{where}: ann_id {ref['ann_id']} / image_id {ref['image_id']} not in {inst_path}")
        box, was_clipped = _clipped_box(ann, img, inst_path)
        if box is None:
            dropped += 1  # degenerate box: counted, not fatal
            continue
        clipped += was_clipped
        width, height = img["width"], img["height"]
        path = ctx.src / "coco" / "train2014" / get(img, "file_name", f"{inst_path}: image {img['id']}", str)
        ok = checker.ok(path)
        for j, sent in enumerate(get(ref, "sentences", where, list)):
            text = _expression(sent, f"{where}.sentences[{j}]")
            if not text:
                continue
            rec = {"ref_id": get(ref, "ref_id", where), "sent_id": sent.get("sent_id", j), "image": rel(path, folder),
                   "image_id": ref["image_id"], "expression": text, "box": box, "width": width,
                   "height": height, "dataset": dataset, "split": split}
            keep(splits[split], rec, ok)
    return finish(ctx, dataset, f"{source}:{refs_name}", splits, checker, boxes_clipped=clipped,
                  boxes_dropped=dropped)


# ---------------------------------------------------------------------------------------- NLVR2

def nlvr2(ctx: PreprocessRun) -> dict:
    folder, checker = ctx.out / "nlvr2", MediaChecker(ctx.check)
    splits = {}
    for split, raw in (("train", "train.json"), ("dev", "dev.json"), ("test_p", "test1.json")):
        path = ctx.need("nlvr2", raw)
        img_dir = ctx.src / "nlvr2" / "images" / raw[:-5]
        splits[split] = Split()
        for lineno, obj in ctx.bar(load_jsonl(path), f"nlvr2 {split}"):
            where = f"{path}:{lineno}"
            ident = get(obj, "identifier", where, str)
            stem = ident.rsplit("-", 1)[0]  # split-set_id-pair_id(-sentence_id)
            label = get(obj, "label", where, str)
            if label not in ("True", "False"):
                raise DataError(f"{where}: label '{label}' is not True/False")
            paths = [_nlvr_image(img_dir, obj.get("directory"), f"{stem}-img{k}.png") for k in (0, 1)]
            rec = {"pair_id": ident, "image_left": rel(paths[0], folder), "image_right": rel(paths[1], folder),
                   "statement": get(obj, "sentence", where, str), "label": label == "True"}
            keep(splits[split], rec, all([checker.ok(p) for p in paths]))
    return finish(ctx, "nlvr2", "nlvr2:lil-lab", splits, checker)


def _nlvr_image(img_dir: Path, directory, name: str) -> Path:
    """train images sit in 100 numbered sub-folders (or flattened, as mPLUG expects)."""
    if directory is not None and (img_dir / str(directory) / name).exists():
        return img_dir / str(directory) / name
    return img_dir / name


def clip_box(box: list[float], width: int, height: int) -> tuple[list[float], bool]:
    """COCO [x, y, w, h] clipped to the image; a box already inside is returned bit for bit
    (recomputing x + w - x would turn 177.42 into 177.41999999999996). -> (box, clipped?)"""
    x, y, w, h = box
    if x >= 0 and y >= 0 and x + w <= width and y + h <= height:
        return [x, y, w, h], False
    x0, y0 = max(0.0, x), max(0.0, y)
    return [x0, y0, min(x + w, width) - x0, min(y + h, height) - y0], True


# The generator's own output spells the image key Flickr30K_ID; widely redistributed copies of
# snli_ve_*.jsonl spell it Flikr30kID (the typo of the original SNLI-VE release).
SNLI_VE_IMAGE_KEYS = ("Flickr30K_ID", "Flikr30kID")


def snli_ve_image_id(rec: Any, where: str) -> Any:
    for key in SNLI_VE_IMAGE_KEYS:
        if isinstance(rec, dict) and key in rec:
            return rec[key]
    raise DataError(f"{where}: key '{SNLI_VE_IMAGE_KEYS[0]}' (or its redistributed spelling "
                    f"'{SNLI_VE_IMAGE_KEYS[1]}') missing")


# -------------------------------------------------------------------------------------- SNLI-VE

def snli_ve(ctx: PreprocessRun) -> dict:
    """From the official generator's snli_ve_<split>.jsonl, else ALBEF's ve_<split>.json."""
    folder, checker = ctx.out / "snli_ve", MediaChecker(ctx.check)
    images = ctx.src / "flickr30k" / "flickr30k-images"
    splits = {}
    for split in formats.DATASETS["snli_ve"].splits:
        splits[split] = Split()
        official = ctx.maybe("snli_ve", f"snli_ve_{split}.jsonl")
        if official:
            rows = [(f"{official}:{n}", o, snli_ve_image_id(o, f"{official}:{n}"),
                     get(o, "sentence2", f"{official}:{n}"), get(o, "gold_label", f"{official}:{n}"),
                     o.get("pairID", f"{split}-{n}")) for n, o in load_jsonl(official)]
        else:
            path = ctx.need("albef_data", f"data/ve_{split}.json")
            rows = [(f"{path}: [{i}]", o, get(o, "image", f"{path}: [{i}]", (str, int)),
                     get(o, "sentence", f"{path}: [{i}]"), get(o, "label", f"{path}: [{i}]"), f"{split}-{i}")
                    for i, o in enumerate(load_json(path))]
        for where, _obj, image_id, hyp, label, pair_id in ctx.bar(rows, f"snli_ve {split}"):
            if label not in ("entailment", "neutral", "contradiction"):
                raise DataError(f"{where}: label {label!r} is not entailment/neutral/contradiction")
            if not isinstance(hyp, str) or not hyp.strip():
                raise DataError(f"{where}: hypothesis missing or empty")
            path = images / f"{Path(str(image_id)).stem}.jpg"
            rec = {"pair_id": pair_id, "image": rel(path, folder), "image_id": str(image_id),
                   "hypothesis": hyp.strip(), "label": label}
            keep(splits[split], rec, checker.ok(path))
    return finish(ctx, "snli_ve", "snli_ve", splits, checker)


CONVERTERS = {
    "coco_caption": coco_caption, "coco_retrieval": coco_retrieval, "flickr_retrieval": flickr_retrieval,
    "nocaps": nocaps, "vqa": vqa, "nlvr2": nlvr2, "snli_ve": snli_ve,
    "refcoco": lambda ctx: grounding(ctx, "refcoco"), "refcoco+": lambda ctx: grounding(ctx, "refcoco+"),
    "refcocog": lambda ctx: grounding(ctx, "refcocog"),
}
