"""Web-scale pretraining sets (CC3M, CC12M, SBU): img2dataset command and webdataset shards.

img2dataset (rom1504) is the community tool for these URL lists; it is a cluster dependency
(envs/data.yaml), never imported here. Its webdataset output is `NNNNN.tar` shards holding
`{key}.jpg`, `{key}.txt` (caption) and `{key}.json` (metadata), plus `NNNNN_stats.json` with the
download counts that give Table 12's "reproduced" column.
"""
from __future__ import annotations

import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from mplug.data.sources import Source
from mplug.errors import DataError
from mplug.utils.io import atomic_path, read_json

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")


def headered_list(source: Source, root: Path) -> Path:
    """The URL list img2dataset reads; a header line is prepended (atomically) when the raw list has none."""
    spec = source.webscale
    assert spec is not None, source.name
    raw = root / spec.url_list
    if not raw.exists():
        found = sorted(root.rglob(spec.url_list))
        if not found:
            raise DataError(f"{raw}: URL list missing; run `mplug data download {source.name} --dest "
                            f"{root.parent}` first")
        raw = found[0]
    if spec.header is None:
        return raw
    out = raw.with_name(raw.stem + ".with_header" + raw.suffix)
    if not out.exists():
        sep = "\t" if spec.input_format == "tsv" else ","
        with atomic_path(out) as tmp, open(raw, "rb") as src, open(tmp, "wb") as dst:
            dst.write((sep.join(spec.header) + "\n").encode())
            for block in iter(lambda: src.read(1 << 20), b""):
                dst.write(block)
    return out


def img2dataset_command(source: Source, url_list: Path, out_dir: Path, *, processes: int = 16,
                        threads: int = 64, image_size: int | None = None) -> list[str]:
    """argv for img2dataset with the flags of its dataset_examples recipes, resumable (incremental)."""
    spec = source.webscale
    if spec is None:
        raise DataError(f"{source.name} is not a web-scale dataset (kind {source.kind})")
    return ["img2dataset", "--url_list", str(url_list), "--input_format", spec.input_format,
            "--url_col", spec.url_col, "--caption_col", spec.caption_col,
            "--output_format", "webdataset", "--output_folder", str(out_dir),
            "--processes_count", str(processes), "--thread_count", str(threads),
            "--image_size", str(image_size or spec.image_size),
            "--incremental_mode", "incremental", "--enable_wandb", "False"]


@dataclass
class ShardSample:
    key: str
    image: bytes | None  # None when the tar holds no image for this key
    caption: str | None
    meta: dict
    shard: str


def list_shards(folder: str | os.PathLike) -> list[Path]:
    folder = Path(folder)
    shards = sorted(p for p in folder.glob("*.tar") if not p.name.startswith("."))
    if not shards:
        raise DataError(f"{folder}: no webdataset shards (*.tar); run `mplug data download` for this dataset "
                        f"(img2dataset writes them there)")
    return shards


def iter_shard_samples(folder: str | os.PathLike) -> Iterator[ShardSample]:
    """Every sample of every shard, grouped by key. A corrupt shard is a DataError naming it."""
    for shard in list_shards(folder):
        groups: dict[str, dict[str, bytes]] = {}
        order: list[str] = []
        try:
            with tarfile.open(shard) as tf:
                for member in tf:
                    if not member.isfile():
                        continue
                    key, _, ext = member.name.rpartition("/")[2].partition(".")
                    if key not in groups:
                        groups[key] = {}
                        order.append(key)
                    fh = tf.extractfile(member)
                    groups[key][ext.lower()] = fh.read() if fh else b""
        except (tarfile.TarError, EOFError, OSError) as err:
            raise DataError(f"{shard}: corrupt shard ({err}); delete it and rerun img2dataset "
                            f"(incremental mode refetches it)") from None
        for key in order:
            parts = groups[key]
            image = next((parts[e] for e in IMAGE_EXTS if e in parts), None)
            caption = parts["txt"].decode("utf-8", "replace") if "txt" in parts else None
            try:
                meta = json.loads(parts["json"]) if "json" in parts else {}
            except json.JSONDecodeError:
                meta = {}
            yield ShardSample(key, image, caption, meta, shard.name)


def img2dataset_stats(folder: str | os.PathLike) -> dict[str, int]:
    """Sum of img2dataset's per-shard `*_stats.json` (attempted `count`, `successes`, failures)."""
    total = {"count": 0, "successes": 0, "failed_to_download": 0, "failed_to_resize": 0}
    for path in sorted(Path(folder).glob("*_stats.json")):
        try:
            stats = read_json(path)
        except ValueError as err:
            raise DataError(str(err)) from None
        for k in total:
            total[k] += int(stats.get(k, 0) or 0)
    return total


def count_shard_samples(folder: str | os.PathLike) -> dict[str, int]:
    """Images and captions actually present in the shards (tar headers are read, images are not)."""
    images = texts = samples = 0
    for shard in list_shards(folder):
        keys: dict[str, set[str]] = {}
        try:
            with tarfile.open(shard) as tf:
                for member in tf:
                    if member.isfile():
                        key, _, ext = member.name.rpartition("/")[2].partition(".")
                        if ext.lower() == "txt" and member.size == 0:
                            continue  # an empty caption is no text
                        keys.setdefault(key, set()).add(ext.lower())
        except (tarfile.TarError, EOFError, OSError) as err:
            raise DataError(f"{shard}: corrupt shard ({err}); delete it and rerun img2dataset") from None
        samples += len(keys)
        images += sum(any(e in exts for e in IMAGE_EXTS) for exts in keys.values())
        texts += sum(("txt" in exts and any(e in exts for e in IMAGE_EXTS)) for exts in keys.values())
    return {"samples": samples, "images": images, "texts": texts}
