"""Torch datasets per task, reading only the normalised format (mplug/data/README.md).

Entry points: `build_dataset(task, data_dir, split, tokenizer, image_res, train, **opts)` and
`build_loader(...)` (a DataLoader with the task's collate function).

Bad input never crashes an epoch: a missing, zero-byte or corrupt image (or unreadable video) is
skipped, counted in `dataset.bad_images` (and listed in `dataset.bad_paths`), and the next
index is used instead, deterministically. Each example's `meta["skipped_bad"]` also carries
the count, so a training loop with worker processes can sum it from batches
(`collate.count_bad(batch)`); `dataset.summary()` reports it at the end of an epoch.
Evaluation passes `strict=True` instead: a bad input is a DataError naming the file, because
replacing a test example with its neighbour would silently change the metric.

The evaluator (mplug/eval/run.py) reads every split through these classes in eval mode
(`train=False`) and the task's `Collator`, so training and evaluation encode inputs one way.
"""
from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, IterableDataset

from mplug.data import formats
from mplug.data.images import open_rgb
from mplug.data.transforms import TransformConfig, build_transform, resize_pad
from mplug.errors import DataError
from mplug.utils.logging import get_logger

log = get_logger("mplug.data")
MAX_REPLACEMENTS = 50


class BadSample(Exception):
    """The example's image/video cannot be used."""


def pre_caption(text: str, max_words: int = 30) -> str:
    """Official ALBEF/mPLUG caption normalisation: lower-case, drop punctuation, truncate."""
    text = re.sub(r"([,.'!?\"()*#:;~])", "", text.lower())
    text = re.sub(r"\s{2,}", " ", text.replace("-", " ").replace("/", " ").replace("<person>", "person"))
    words = text.strip().split(" ")
    return " ".join(words[:max_words])


def pre_question(text: str, max_words: int = 50) -> str:
    text = re.sub(r"([,.'!?\"()*#:;~])", "", text.lower()).replace("-", " ").replace("/", " ")
    return " ".join(text.rstrip(" ").split(" ")[:max_words])


def resolve_dataset_dir(task: str, data_dir: str | Path, dataset: str | None = None) -> Path:
    """`data_dir` may be the run's data root (holding dataset folders) or a dataset folder."""
    data_dir = Path(data_dir)
    name = dataset or formats.data_task(task).dataset
    if (data_dir / name).is_dir():
        return data_dir / name
    if any(data_dir.glob("*.jsonl")) or (data_dir / "shards.txt").is_file():
        return data_dir
    raise DataError(f"{data_dir / name}: dataset folder not found. Make it with "
                    f"`mplug data synth --out {data_dir}` (Snakemake rule `synth`) for the synthetic "
                    f"world, or `mplug data preprocess {name} --src resources/ --out {data_dir}` "
                    f"(rule `preprocess`) for real data")


class TaskDataset(Dataset):
    """Shared machinery: records, image loading with bad-input replacement, counters."""

    task = ""
    schema = ""

    def __init__(self, root: Path, split: str, image_res: int, train: bool, **opts: Any):
        self.root = Path(root)
        self.split = split
        self.image_res = image_res
        self.train = train
        self.opts = opts
        path = formats.split_path(self.root, split)
        if not path.is_file():
            have = sorted(p.stem for p in self.root.glob("*.jsonl"))
            raise DataError(f"{path}: split '{split}' not found (this dataset has: "
                            f"{', '.join(have) or 'no splits'}); rerun the synth/preprocess step")
        self.records = formats.read_records(path, self.schema)
        if opts.get("limit"):  # the first N records (evaluation --limit, debugging)
            self.records = self.records[: int(opts["limit"])]
        if not self.records:
            raise DataError(f"{path}: no records")
        self.strict = bool(opts.get("strict", False))
        self.bad_images = 0
        self.bad_paths: list[str] = []
        self.transform = build_transform(TransformConfig(
            image_res, train, pretrain=opts.get("pretrain", False),
            flip=opts.get("flip", self.default_flip), randaugment=opts.get("randaugment", True)))
        self.items = self.build_items()

    default_flip = True

    def build_items(self) -> list:
        return list(range(len(self.records)))

    def __len__(self) -> int:
        return len(self.items)

    def load_image(self, rel: str):
        from PIL import UnidentifiedImageError

        path = formats.resolve_path(self.root, rel)
        try:
            if path.stat().st_size == 0:
                raise BadSample(f"{path}: zero-byte image")
            return open_rgb(path)
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as err:
            raise BadSample(f"{path}: {type(err).__name__}: {err}") from None

    def __getitem__(self, i: int) -> dict:
        skipped = 0
        for k in range(MAX_REPLACEMENTS):
            j = (i + k) % len(self.items)  # deterministic replacement: the next example
            try:
                ex = self.get(j)
                ex["meta"]["skipped_bad"] = skipped
                return ex
            except BadSample as err:
                if self.strict:
                    raise DataError(f"{self.root}/{self.split}.jsonl example {j}: {err}; fix "
                                    "or re-download the file and rerun the preprocess step") from None
                skipped += 1
                self.bad_images += 1
                self.bad_paths.append(str(err))
                log.warning("skipping bad input (%d so far): %s", self.bad_images, err)
        raise DataError(f"{self.root}: {MAX_REPLACEMENTS} consecutive unreadable images from index "
                        f"{i}; the dataset looks broken, rerun its preprocess step. Last: {self.bad_paths[-1]}")

    def get(self, j: int) -> dict:
        raise NotImplementedError

    def summary(self) -> dict:
        """End-of-epoch report of bad inputs (also logged)."""
        out = {"dataset": str(self.root), "split": self.split, "examples": len(self),
               "bad_images": self.bad_images, "bad_paths": self.bad_paths[:20]}
        if self.bad_images:
            log.warning("%s/%s: %d bad images skipped", self.root.name, self.split, self.bad_images)
        return out


class PretrainDataset(TaskDataset):
    task, schema = "pretrain", "pretrain"

    def build_items(self) -> list:
        ids: dict = {}
        self.image_index = [ids.setdefault(r["image"], len(ids)) for r in self.records]
        return list(range(len(self.records)))

    def get(self, j: int) -> dict:
        r = self.records[j]
        return {"image": self.transform(self.load_image(r["image"])),
                "text": pre_caption(r["caption"], self.opts.get("max_words", 30)),
                "image_idx": self.image_index[j], "meta": {"image_id": r["image_id"]}}


class CaptionDataset(TaskDataset):
    """train: one example per (image, caption); eval: one per image with all references."""

    task, schema = "caption", "caption"

    def build_items(self) -> list:
        if self.train:
            return [(i, k) for i, r in enumerate(self.records) for k in range(len(r["captions"]))]
        return [(i, None) for i in range(len(self.records))]

    def get(self, j: int) -> dict:
        i, k = self.items[j]
        r = self.records[i]
        ex = {"image": self.transform(self.load_image(r["image"])),
              "meta": {"image_id": r["image_id"], "references": r["captions"],
                       **({"domain": r["domain"]} if "domain" in r else {})}}
        if k is not None:  # official: caption.lower() + '[SEP]', optional prompt before it
            ex["target"] = self.opts.get("prompt", "") + r["captions"][k].lower()
        return ex


class NocapsDataset(CaptionDataset):
    task, schema = "nocaps", "nocaps"


class VQADataset(TaskDataset):
    task, schema = "vqa", "vqa"

    def build_items(self) -> list:
        if self.train and self.opts.get("include_vg", True) and self.split == "train":
            vg = formats.split_path(self.root, "vg_qa")
            if vg.is_file():
                self.records = self.records + formats.read_records(vg, "vqa")
        return list(range(len(self.records)))

    def get(self, j: int) -> dict:
        r = self.records[j]
        q = pre_question(r["question"]) if self.opts.get("normalise_question", False) else r["question"]
        ex = {"image": self.transform(self.load_image(r["image"])), "text": q,
              "meta": {"question_id": r["question_id"], "answers": r["answers"],
                       "answer_type": r.get("answer_type")}}
        if self.train:
            ex["answers"], ex["weights"] = answer_weights(r, self.opts.get("vg_weight", 0.5))
        return ex


def answer_weights(rec: dict, vg_weight: float = 0.5) -> tuple[list[str], list[float]]:
    """Official dataset/vqa_dataset.py: each distinct VQA answer weighs count / #annotators;
    each VG-QA answer weighs `vg_weight` (0.5 in mPLUG/ALBEF, 0.2 in BLIP)."""
    weights: dict[str, float] = {}
    for a in rec["answers"]:
        if rec.get("dataset", "vqa") == "vg":
            weights[a] = vg_weight
        else:
            weights[a] = weights.get(a, 0.0) + 1.0 / len(rec["answers"])
    return list(weights), list(weights.values())


class RetrievalDataset(TaskDataset):
    """train: one example per (image, caption) with image_idx; eval: one per image, the texts
    in `self.texts` with `txt2img` / `img2txt` (as ALBEF re_eval_dataset)."""

    task, schema = "retrieval", "retrieval"

    def build_items(self) -> list:
        self.texts, self.txt2img, self.img2txt, self.text_ids = [], [], [], []
        for i, r in enumerate(self.records):
            self.img2txt.append(list(range(len(self.texts), len(self.texts) + len(r["captions"]))))
            for cap, tid in zip(r["captions"], r["text_ids"]):
                self.texts.append(pre_caption(cap, self.opts.get("max_words", 30)))
                self.txt2img.append(i)
                self.text_ids.append(tid)
        if self.train:
            return list(range(len(self.texts)))
        return list(range(len(self.records)))

    def get(self, j: int) -> dict:
        i = self.txt2img[j] if self.train else j
        r = self.records[i]
        ex = {"image": self.transform(self.load_image(r["image"])), "image_idx": i,
              "meta": {"image_id": r["image_id"]}}
        if self.train:
            ex["text"] = self.texts[j]
            ex["meta"]["text_id"] = self.text_ids[j]
        return ex


class GroundingDataset(TaskDataset):
    task, schema = "grounding", "grounding"
    default_flip = False  # expressions say left/right

    def get(self, j: int) -> dict:
        r = self.records[j]
        img = self.load_image(r["image"])
        if img.size != (r["width"], r["height"]):
            raise BadSample(f"{r['image']}: size {img.size} differs from the record's "
                            f"{r['width']}x{r['height']}")
        tensor, box, info = resize_pad(img, r["box"], self.image_res, train=self.train,
                                       translate=self.opts.get("translate", True))
        return {"image": tensor, "text": r["expression"], "box": box,
                "meta": {"ref_id": r["ref_id"], "image_id": r.get("image_id"), "box_xywh": r["box"],
                         "width": r["width"], "height": r["height"], "pad": info}}


class NLVR2Dataset(TaskDataset):
    task, schema = "nlvr2", "nlvr2"
    default_flip = False  # statements say left/right

    def get(self, j: int) -> dict:
        r = self.records[j]
        imgs = [self.transform(self.load_image(r["image_left"])),
                self.transform(self.load_image(r["image_right"]))]
        text = r["statement"]
        # official nlvr_dataset: in training, swap the images and the words left/right with p=0.5
        if self.train and random.random() < self.opts.get("swap_prob", 0.5):
            imgs = imgs[::-1]
            text = _swap_left_right(text)
        return {"image": imgs, "text": text, "label": int(r["label"]),
                "meta": {"pair_id": r["pair_id"]}}


def _swap_left_right(text: str) -> str:
    return " ".join({"left": "right", "right": "left"}.get(w, w) for w in text.split(" "))


SNLI_LABELS = {"contradiction": 0, "neutral": 1, "entailment": 2}


class SNLIVEDataset(TaskDataset):
    task, schema = "snli_ve", "snli_ve"

    def get(self, j: int) -> dict:
        r = self.records[j]
        return {"image": self.transform(self.load_image(r["image"])), "text": r["hypothesis"],
                "label": SNLI_LABELS[r["label"]], "meta": {"pair_id": r["pair_id"]}}


class VideoDataset(TaskDataset):
    """Video tasks: `image` is (F, 3, H, W); frames resized directly to res x res (official)."""

    default_flip = False

    def get(self, j: int) -> dict:
        from mplug.data.video import BadVideo, load_video

        r = self.records[j]
        try:
            frames, info = load_video(r, self.root, self.opts.get("num_frames", 8), self.strict)
        except BadVideo as err:
            raise BadSample(f"video {r['video_id']}: {err}") from None
        import torch

        ex = {"image": torch.stack([self.transform(f) for f in frames]),  # (F, 3, H, W)
              "meta": {"video_id": r["video_id"], **info}}
        if self.schema == "video_qa":
            ex["text"] = r["question"]
            ex["meta"].update(question_id=r["question_id"], answer=r["answer"])
        elif self.schema == "video_caption":
            ex["meta"]["references"] = r["captions"]
        else:
            ex["meta"]["text_ids"] = r["text_ids"]
        return ex


class VideoRetrievalDataset(VideoDataset):
    task, schema = "video_retrieval", "video_retrieval"

    def build_items(self) -> list:
        self.texts, self.txt2img, self.img2txt = [], [], []
        for i, r in enumerate(self.records):
            self.img2txt.append(list(range(len(self.texts), len(self.texts) + len(r["captions"]))))
            self.texts += [pre_caption(c) for c in r["captions"]]
            self.txt2img += [i] * len(r["captions"])
        return list(range(len(self.records)))

    def get(self, j: int) -> dict:
        ex = super().get(j)
        ex["image_idx"] = j
        return ex


class VideoQADataset(VideoDataset):
    task, schema = "video_qa", "video_qa"


class VideoCaptionDataset(VideoDataset):
    task, schema = "video_caption", "video_caption"


def dataset_class(task: str) -> type[TaskDataset]:
    """The class reading a task's records: its registry spec's `dataset_class`, defined here."""
    return globals()[formats.data_task(task).dataset_class]


def load_answer_list(task: str, data_dir: str | Path, dataset: str | None = None) -> list[str]:
    """Candidate answers for VQA / video QA ranking (`answer_list.json`)."""
    return formats.read_answer_list(resolve_dataset_dir(task, data_dir, dataset) / "answer_list.json")


# ---------------------------------------------------------------------------------------------
# Pretraining from webdataset shards (img2dataset output: {key}.jpg/.txt/.json per sample)


def read_shard_list(root: Path) -> list[Path]:
    """Shard paths from `shards.txt` (one path per line, relative to the dataset folder)."""
    path = root / "shards.txt"
    if not path.is_file():
        return []
    shards = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        p = formats.resolve_path(root, line)
        if not p.is_file():
            raise DataError(f"{path}:{lineno}: shard {p} not found; rerun the download/preprocess step")
        shards.append(p)
    return shards


class PretrainShardDataset(IterableDataset):
    """JSONL pairs (if any) followed by the samples of webdataset shards, split across
    DataLoader workers; corrupt samples are skipped and counted like bad images.

    Training order (`train=True`): every epoch the JSONL pairs are permuted and the shard order is
    shuffled, then a `shuffle_buffer`-sample buffer mixes the shards' samples (webdataset's
    shuffle), all seeded by (seed, epoch) through `set_epoch`, so every rank and every resumed run
    sees the same order (ranks take every world-th batch of one stream). Without it the stream
    repeats file order, and an image's captions, stored side by side, land in the same batch as
    ITC negatives. `image_idx` is fixed per sample (position of its shard in the list + index in
    the shard), whatever the order."""

    def __init__(self, root: Path, shards: list[Path], image_res: int, train: bool,
                 shuffle_buffer: int = 1000, **opts: Any):
        self.root, self.shards, self.opts, self.train = root, shards, opts, train
        self.shuffle_buffer = shuffle_buffer
        self.seed, self.epoch = 0, 0
        self.jsonl = (PretrainDataset(root, "train", image_res, train, pretrain=True, **opts)
                      if formats.split_path(root, "train").is_file() else None)
        self.transform = build_transform(TransformConfig(image_res, train, pretrain=True,
                                                         flip=opts.get("flip", True),
                                                         randaugment=opts.get("randaugment", True)))
        self.bad_images = 0
        counts = [_count_tar_samples(p) for p in shards]
        self.n_shard_samples = sum(counts)
        self.shard_start = [sum(counts[:i]) for i in range(len(counts))]  # stable image ids

    def set_epoch(self, epoch: int, seed: int = 0) -> None:
        """Select the order of the next iteration (call before creating the DataLoader iterator:
        its workers copy the dataset then)."""
        self.epoch, self.seed = int(epoch), int(seed)

    def __len__(self) -> int:
        return (len(self.jsonl) if self.jsonl else 0) + self.n_shard_samples

    def _epoch_seed(self) -> int:
        """One seed per (seed, epoch): the same on every rank and in a resumed run."""
        return self.seed * 1_000_003 + self.epoch

    def __iter__(self):
        import webdataset as wds

        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        if self.jsonl is not None:
            order = list(range(len(self.jsonl)))
            if self.train:
                random.Random(self._epoch_seed() * 7_919).shuffle(order)
            for i in order[wid::nw]:
                yield self.jsonl[i]
        offset = (max(self.jsonl.image_index) + 1) if self.jsonl else 0  # shard image ids follow
        shard_ids = list(range(len(self.shards)))
        if self.train:
            random.Random(self._epoch_seed() * 7_919 + 1).shuffle(shard_ids)
        samples = self._shard_records(shard_ids[wid::nw], offset)
        if self.train and self.shuffle_buffer > 1:
            samples = wds.shuffle(self.shuffle_buffer, initial=self.shuffle_buffer,
                                  seed=self._epoch_seed() * 31 + wid)(samples)  # one buffer per worker
        # decoded and augmented only as they leave the buffer: the augmentation's draws from the
        # global RNG then follow the training steps, so a run resumed mid-epoch (which replays
        # the stream up to its step and restores the RNG) draws the same ones as the original
        for record in samples:
            sample = self._decode(record)
            if sample is not None:
                yield sample

    def _shard_records(self, shard_ids: list[int], offset: int):
        """The raw samples (image bytes, caption bytes, image_idx) of the shards in that order."""
        import webdataset as wds

        for s in shard_ids:
            for n, sample in enumerate(wds.WebDataset([str(self.shards[s])], shardshuffle=False,
                                                      empty_check=False)):
                yield {"key": sample.get("__key__", "?"),
                       "image": sample.get("jpg") or sample.get("png") or sample.get("jpeg"),
                       "txt": sample.get("txt") or b"", "image_idx": offset + self.shard_start[s] + n}

    def _decode(self, record: dict) -> dict | None:
        """The training sample of a raw record; None (counted, logged) when it is bad."""
        import io

        try:
            if not record["image"]:
                raise OSError("no image member")
            img = open_rgb(io.BytesIO(record["image"]))
            caption = record["txt"].decode("utf-8").strip()
            if not caption:
                raise ValueError("empty caption")
        except (OSError, ValueError) as err:
            self.bad_images += 1
            log.warning("skipping bad shard sample %s: %s", record["key"], err)
            return None
        return {"image": self.transform(img), "text": pre_caption(caption, self.opts.get("max_words", 30)),
                "image_idx": record["image_idx"], "meta": {"image_id": record["key"], "skipped_bad": 0}}

    def summary(self) -> dict:
        return {"dataset": str(self.root), "split": "train", "examples": len(self),
                "bad_images": self.bad_images + (self.jsonl.bad_images if self.jsonl else 0)}


def _count_tar_samples(path: Path) -> int:
    import tarfile

    keys = set()
    try:
        with tarfile.open(path) as tar:
            for m in tar:
                if m.isfile():
                    keys.add(m.name.rsplit(".", 1)[0])
    except tarfile.TarError as err:
        raise DataError(f"{path}: not a readable tar shard ({err}); re-download it") from None
    return len(keys)


# ---------------------------------------------------------------------------------------------
# Entry points


def build_dataset(task: str, data_dir: str | Path, split: str, tokenizer: Any = None,
                  image_res: int = 224, train: bool = False, **opts: Any):
    """The dataset of `task` / `split` under `data_dir` (run data root or dataset folder).

    opts: dataset= (folder override, e.g. "refcoco+" or "pretrain_14m"), num_frames (video, 8),
    flip, randaugment, translate (grounding), prompt (caption), include_vg / vg_weight (vqa),
    normalise_question (vqa, default False as official), swap_prob (nlvr2), max_words,
    limit (first N records), strict (bad input raises DataError instead of being replaced).
    The tokenizer is used by the collate function (see `build_loader`); it is accepted here so
    every caller passes the same arguments.
    """
    cls = dataset_class(task)
    dataset = opts.pop("dataset", None)
    if task == "pretrain" and dataset is None:
        dataset = opts.pop("stage", None) or "pretrain_4m"
    root = resolve_dataset_dir(task, data_dir, dataset)
    if task == "pretrain":
        shards = read_shard_list(root)
        if shards and split == "train":
            return PretrainShardDataset(root, shards, image_res, train, **opts)
        opts.setdefault("pretrain", True)
    return cls(root, split, image_res, train, **opts)


def build_loader(task: str, data_dir: str | Path, split: str, tokenizer: Any, image_res: int,
                 train: bool, batch_size: int, num_workers: int = 0, seed: int = 0,
                 collate_opts: dict | None = None, **opts: Any):
    """(DataLoader, dataset): shuffled (seeded) when training, task collate with the tokenizer."""
    from torch.utils.data import DataLoader

    from mplug.data.collate import Collator

    ds = build_dataset(task, data_dir, split, tokenizer, image_res, train, **opts)
    iterable = isinstance(ds, IterableDataset)
    gen = torch.Generator().manual_seed(seed)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=train and not iterable,
                        num_workers=num_workers, generator=None if iterable else gen,
                        collate_fn=Collator(task, tokenizer, **(collate_opts or {})),
                        drop_last=train and not iterable)
    return loader, ds
