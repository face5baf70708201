"""Evaluation inputs: normalised JSONL records -> image/video tensors and token ids.

Evaluation-time preprocessing is deterministic and small, so it lives here rather than depending
on the training loaders' augmentation: images are resized to `image_res` x `image_res` (bicubic)
and normalised with CLIP's mean/std (official test transform); grounding images keep their
aspect ratio and are padded to a centred square (official NormalizeAndPad at test time); video
frames are sampled uniformly (`arange(0, n, n / F)`, official) and resized like images.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from mplug.errors import DataError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def _open(path: Path):
    from PIL import Image

    try:
        return Image.open(path).convert("RGB")
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read image {path}: {err}") from None


def _to_tensor(img):
    import numpy as np
    import torch

    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)  # (3,H,W)
    mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(CLIP_STD).view(3, 1, 1)
    return (x - mean) / std


def load_image(path: Path, res: int):
    """(3, res, res) normalised tensor."""
    from PIL import Image

    return _to_tensor(_open(path).resize((res, res), Image.BICUBIC))


def load_padded(path: Path, res: int):
    """Grounding: longest side -> res, centred zero padding. Returns (tensor, (scale, left, top))."""
    import torch
    from PIL import Image

    img = _open(path)
    w, h = img.size
    scale = res / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    x = _to_tensor(img.resize((nw, nh), Image.BICUBIC))
    top, left = round((res - nh) / 2.0 - 0.1), round((res - nw) / 2.0 - 0.1)
    out = torch.zeros(3, res, res)
    out[:, top:top + nh, left:left + nw] = x
    return out, (scale, left, top)


def frame_paths(dataset_dir: Path, rec: dict) -> list[Path]:
    if rec.get("frames"):
        return [dataset_dir / f for f in rec["frames"]]
    src = dataset_dir / rec["video"]
    if src.is_dir():
        frames = sorted(p for p in src.iterdir() if p.suffix.lower() in _IMAGE_EXT)
        if frames:
            return frames
        raise DataError(f"video folder {src} holds no frame images")
    raise DataError(f"{src}: video files need decoding to frames first (preprocess writes frame "
                    "folders); give the record a frame folder or a `frames` list")


def sample_uniform(n: int, k: int) -> list[int]:
    """Official frame sampling: indices arange(0, n, n / k), truncated to ints."""
    step = n / k
    return [min(n - 1, int(i * step)) for i in range(k)]


def load_video(dataset_dir: Path, rec: dict, res: int, num_frames: int):
    """(F, 3, res, res)."""
    import torch

    paths = frame_paths(dataset_dir, rec)
    return torch.stack([load_image(paths[i], res) for i in sample_uniform(len(paths), num_frames)])


def find_vocab(data_dir: Path, explicit: str | os.PathLike | None) -> Path:
    """The tokenizer: --tokenizer, else vocab.txt in the dataset folder or up to two parents."""
    if explicit:
        return Path(explicit)
    for d in (data_dir, data_dir.parent, data_dir.parent.parent):
        if (d / "vocab.txt").is_file():
            return d / "vocab.txt"
    raise DataError(f"no vocab.txt in {data_dir} or its parents; pass --tokenizer PATH "
                    "(bert-base-uncased vocab.txt or a tokenizer folder)")


def batches(items: Sequence[Any], size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]
