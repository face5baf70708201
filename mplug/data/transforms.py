"""Image transforms as in the official code (mPLUG dataset/__init__.py, grounding_dataset.py).

- train: RandomResizedCrop(res, scale=(0.5, 1) fine-tune | (0.2, 1) pretrain, bicubic),
  RandomHorizontalFlip (optional: off for grounding and for text with left/right words),
  RandAugment(2, 7), ToTensor, Normalize(CLIP mean/std).
- test: Resize((res, res), bicubic), ToTensor, Normalize(CLIP mean/std).
- grounding: resize the long side to res, pad to a res x res square; the box follows and is
  returned as (cx, cy, w, h) normalised to the padded square.

Difference from official, documented: official uses its own `RandomAugment(2, 7, isPIL=True,
augs=[Identity, AutoContrast, Equalize, Brightness, Sharpness, ShearX, ShearY, TranslateX,
TranslateY, Rotate])` (each chosen op applied with p=0.5, magnitude 7 of 10). We use
torchvision's `RandAugment(num_ops=2, magnitude=7)` (magnitude 7 of 31 bins; op list also has
Color, Contrast, Posterize, Solarize and always applies both ops): milder geometric ops and a
few extra photometric ones. Official grounding *test* normalisation uses ImageNet mean/std
(TransVG default) while training uses CLIP's; we use CLIP's for both (a release bug).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PRETRAIN_SCALE = (0.2, 1.0)
FINETUNE_SCALE = (0.5, 1.0)


@dataclass(frozen=True)
class TransformConfig:
    image_res: int
    train: bool
    pretrain: bool = False      # crop scale (0.2, 1) instead of (0.5, 1)
    flip: bool = True           # horizontal flip at train time
    randaugment: bool = True    # RandAugment(2, 7) at train time


def build_transform(cfg: TransformConfig) -> Callable[[Any], Any]:
    """PIL RGB image -> float tensor (3, res, res), normalised."""
    from torchvision import transforms as T
    from torchvision.transforms import InterpolationMode

    norm = [T.ToTensor(), T.Normalize(CLIP_MEAN, CLIP_STD)]
    if not cfg.train:
        return T.Compose([T.Resize((cfg.image_res, cfg.image_res),
                                   interpolation=InterpolationMode.BICUBIC), *norm])
    ops = [T.RandomResizedCrop(cfg.image_res, scale=PRETRAIN_SCALE if cfg.pretrain else FINETUNE_SCALE,
                               interpolation=InterpolationMode.BICUBIC)]
    if cfg.flip:
        ops.append(T.RandomHorizontalFlip())
    if cfg.randaugment:
        ops.append(T.RandAugment(num_ops=2, magnitude=7))
    return T.Compose(ops + norm)


def resize_pad(img: Any, box_xywh: list[float], res: int, train: bool = False,
               translate: bool = True, rng: random.Random | None = None):
    """Grounding: resize the long side to `res` (bicubic), pad to a square, move the box.

    At test time (and train with translate=False) the image is centred, as TransVG's
    NormalizeAndPad; at train time with translate=True it is placed at a random offset.
    Returns (tensor (3, res, res), box (cx, cy, w, h) in [0, 1] of the padded square, info dict
    with the scale and offsets to map a prediction back to original pixels).
    """
    import torch
    from PIL import Image
    from torchvision.transforms import functional as TF

    w, h = img.size
    scale = res / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    img = img.resize((nw, nh), Image.BICUBIC)
    if train and translate:
        rng = rng or random
        left, top = rng.randint(0, res - nw), rng.randint(0, res - nh)
    else:  # TransVG NormalizeAndPad(center=True): round(d / 2 - 0.1); an odd pad's extra row goes last
        left, top = round((res - nw) / 2 - 0.1), round((res - nh) / 2 - 0.1)
    canvas = torch.zeros(3, res, res)  # padding is 0 after normalisation (= the mean colour)
    canvas[:, top:top + nh, left:left + nw] = TF.normalize(TF.to_tensor(img), CLIP_MEAN, CLIP_STD)
    x, y, bw, bh = box_xywh
    cx = (x + bw / 2) * scale + left
    cy = (y + bh / 2) * scale + top
    box = torch.tensor([cx / res, cy / res, bw * scale / res, bh * scale / res]).clamp(0, 1)
    return canvas, box, {"scale": scale, "left": left, "top": top, "res": res}


def box_to_original(box_cxcywh: list[float], info: dict) -> list[float]:
    """Inverse of resize_pad's box mapping: normalised (cx, cy, w, h) -> [x, y, w, h] pixels."""
    cx, cy, w, h = (v * info["res"] for v in box_cxcywh)
    s = info["scale"]
    return [(cx - w / 2 - info["left"]) / s, (cy - h / 2 - info["top"]) / s, w / s, h / s]
