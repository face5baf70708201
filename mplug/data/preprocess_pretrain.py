"""Pre-training corpora (Table 12): 4M = COCO + VG + SBU + CC3M, 14M = 4M + CC12M.

COCO and VG become JSONL pairs over loose images; SBU/CC3M/CC12M stay in the webdataset shards
img2dataset wrote (listed in shards.txt). stats.json gets a `components` table with, per
corpus, the images and texts actually obtained next to the paper's Table 12 counts.
"""
from __future__ import annotations

from pathlib import Path

from mplug.data import formats, webshards
from mplug.data.preprocess_common import MediaChecker, PreprocessRun, Split, get, load_json, log, rel
from mplug.data.preprocess_image import _coco_image, _karpathy, _karpathy_split, load_refs
from mplug.data.sources import SOURCES
from mplug.errors import DataError
from mplug.utils.io import atomic_write_text

COMPONENTS = {"pretrain_4m": ("coco", "vg", "sbu", "cc3m"), "pretrain_14m": ("coco", "vg", "sbu", "cc3m", "cc12m")}


def _coco_pairs(ctx: PreprocessRun, folder: Path, checker: MediaChecker, split: Split) -> set:
    """Karpathy train + restval, one pair per caption (113K images / 567K texts in the paper).
    Returns the COCO ids of the Karpathy val/test images (VG must not leak them)."""
    held_out = set()
    for img in ctx.bar(_karpathy(ctx, "coco_karpathy", "dataset_coco.json"), "pretrain coco"):
        if _karpathy_split(img["split"]) != "train":
            held_out.add(img.get("cocoid"))
            continue
        path = _coco_image(ctx, img)
        ok = checker.ok(path)
        for s in img["sentences"]:
            text = s.get("raw", "").strip()
            if text:
                _add(split, {"image": rel(path, folder), "image_id": f"coco_{img.get('cocoid')}",
                             "caption": text, "source": "coco"}, ok)
    return held_out


def _refcoco_plus_eval_images(ctx: PreprocessRun) -> set:
    path = ctx.maybe("refcoco_plus", "refcoco+/refs(unc).p")
    return {r["image_id"] for r in load_refs(path) if r.get("split") != "train"} if path else set()


def _vg_pairs(ctx: PreprocessRun, folder: Path, checker: MediaChecker, split: Split, coco_held_out: set) -> dict:
    """Region descriptions, with the ALBEF filters that are known: no image of the COCO Karpathy
    val/test or RefCOCO+ eval sets, and no duplicate phrase per image (ALBEF issue #2; its area
    threshold and fourth filter were never published, so they are not applied)."""
    regions_path = ctx.need("vg", "region_descriptions.json")
    image_data = ctx.maybe("vg", "image_data.json")
    banned_coco = coco_held_out | _refcoco_plus_eval_images(ctx)
    vg_to_coco = {}
    if image_data:
        vg_to_coco = {get(im, "image_id", f"{image_data}: [{i}]"): im.get("coco_id")
                      for i, im in enumerate(load_json(image_data))}
    vg = ctx.src / "vg"
    excluded = duplicates = 0
    for i, img in enumerate(ctx.bar(load_json(regions_path), "pretrain vg")):
        where = f"{regions_path}: [{i}]"
        image_id = get(img, "id", where, int)
        if vg_to_coco.get(image_id) is not None and vg_to_coco[image_id] in banned_coco:
            excluded += 1
            continue
        path = vg / "VG_100K" / f"{image_id}.jpg"
        if not path.exists() and (vg / "VG_100K_2" / f"{image_id}.jpg").exists():
            path = vg / "VG_100K_2" / f"{image_id}.jpg"
        ok, seen = checker.ok(path), set()
        for j, region in enumerate(get(img, "regions", where, list)):
            phrase = get(region, "phrase", f"{where}.regions[{j}]", str).strip()
            if not phrase or phrase.lower() in seen:
                duplicates += bool(phrase)
                continue
            seen.add(phrase.lower())
            _add(split, {"image": rel(path, folder), "image_id": f"vg_{image_id}", "caption": phrase,
                         "source": "vg"}, ok)
    return {"images_excluded_eval_overlap": excluded, "duplicate_phrases_dropped": duplicates,
            "eval_overlap_filter": "applied" if image_data else "not applied (image_data.json missing)"}


def _add(split: Split, rec: dict, ok: bool) -> None:
    split.texts_expected += 1
    if ok:
        split.records.append(rec)
        split.texts_obtained += 1


def _webscale(ctx: PreprocessRun, name: str) -> tuple[list[Path], dict]:
    shards_dir = ctx.src / name / "shards"
    try:
        shards = webshards.list_shards(shards_dir)
    except DataError:
        raise DataError(f"{shards_dir}: no webdataset shards; run `mplug data download {name} --dest {ctx.src}` "
                        f"(needs img2dataset, envs/data.yaml)") from None
    got = webshards.count_shard_samples(shards_dir)
    attempted = webshards.img2dataset_stats(shards_dir)["count"] or got["samples"]
    return shards, {"images_expected": attempted, "images_obtained": got["images"],
                    "texts_expected": attempted, "texts_obtained": got["texts"]}


def pretrain(ctx: PreprocessRun, dataset: str) -> dict:
    folder = ctx.out / dataset
    components, split, shard_paths, extra = {}, Split(), [], {}
    checker = MediaChecker(ctx.check)
    for name in COMPONENTS[dataset]:
        paper = SOURCES[name].paper_counts
        if name in ("coco", "vg"):
            part, part_checker = Split(), MediaChecker(ctx.check)
            if name == "coco":
                held_out = _coco_pairs(ctx, folder, part_checker, part)
            else:
                extra["vg_filters"] = _vg_pairs(ctx, folder, part_checker, part, held_out)
            split.records += part.records
            split.texts_expected += part.texts_expected
            split.texts_obtained += part.texts_obtained
            checker.seen.update(part_checker.seen)
            checker.failures.update(part_checker.failures)
            comp = {"images_expected": part_checker.expected, "images_obtained": part_checker.obtained,
                    "texts_expected": part.texts_expected, "texts_obtained": part.texts_obtained}
        else:
            shards, comp = _webscale(ctx, name)
            shard_paths += shards
        comp.update(paper_images=paper.get("images"), paper_texts=paper.get("texts"))
        components[name] = comp
        log.info("%s/%s: %d images, %d texts (paper: %s / %s)", dataset, name, comp["images_obtained"],
                 comp["texts_obtained"], paper.get("images"), paper.get("texts"))
    counts = {"train": formats.write_records(formats.split_path(folder, "train"), "pretrain", split.records)}
    if shard_paths:
        atomic_write_text(folder / "shards.txt", "".join(rel(p, folder) + "\n" for p in shard_paths))
    totals = {k: sum(c[k] for c in components.values()) for k in
              ("images_expected", "images_obtained", "texts_expected", "texts_obtained")}
    failed = totals["images_expected"] - totals["images_obtained"]
    stats = formats.make_stats(dataset, "+".join(COMPONENTS[dataset]), splits=counts, **totals,
                               image_failure_rate=round(failed / totals["images_expected"], 6)
                               if totals["images_expected"] else 0.0,
                               failures_by_reason=dict(sorted(checker.failures.items())), check=ctx.check,
                               components=components, shards=len(shard_paths), **extra)
    formats.write_stats(folder, stats)
    return stats


CONVERTERS = {"pretrain_4m": lambda ctx: pretrain(ctx, "pretrain_4m"),
              "pretrain_14m": lambda ctx: pretrain(ctx, "pretrain_14m")}
