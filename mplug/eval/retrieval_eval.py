"""Image-text retrieval: recall@K with several captions per image, and the two-stage scoring.

`recall_at_k` reproduces ALBEF/mPLUG `itm_eval` exactly, including its tie order: rows are ranked
with `np.argsort(score)[::-1]`, so among equal scores (e.g. the -100 of non-candidates) the later
index ranks first. Text retrieval (TR, image -> text) counts a hit at the best-ranked of the
image's captions; image retrieval (IR, text -> image) at the rank of the caption's one image.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

NON_CANDIDATE = -100.0
TOPK = {"coco": 256, "flickr": 128, "msrvtt": 128}


def _recalls(ranks: np.ndarray, prefix: str) -> dict[str, float]:
    return {f"{prefix}_r{k}": 100.0 * float(np.mean(ranks < k)) for k in (1, 5, 10)}


def recall_at_k(scores_i2t: np.ndarray, scores_t2i: np.ndarray,
                txt2img: Sequence[int] | Mapping[int, int],
                img2txt: Sequence[Sequence[int]] | Mapping[int, Sequence[int]]) -> dict[str, float]:
    """TR/IR R@1/5/10 and means, in percent.

    scores_i2t: (N_img, N_txt); scores_t2i: (N_txt, N_img); txt2img[t] = the image of caption t;
    img2txt[i] = the captions of image i. Keys match official itm_eval: txt_r1.. (TR),
    img_r1.. (IR), txt_r_mean, img_r_mean, r_mean.
    """
    txt_ranks, img_ranks = retrieval_ranks(scores_i2t, scores_t2i, txt2img, img2txt)
    out = _recalls(txt_ranks, "txt")
    out.update(_recalls(img_ranks, "img"))
    out["txt_r_mean"] = (out["txt_r1"] + out["txt_r5"] + out["txt_r10"]) / 3
    out["img_r_mean"] = (out["img_r1"] + out["img_r5"] + out["img_r10"]) / 3
    out["r_mean"] = (out["txt_r_mean"] + out["img_r_mean"]) / 2
    return out


def retrieval_ranks(scores_i2t: np.ndarray, scores_t2i: np.ndarray,
                    txt2img: Sequence[int] | Mapping[int, int],
                    img2txt: Sequence[Sequence[int]] | Mapping[int, Sequence[int]]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Per-query 0-based ranks: (N_img,) best rank of an image's captions (TR), (N_txt,) rank of
    a caption's image (IR); the unit the recall@K bootstrap resamples (mplug.eval.bootstrap)."""
    scores_i2t, scores_t2i = np.asarray(scores_i2t), np.asarray(scores_t2i)
    n_img, n_txt = scores_i2t.shape
    if scores_t2i.shape != (n_txt, n_img):
        raise ValueError(f"scores_t2i has shape {scores_t2i.shape}, expected {(n_txt, n_img)}")
    txt_ranks = np.zeros(n_img)
    for i, row in enumerate(scores_i2t):
        order = np.argsort(row)[::-1]
        txt_ranks[i] = min(int(np.where(order == t)[0][0]) for t in img2txt[i])
    img_ranks = np.zeros(n_txt)
    for t, row in enumerate(scores_t2i):
        order = np.argsort(row)[::-1]
        img_ranks[t] = int(np.where(order == txt2img[t])[0][0])
    return txt_ranks, img_ranks


def two_stage_scores(sims: np.ndarray, k: int,
                     itm_scores: Callable[[np.ndarray, np.ndarray], np.ndarray],
                     add_itc: bool = False, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """ITC top-k candidates, then ITM rerank (official retrieval evaluation).

    sims: (N_img, N_txt) ITC similarity. `itm_scores(image_idx, text_idx)` gets two equal-length
    index arrays (pairs) and returns the ITM score (logit of class "match") per pair.
    Non-candidates score -100. `add_itc=True` adds the ITC similarity to the ITM score, which is
    what the official *video* retrieval does (image retrieval uses the ITM logit only).
    Returns (scores_i2t (N_img, N_txt), scores_t2i (N_txt, N_img)).
    """
    from tqdm import tqdm

    sims = np.asarray(sims, dtype=np.float64)
    n_img, n_txt = sims.shape
    i2t = np.full((n_img, n_txt), NON_CANDIDATE)
    t2i = np.full((n_txt, n_img), NON_CANDIDATE)
    k_i2t, k_t2i = min(k, n_txt), min(k, n_img)
    for i in tqdm(range(n_img), desc="ITM rerank i2t", disable=not progress):
        cand = np.argsort(-sims[i], kind="stable")[:k_i2t]
        s = np.asarray(itm_scores(np.full(len(cand), i), cand), dtype=np.float64)
        i2t[i, cand] = s + (sims[i, cand] if add_itc else 0.0)
    for t in tqdm(range(n_txt), desc="ITM rerank t2i", disable=not progress):
        cand = np.argsort(-sims[:, t], kind="stable")[:k_t2i]
        s = np.asarray(itm_scores(cand, np.full(len(cand), t)), dtype=np.float64)
        t2i[t, cand] = s + (sims[cand, t] if add_itc else 0.0)
    return i2t, t2i
