"""Visual grounding: IoU and Acc@0.5 (TransVG / mPLUG `eval_utils.trans_vg_eval_test`).

Boxes are xyxy. The official evaluation works in the padded square image normalised to [0, 1]
and clamps the predicted box to [0, 1] before the IoU; `clamp_boxes` does the same for any
bounds (pixel boxes clamp to the image's width/height). IoU uses continuous coordinates
(no +1 pixel convention) with TransVG's 1e-16 in the denominator.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64)  # (N, 4)
    cx, cy, w, h = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)


def clamp_boxes(boxes: np.ndarray, width: float | np.ndarray = 1.0,
                height: float | np.ndarray = 1.0) -> np.ndarray:
    b = np.array(boxes, dtype=np.float64)  # (N, 4) xyxy
    b[..., 0::2] = np.clip(b[..., 0::2], 0.0, np.asarray(width, dtype=np.float64)[..., None])
    b[..., 1::2] = np.clip(b[..., 1::2], 0.0, np.asarray(height, dtype=np.float64)[..., None])
    return b


def box_iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Element-wise IoU of two (N, 4) xyxy arrays -> (N,)."""
    p, g = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    iw = np.clip(np.minimum(p[..., 2], g[..., 2]) - np.maximum(p[..., 0], g[..., 0]), 0, None)
    ih = np.clip(np.minimum(p[..., 3], g[..., 3]) - np.maximum(p[..., 1], g[..., 1]), 0, None)
    inter = iw * ih
    area_p = (p[..., 2] - p[..., 0]) * (p[..., 3] - p[..., 1])
    area_g = (g[..., 2] - g[..., 0]) * (g[..., 3] - g[..., 1])
    return inter / (area_p + area_g - inter + 1e-16)


def grounding_accuracy(pred: np.ndarray, gt: np.ndarray, width: float | Sequence[float] = 1.0,
                       height: float | Sequence[float] = 1.0, threshold: float = 0.5) -> dict:
    """Acc@0.5 in percent and mean IoU (x100) after clamping predictions to the image."""
    pred = clamp_boxes(np.asarray(pred, dtype=np.float64).reshape(-1, 4), width, height)
    iou = box_iou(pred, np.asarray(gt, dtype=np.float64).reshape(-1, 4))
    if len(iou) == 0:
        raise ValueError("no boxes to score")
    return {"acc@0.5" if threshold == 0.5 else f"acc@{threshold}":
            100.0 * float(np.mean(iou >= threshold)),
            "mean_iou": 100.0 * float(np.mean(iou)), "n": int(len(iou))}
