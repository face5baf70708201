"""`mplug data synth`: write every task of the paper as a small synthetic world.

Deterministic: the same seed gives byte-identical files (per-dataset `random.Random` seeded with
a string, PNG/JPEG written by PIL with fixed parameters, tar members with fixed metadata, no
timestamps, sorted iteration everywhere). The tree is built in a temporary sibling folder and
renamed into place, so a killed run never leaves a folder that looks complete.
"""
from __future__ import annotations

import io
import os
import random
import shutil
import tarfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from mplug.data import baselines as B
from mplug.data import formats, vocab, world
from mplug.data import world_text as T
from mplug.errors import DataError
from mplug.utils.io import atomic_write_json, atomic_write_text, sha256_file
from mplug.utils.logging import get_logger

log = get_logger("mplug.data.synth")

GENERATOR = "mplug-synth-1"


@dataclass(frozen=True)
class Scale:
    """Counts per dataset (images unless said otherwise)."""

    image_size: int
    pretrain_4m: int          # images, 2 captions each
    pretrain_14m_extra: int   # extra CC12M-like images in webdataset shards, 1 caption each
    caption: tuple[int, int, int]     # train/val/test images, 5 captions each
    nocaps_per_domain: int
    vqa: tuple[int, int, int]         # train/val/test images, 3 questions each
    vg_qa: int                        # images, 2 questions each
    retrieval_coco: tuple[int, int, int]
    retrieval_flickr: tuple[int, int, int]
    grounding: tuple[int, int, int]   # train/val/test images, 2 expressions each
    nlvr2: tuple[int, int, int]       # train/dev/test pairs (images = 2 per pair)
    snli_ve: tuple[int, int, int]     # train/dev/test images, 3 hypotheses each
    videos: int                       # per video dataset (test); QA train sets get 2x
    frames: tuple[int, int]           # min/max frames per video


SCALES = {
    "tiny": Scale(64, 400, 200, (200, 40, 40), 15, (200, 40, 40), 100, (150, 30, 30),
                  (100, 30, 30), (120, 25, 40), (240, 50, 50), (120, 30, 30), 30, (10, 18)),
    "small": Scale(96, 2000, 1000, (800, 100, 100), 50, (800, 100, 100), 400, (600, 100, 100),
                   (400, 100, 100), (500, 100, 150), (1000, 200, 200), (500, 100, 100), 100, (10, 20)),
}


class SynthFolder:
    """Per-dataset generation context: a seeded RNG and a folder to write images into."""

    def __init__(self, root: Path, name: str, seed: int, size: int):
        self.dir = root / name
        self.name = name
        self.rng = random.Random(f"{seed}:{name}")
        self.size = size
        self.n_images = 0

    def image(self, rel: str, objs: list[world.Obj]) -> str:
        path = self.dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        world.render(objs, self.size).save(buf, format="PNG", compress_level=6, optimize=False)
        path.write_bytes(buf.getvalue())  # the whole tree is renamed into place at the end
        self.n_images += 1
        return rel


@dataclass
class Out:
    """What a dataset generator returns."""

    splits: dict[str, list[dict]]
    n_texts: int
    chance: dict[str, float]
    baselines: dict[str, Any]
    notes: str = ""
    answer_list: list[str] | None = None


def _colours(objs: list[world.Obj]) -> frozenset[str]:
    return frozenset(o.colour for o in objs)


def _ckey(objs: list[world.Obj]) -> str:
    return ",".join(sorted(_colours(objs)))


# ---------------------------------------------------------------------------------------------
# Generators, one per dataset folder


def gen_pretrain_4m(c: SynthFolder, s: Scale) -> Out:
    recs = []
    for i in range(s.pretrain_4m):
        objs = world.sample_scene(c.rng, c.size)
        img = c.image(f"images/{i:05d}.png", objs)
        for _ in range(2):
            recs.append({"image": img, "image_id": f"p4m_{i:05d}",
                         "caption": world.caption(objs, c.rng), "source": "synth"})
    return Out({"train": recs}, len(recs), {"itc_r1_batch32": round(1 / 32, 4)}, {},
               notes="COCO/VG/SBU/CC3M-like pairs")


def gen_pretrain_14m(c: SynthFolder, s: Scale, base: list[dict]) -> Out:
    """14M-like = the 4M-like pairs (shared files) + CC12M-like pairs in webdataset shards."""
    recs = [dict(r, image="../pretrain_4m/" + r["image"]) for r in base]
    per_shard = (s.pretrain_14m_extra + 1) // 2
    shards = []
    for k in range(2):
        members = []
        for i in range(k * per_shard, min(s.pretrain_14m_extra, (k + 1) * per_shard)):
            objs = world.sample_scene(c.rng, c.size)
            # web captions are noisier: sometimes only part of the scene is described
            cap = world.caption(objs[:1] if c.rng.random() < 0.3 else objs, c.rng)
            buf = io.BytesIO()
            world.render(objs, c.size).save(buf, format="JPEG", quality=95)
            key = f"{k:05d}{i:04d}"
            meta = formats.dumps_record({"key": key, "caption": cap, "width": c.size,
                                         "height": c.size, "status": "success"})
            members += [(f"{key}.jpg", buf.getvalue()), (f"{key}.txt", cap.encode()),
                        (f"{key}.json", meta.encode())]
            c.n_images += 1
        rel = f"shards/cc12m-{k:05d}.tar"
        _write_tar(c.dir / rel, members)
        shards.append(rel)
    atomic_write_text(c.dir / "shards.txt", "".join(x + "\n" for x in shards))
    c.n_images += len({r["image"] for r in base})
    return Out({"train": recs}, len(recs) + s.pretrain_14m_extra,
               {"itc_r1_batch32": round(1 / 32, 4)}, {},
               notes="4M-like pairs + CC12M-like webdataset shards listed in shards.txt")


def _write_tar(path: Path, members: list[tuple[str, bytes]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))


def _caption_splits(c: SynthFolder, counts: dict[str, int], n_refs: int, allow: Callable[[str], str],
                    schema: str, extra: Callable[[str], dict] | None = None) -> tuple[dict, dict]:
    splits, scenes, img_id = {}, {}, 0
    for split, n in counts.items():
        recs = []
        for _ in range(n):
            objs = world.sample_scene(c.rng, c.size, allow=allow(split))
            img = c.image(f"images/{split}_{img_id:05d}.png", objs)
            rec = {"image": img, "image_id": img_id,
                   "captions": [world.caption(objs, c.rng) for _ in range(n_refs)], "split": split}
            if extra:
                rec.update(extra(split))
            recs.append(rec)
            scenes[img_id] = objs
            img_id += 1
        splits[split] = recs
    return splits, scenes


def _caption_baselines(train_caps: list[str], recs: list[dict], scenes: dict) -> dict:
    refs = {r["image_id"]: r["captions"] for r in recs}
    const = B.majority_label(train_caps)
    colour_only = {r["image_id"]: " and ".join(f"a {o.colour} shape" for o in scenes[r["image_id"]])
                   for r in recs}
    return {"blind_constant_caption": const,
            "blind_constant_cider": B.cider({k: const for k in refs}, refs),
            "colour_only_cider": B.cider(colour_only, refs)}


def gen_coco_caption(c: SynthFolder, s: Scale) -> Out:
    counts = dict(zip(("train", "val", "test"), s.caption))
    splits, scenes = _caption_splits(c, counts, 5, lambda _: "seen", "caption")
    train_caps = [x for r in splits["train"] for x in r["captions"]]
    base = {sp: _caption_baselines(train_caps, splits[sp], scenes) for sp in ("val", "test")}
    return Out(splits, sum(len(r["captions"]) for v in splits.values() for r in v), {}, base,
               notes="Karpathy-like; held-out colour-shape combinations never appear")


def gen_nocaps(c: SynthFolder, s: Scale, train_caps: list[str]) -> Out:
    n = s.nocaps_per_domain
    allow = {"in": "seen", "near": "near", "out": "unseen"}
    recs, scenes, img_id = [], {}, 0
    for dom in ("in", "near", "out"):
        for _ in range(n):
            objs = world.sample_scene(c.rng, c.size, allow=allow[dom])
            img = c.image(f"images/val_{img_id:05d}.png", objs)
            recs.append({"image": img, "image_id": img_id,
                         "captions": [world.caption(objs, c.rng) for _ in range(10)],
                         "split": "val", "domain": dom})
            scenes[img_id] = objs
            img_id += 1
    base = {"val": _caption_baselines(train_caps, recs, scenes)}
    for dom in ("in", "near", "out"):
        sub = [r for r in recs if r["domain"] == dom]
        base[f"val_{dom}"] = _caption_baselines(train_caps, sub, scenes)
    return Out({"val": recs}, 10 * len(recs), {}, base,
               notes="out = only colour-shape combinations held out of every training image; "
                     "near = one held-out object among seen ones; blind caption from coco_caption train")


def gen_vqa(c: SynthFolder, s: Scale) -> Out:
    splits, colours, img_id, qid = {}, {}, 0, 0
    plan = list(zip(("train", "val", "test"), s.vqa, (3, 3, 3))) + [("vg_qa", s.vg_qa, 2)]
    for split, n_img, n_q in plan:
        recs = []
        for _ in range(n_img):
            objs = world.sample_scene(c.rng, c.size)
            img = c.image(f"images/{img_id:05d}.png", objs)
            for q, a, atype, space in T.vqa_candidates(objs, c.rng)[:n_q]:
                rec = {"question_id": qid, "image": img, "image_id": img_id, "question": q}
                if split == "vg_qa":
                    rec.update(answers=[a], answer_type=atype, multiple_choice_answer=a, dataset="vg")
                else:
                    answers = T.annotate(a, space, c.rng)
                    rec.update(answers=answers, answer_type=atype,
                               multiple_choice_answer=B.majority_label(answers), dataset="vqa")
                recs.append(rec)
                colours[qid] = _ckey(objs)
                qid += 1
            img_id += 1
        splits[split] = recs
    train = splits["train"] + splits["vg_qa"]
    answer_list = _by_frequency([a for r in train for a in r["answers"]])
    base = {}
    for sp in ("val", "test"):
        ev = splits[sp]
        maj = B.majority_label([r["multiple_choice_answer"] for r in train])
        blind = B.backoff_predict([((r["question"],), r["multiple_choice_answer"]) for r in train],
                                  [(r["question"],) for r in ev])
        col = B.backoff_predict(
            [(((r["question"], colours[r["question_id"]]), r["question"]), r["multiple_choice_answer"])
             for r in train], [((r["question"], colours[r["question_id"]]), r["question"]) for r in ev])

        def score(preds, ev=ev) -> float:
            return round(100 * sum(B.vqa_accuracy(p, r["answers"]) for p, r in zip(preds, ev)) / len(ev), 2)

        base[sp] = {"majority_answer": maj, "majority_acc": score([maj] * len(ev)),
                    "blind_acc": score(blind), "colour_only_acc": score(col),
                    "oracle_acc": score([r["multiple_choice_answer"] for r in ev])}
    return Out(splits, sum(len(v) for v in splits.values()),
               {"vqa_acc": round(100 / len(answer_list), 2)}, base,
               notes="VQA accuracy min(#matching annotators/3, 1), x100; oracle < 100 because "
                     "annotators disagree", answer_list=answer_list)


def _by_frequency(items: list[str]) -> list[str]:
    counts: dict[str, int] = {}
    for x in items:
        counts[x] = counts.get(x, 0) + 1
    return [k for k, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def gen_retrieval(c: SynthFolder, counts: tuple[int, int, int]) -> Out:
    splits, img_id, baselines = {}, 0, {}
    chance = {}
    for split, n in zip(("train", "val", "test"), counts):
        recs, tid, item_cols, text_cols, text_item = [], 0, [], [], []
        for i in range(n):
            objs = world.sample_scene(c.rng, c.size)
            img = c.image(f"images/{split}_{img_id:05d}.png", objs)
            caps = [world.caption(objs, c.rng) for _ in range(5)]
            recs.append({"image": img, "image_id": img_id, "captions": caps,
                         "text_ids": list(range(tid, tid + 5))})
            tid += 5
            item_cols.append(_colours(objs))
            text_cols += [B.colours_in_text(x) for x in caps]
            text_item += [i] * 5
            img_id += 1
        splits[split] = recs
        if split != "train":
            chance[split] = {"txt_r1": round(100 / n, 2), "img_r1": round(100 / n, 2)}
            cr = B.colour_match_recall_at_1(text_cols, text_item, item_cols)
            baselines[split] = {f"colour_only_{k}": round(100 * v, 2) for k, v in cr.items()}
    return Out(splits, sum(5 * len(v) for v in splits.values()), chance, baselines,
               notes="R@1 x100; txt_r1 = text->image, img_r1 = image->text; colour-only ranks an "
                     "image whose colour set equals the colours named in the text")


def gen_grounding(c: SynthFolder, s: Scale, style: str) -> Out:
    names = ("train", "val_u", "test_u") if style == "refcocog" else ("train", "val", "test")
    splits: dict[str, list[dict]] = {}
    scenes, img_id, ref_id = {}, 0, 0
    for split, n in zip(names, s.grounding):
        for _ in range(n):
            objs = world.sample_scene(c.rng, c.size, n_min=2)
            img = c.image(f"images/{img_id:05d}.png", objs)
            for o in c.rng.sample(objs, 2):
                out_split = split
                if split == "test":  # RefCOCO testA = people, testB = objects; here: circles vs rest
                    out_split = "testA" if o.shape == "circle" else "testB"
                splits.setdefault(out_split, []).append({
                    "ref_id": ref_id, "image": img, "image_id": img_id,
                    "expression": T.expression(o, objs, style, c.rng), "box": o.box,
                    "width": c.size, "height": c.size, "dataset": style, "split": out_split})
                scenes[ref_id] = objs
                ref_id += 1
            img_id += 1
    order = [k for k in ("train", "val", "testA", "testB", "val_u", "test_u") if k in splits]
    splits = {k: splits[k] for k in order}
    train = splits["train"]
    mean_box = [sum(r["box"][j] for r in train) / len(train) for j in range(4)]
    chance, base = {}, {}
    for sp, recs in splits.items():
        if sp == "train":
            continue
        chance[sp] = {"acc@0.5": round(100 * sum(1 / len(scenes[r["ref_id"]]) for r in recs) / len(recs), 2)}
        col = [1.0 if B.colours_in_text(r["expression"]) else 1 / len(scenes[r["ref_id"]]) for r in recs]
        base[sp] = {"blind_mean_box_acc@0.5": round(100 * sum(B.iou_xywh(mean_box, r["box"]) >= 0.5
                                                              for r in recs) / len(recs), 2),
                    "colour_only_acc@0.5": round(100 * sum(col) / len(recs), 2)}
    return Out(splits, sum(len(v) for v in splits.values()), chance, base,
               notes="chance = a random object of the image; colour-only = picks the object whose "
                     "colour the expression names (colours are unique within an image)")


def gen_nlvr2(c: SynthFolder, s: Scale) -> Out:
    splits, cols, img_id, pid = {}, {}, 0, 0
    for split, n in zip(("train", "dev", "test_p"), s.nlvr2):
        recs = []
        for _ in range(n):
            pair = [world.sample_scene(c.rng, c.size) for _ in range(2)]
            paths = [c.image(f"images/{split}_{img_id + k:05d}.png", pair[k]) for k in range(2)]
            img_id += 2
            # labels alternate, so every split is balanced and the majority label scores 50%
            # (a "beats chance" check then also beats always answering the same label)
            want = len(recs) % 2 == 0
            for _ in range(200):  # resample the statement until its truth is the one wanted
                stmt, truth = T.nlvr2_statement(pair[0], pair[1], c.rng)
                if truth == want:
                    break
            recs.append({"pair_id": f"{split}-{pid}", "image_left": paths[0], "image_right": paths[1],
                         "statement": stmt, "label": truth})
            cols[f"{split}-{pid}"] = _ckey(pair[0]) + "|" + _ckey(pair[1])
            pid += 1
        splits[split] = recs
    return _classification_out(splits, "statement", cols, {"acc": 50.0}, ("dev", "test_p"))


def gen_snli_ve(c: SynthFolder, s: Scale) -> Out:
    splits, cols, img_id, pid = {}, {}, 0, 0
    for split, n in zip(("train", "dev", "test"), s.snli_ve):
        recs = []
        for _ in range(n):
            objs = world.sample_scene(c.rng, c.size)
            img = c.image(f"images/{img_id:05d}.png", objs)
            for label in ("entailment", "neutral", "contradiction"):
                recs.append({"pair_id": pid, "image": img, "image_id": img_id,
                             "hypothesis": T.snli_hypothesis(objs, label, c.rng), "label": label})
                cols[pid] = _ckey(objs)
                pid += 1
            img_id += 1
        splits[split] = recs
    return _classification_out(splits, "hypothesis", cols, {"acc": round(100 / 3, 2)}, ("dev", "test"),
                               notes="neutral hypotheses state unobservable materials: the "
                                     "image-blind baseline exploits that, as real SNLI-VE's does")


def _classification_out(splits: dict, field: str, cols: dict, chance: dict, evals: tuple,
                        notes: str = "") -> Out:
    idk = "pair_id"
    train = splits["train"]
    base = {}
    for sp in evals:
        ev = splits[sp]
        golds = [r["label"] for r in ev]
        maj = B.majority_label([r["label"] for r in train])

        def keys(r):
            return (r[field], B.template(r[field]))

        def ckeys(r):
            return ((r[field], cols[r[idk]]), (B.template(r[field]), cols[r[idk]])) + keys(r)

        blind = B.backoff_predict([(keys(r), r["label"]) for r in train], [keys(r) for r in ev])
        col = B.backoff_predict([(ckeys(r), r["label"]) for r in train], [ckeys(r) for r in ev])
        base[sp] = {"majority_label": maj, "majority_acc": round(100 * B.accuracy([maj] * len(ev), golds), 2),
                    "blind_acc": round(100 * B.accuracy(blind, golds), 2),
                    "colour_only_acc": round(100 * B.accuracy(col, golds), 2)}
    return Out(splits, sum(len(v) for v in splits.values()), chance, base,
               notes=notes or "blind/colour-only: majority label per text (then per template) in train")


def _video(c: SynthFolder, vid: str, s: Scale) -> tuple[str, list[world.Obj], list[str]]:
    objs = world.sample_scene(c.rng, c.size, n_max=2)
    dirs = [c.rng.choice(world.DIRECTIONS) for _ in objs]
    n_frames = c.rng.randint(*s.frames)
    step = 0.3 * c.size / n_frames
    delta = {"left": (-step, 0), "right": (step, 0), "up": (0, -step), "down": (0, step)}
    for t in range(n_frames):
        frame = [world.moved(o, delta[d][0] * t, delta[d][1] * t, c.size) for o, d in zip(objs, dirs)]
        c.image(f"videos/{vid}/{t:04d}.png", frame)
    return f"videos/{vid}", objs, dirs


def gen_video_retrieval(c: SynthFolder, s: Scale) -> Out:
    recs, item_cols, text_cols = [], [], []
    for i in range(s.videos):
        video, objs, dirs = _video(c, f"video{i:04d}", s)
        cap = world.video_caption(objs, dirs, c.rng)
        recs.append({"video_id": f"video{i:04d}", "video": video, "captions": [cap], "text_ids": [i]})
        item_cols.append(_colours(objs))
        text_cols.append(B.colours_in_text(cap))
    cr = B.colour_match_recall_at_1(text_cols, list(range(len(recs))), item_cols)
    n = len(recs)
    return Out({"test": recs}, n, {"test": {"txt_r1": round(100 / n, 2), "img_r1": round(100 / n, 2)}},
               {"test": {f"colour_only_{k}": round(100 * v, 2) for k, v in cr.items()}},
               notes="1k-A-like: one caption per video; frames are PNG folders")


def gen_video_qa(c: SynthFolder, s: Scale) -> Out:
    splits, cols, qid = {}, {}, 0
    for split, n in (("train", 2 * s.videos), ("test", s.videos)):
        recs = []
        for i in range(n):
            vid = f"{split}{i:04d}"
            if split == "train":  # train videos are only questions: no frames needed on disk
                objs = world.sample_scene(c.rng, c.size, n_max=2)
                dirs = [c.rng.choice(world.DIRECTIONS) for _ in objs]
                video = None
            else:
                video, objs, dirs = _video(c, vid, s)
            for q, a, atype in T.video_questions(objs, dirs, c.rng)[:2]:
                rec = {"question_id": qid, "video_id": vid, "question": q, "answer": a,
                       "answer_type": atype}
                if video:
                    rec["video"] = video
                recs.append(rec)
                cols[qid] = ",".join(sorted(o.colour for o in objs))
                qid += 1
        splits[split] = recs
    train, test = splits.pop("train"), splits["test"]
    golds = [r["answer"] for r in test]
    maj = B.majority_label([r["answer"] for r in train])
    blind = B.backoff_predict([((r["question"],), r["answer"]) for r in train], [(r["question"],) for r in test])

    def ck(r):
        return ((r["question"], cols[r["question_id"]]), r["question"])

    col = B.backoff_predict([(ck(r), r["answer"]) for r in train], [ck(r) for r in test])
    answer_list = _by_frequency([r["answer"] for r in train])
    return Out(splits, len(test), {"test": {"acc": round(100 / len(answer_list), 2)}},
               {"test": {"majority_answer": maj, "majority_acc": round(100 * B.accuracy([maj] * len(test), golds), 2),
                         "blind_acc": round(100 * B.accuracy(blind, golds), 2),
                         "colour_only_acc": round(100 * B.accuracy(col, golds), 2)}},
               notes="zero-shot test; answer_list.json = answers of a (not written) training set, "
                     "like train_ans2label.json; baselines fitted on that training set",
               answer_list=answer_list)


def gen_video_caption(c: SynthFolder, s: Scale, train_caps: list[str]) -> Out:
    recs, scenes = [], {}
    for i in range(s.videos):
        video, objs, dirs = _video(c, f"v{i:04d}", s)
        recs.append({"video_id": f"v{i:04d}", "video": video,
                     "captions": [world.video_caption(objs, dirs, c.rng) for _ in range(10)]})
        scenes[f"v{i:04d}"] = objs
    refs = {r["video_id"]: r["captions"] for r in recs}
    const = B.majority_label(train_caps)
    colour_only = {k: " and ".join(f"a {o.colour} shape moves" for o in scenes[k]) for k in refs}
    return Out({"test": recs}, 10 * len(recs), {},
               {"test": {"blind_constant_caption": const,
                         "blind_constant_cider": B.cider({k: const for k in refs}, refs),
                         "colour_only_cider": B.cider(colour_only, refs)}},
               notes="zero-shot; blind caption = most common coco_caption train caption")


# ---------------------------------------------------------------------------------------------
# Orchestration


FILE_LIST = ".synth-files"  # every file synth wrote, relative to the world (the only ones it may delete)


def generate(out: str | os.PathLike, seed: int = 0, scale: str = "tiny", progress: bool = True) -> dict:
    """Write the synthetic world to `out` (replacing a previous synthetic world there) and
    return the manifest. Refuses to overwrite a non-empty folder that is not a synthetic world,
    and a world holding files synth did not write (they would be deleted with it)."""
    from tqdm import tqdm

    if scale not in SCALES:
        raise DataError(f"unknown scale '{scale}'; choose one of {sorted(SCALES)}")
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / "manifest.json").is_file() \
            and not (out / FILE_LIST).is_file():
        raise DataError(f"{out}: exists, is not empty and holds no manifest.json; refusing to "
                        f"replace it. Choose another --out or remove it")
    s = SCALES[scale]
    t0 = time.perf_counter()
    _remove_stale_stages(out)
    stage = out.parent / f".{out.name}.synth-tmp-{os.getpid()}"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    try:
        manifest = _generate_into(stage, seed, scale, s, tqdm, progress)
        written = sorted(str(p.relative_to(stage)) for p in stage.rglob("*") if p.is_file())
        atomic_write_text(stage / FILE_LIST, "".join(f + "\n" for f in written + [FILE_LIST]))
        _refuse_foreign_files(out, set(written) | {FILE_LIST})
        _swap_into_place(stage, out)
    finally:
        if stage.exists():
            shutil.rmtree(stage)
    manifest["_elapsed_s"] = round(time.perf_counter() - t0, 2)  # returned only, not written
    return manifest


def _generate_into(root: Path, seed: int, scale: str, s: Scale, tqdm: Any, progress: bool) -> dict:
    outs: dict[str, Out] = {}
    folders: dict[str, SynthFolder] = {}

    def folder(name: str) -> SynthFolder:
        folders[name] = SynthFolder(root, name, seed, s.image_size)
        return folders[name]

    steps: list[tuple[str, Callable[[], Out]]] = [
        ("pretrain_4m", lambda: gen_pretrain_4m(folder("pretrain_4m"), s)),
        ("pretrain_14m", lambda: gen_pretrain_14m(folder("pretrain_14m"), s, outs["pretrain_4m"].splits["train"])),
        ("coco_caption", lambda: gen_coco_caption(folder("coco_caption"), s)),
        ("nocaps", lambda: gen_nocaps(folder("nocaps"), s, _train_caps(outs))),
        ("vqa", lambda: gen_vqa(folder("vqa"), s)),
        ("coco_retrieval", lambda: gen_retrieval(folder("coco_retrieval"), s.retrieval_coco)),
        ("flickr_retrieval", lambda: gen_retrieval(folder("flickr_retrieval"), s.retrieval_flickr)),
        ("refcoco", lambda: gen_grounding(folder("refcoco"), s, "refcoco")),
        ("refcoco+", lambda: gen_grounding(folder("refcoco+"), s, "refcoco+")),
        ("refcocog", lambda: gen_grounding(folder("refcocog"), s, "refcocog")),
        ("nlvr2", lambda: gen_nlvr2(folder("nlvr2"), s)),
        ("snli_ve", lambda: gen_snli_ve(folder("snli_ve"), s)),
        ("msrvtt_retrieval", lambda: gen_video_retrieval(folder("msrvtt_retrieval"), s)),
        ("msrvtt_qa", lambda: gen_video_qa(folder("msrvtt_qa"), s)),
        ("msvd_qa", lambda: gen_video_qa(folder("msvd_qa"), s)),
        ("vatex_caption", lambda: gen_video_caption(folder("vatex_caption"), s, _train_caps(outs))),
    ]
    datasets = {}
    for name, fn in tqdm(steps, desc="synth", disable=not progress, unit="dataset"):
        outs[name] = o = fn()
        datasets[name] = _write_dataset(folders[name], o)
    words = world.world_words()
    toks = vocab.write_vocab(root / "vocab.txt", words)
    manifest = {
        "format_version": formats.FORMAT_VERSION, "generator": GENERATOR, "seed": seed,
        "scale": scale, "image_size": s.image_size, "counts": asdict(s),
        "vocab": {"file": "vocab.txt", "size": len(toks), "sha256": sha256_file(root / "vocab.txt")},
        "world": {"colours": sorted(world.COLOURS), "shapes": list(world.SHAPES),
                  "sizes": list(world.SIZES), "columns": list(world.COLUMNS),
                  "held_out_combinations": [list(x) for x in sorted(world.HELD_OUT)]},
        "datasets": datasets,
    }
    atomic_write_json(root / "manifest.json", manifest)
    return manifest


def _train_caps(outs: dict[str, Out]) -> list[str]:
    return [x for r in outs["coco_caption"].splits["train"] for x in r["captions"]]


def _write_dataset(c: SynthFolder, o: Out) -> dict:
    spec = formats.DATASETS[c.name]
    assert tuple(o.splits) == spec.splits, (c.name, tuple(o.splits), spec.splits)
    splits = {}
    for split, recs in o.splits.items():
        path = formats.split_path(c.dir, split)
        n = formats.write_records(path, spec.schema, recs)
        splits[split] = {"file": f"{c.name}/{path.name}", "records": n, "sha256": sha256_file(path)}
    extra_files = []
    if o.answer_list is not None:
        formats.write_answer_list(c.dir / "answer_list.json", o.answer_list)
        extra_files.append(f"{c.name}/answer_list.json")
    if (c.dir / "shards.txt").is_file():
        extra_files.append(f"{c.name}/shards.txt")
    stats = formats.make_stats(c.name, "synthetic", images_expected=c.n_images,
                               images_obtained=c.n_images, texts_expected=o.n_texts,
                               texts_obtained=o.n_texts,
                               splits={k: v["records"] for k, v in splits.items()},
                               split_texts={k: sum(map(formats.record_texts, recs)) for k, recs in o.splits.items()})
    formats.write_stats(c.dir, stats)
    return {"dir": c.name, "schema": spec.schema, "splits": splits, "files": extra_files,
            "images": c.n_images, "texts": o.n_texts, "chance": o.chance, "baselines": o.baselines,
            "notes": o.notes}


def _remove_stale_stages(out: Path) -> None:
    """Staging and trash folders of synth runs that were killed (their process is gone)."""
    for prefix in (f".{out.name}.synth-tmp-", f".{out.name}.synth-old-"):
        for folder in out.parent.glob(prefix + "*") if out.parent.is_dir() else ():
            pid = folder.name[len(prefix):]
            if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
                log.info("removing %s, left by a synth run that was killed", folder)
                shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _refuse_foreign_files(out: Path, new: set[str]) -> None:
    """Replacing `out` deletes it: only if every file there is one synth wrote (listed in the old
    world's FILE_LIST; a world without one, from an older synth, is compared with this one)."""
    if not out.is_dir():
        return
    listed = out / FILE_LIST
    ours = set(listed.read_text(encoding="utf-8").split("\n")) if listed.is_file() else new
    foreign = sorted(str(p.relative_to(out)) for p in out.rglob("*")
                     if p.is_file() and str(p.relative_to(out)) not in ours)
    if foreign:
        more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        raise DataError(f"{out}: holds files synth did not write ({', '.join(foreign[:5])}{more}); "
                        "replacing the world would delete them. Move them elsewhere or choose "
                        "another --out; nothing was changed")


def _swap_into_place(stage: Path, out: Path) -> None:
    """Replace `out` by `stage` with renames, so `out` is always either old or new, whole."""
    if out.exists():
        trash = out.parent / f".{out.name}.synth-old-{os.getpid()}"
        os.replace(out, trash)
        os.replace(stage, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(stage, out)


def read_manifest(data_dir: str | os.PathLike) -> dict:
    """The synthetic world's manifest, or a DataError saying how to make it."""
    path = Path(data_dir) / "manifest.json"
    if not path.is_file():
        raise DataError(f"{path}: not found. Make the synthetic world with "
                        f"`mplug data synth --out {data_dir}` (Snakemake rule `synth`), or "
                        f"preprocess real data with `mplug data preprocess DATASET --out {data_dir}`")
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}: invalid JSON ({err.msg}); rerun `mplug data synth`") from None
