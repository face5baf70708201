"""95% bootstrap confidence intervals of evaluation metrics, resampling each task's unit.

Every metric here is (or is held to be) a mean of per-unit scores, so one resample is a
multiset of unit indices drawn with replacement and its statistic is the mean of the drawn
units' scores; the interval is the 2.5th / 97.5th percentile of the resampled statistics
(percentile bootstrap). Units per task:

- VQA: questions, scored with the official 10-answer accuracy per question;
- captioning (COCO, NoCaps, video): images/videos. CIDEr's document frequencies (and SPICE's /
  ROUGE-L's nothing-corpus-wide) are HELD FIXED at their full-split values: the per-image CIDEr-D
  scores pycocoevalcap returns are resampled, and the split's CIDEr is exactly their mean. Re-
  computing the document frequencies per resample would mean 1,000 full pycocoevalcap runs
  (minutes to hours on COCO-5K) and changes the score's definition from resample to resample;
  the document frequencies of a 5,000-image corpus move little under resampling, so holding them
  fixed slightly narrows the interval. BLEU and METEOR are corpus-level ratios, not means of
  per-image scores: each resample recomputes them from the drawn images' sufficient statistics
  (mplug.eval.corpus_stats; METEOR through the jar's own aggregation), so their intervals are
  exact for the corpus score's definition;
- recall@K: queries, per direction (images for TR, captions for IR), resampled independently;
  the means (txt_r_mean, img_r_mean, r_mean) use the same per-direction resamples;
- grounding: expressions (Acc@0.5 and mean IoU);
- NLVR2 / SNLI-VE: pairs; video QA: questions.

Deterministic for a fixed seed (numpy's PCG64 via `default_rng(seed)`).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0
_CHUNK_CELLS = 4_000_000  # resampled indices held at once (32 MB of int64)


def resampled_means(scores: np.ndarray, resamples: int = DEFAULT_RESAMPLES,
                    seed: int = DEFAULT_SEED) -> np.ndarray:
    """Bootstrap means of the rows' per-unit scores.

    scores: (n,) or (m, n) — m metrics sharing one unit (the same resamples for all, so a metric
    averaged from them resamples consistently). Returns (resamples,) or (m, resamples).
    """
    s = np.asarray(scores, dtype=np.float64)
    flat = s.ndim == 1
    s = s[None] if flat else s  # (m, n)
    n = s.shape[1]
    if n == 0:
        raise ValueError("no units to resample")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    out = np.empty((s.shape[0], resamples))
    lo = 0
    for idx in index_chunks(n, resamples, seed):
        out[:, lo:lo + len(idx)] = s[:, idx].mean(axis=2)  # (m, r, n) -> (m, r)
        lo += len(idx)
    return out[0] if flat else out


def index_chunks(n: int, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED):
    """The resamples' unit indices, (r, n) chunks of at most _CHUNK_CELLS cells; the same `n`
    and `seed` give the same draws, so statistics over one unit set share their resamples."""
    if n == 0:
        raise ValueError("no units to resample")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    rng = np.random.default_rng(seed)
    step = max(1, _CHUNK_CELLS // n)
    for lo in range(0, resamples, step):
        yield rng.integers(0, n, size=(min(step, resamples - lo), n))


def interval(stats: np.ndarray, level: float = 0.95) -> list[float]:
    """Percentile interval [lo, hi] of resampled statistics."""
    a = (1.0 - level) / 2.0
    lo, hi = np.percentile(np.asarray(stats, dtype=np.float64), [100 * a, 100 * (1 - a)])
    return [round(float(lo), 4), round(float(hi), 4)]


def mean_cis(per_unit: Mapping[str, np.ndarray], resamples: int = DEFAULT_RESAMPLES,
             seed: int = DEFAULT_SEED) -> dict[str, list[float]]:
    """{metric: per-unit scores (n,)} over ONE unit set -> {metric: [lo, hi]}."""
    names = list(per_unit)
    if not names:
        return {}
    stats = resampled_means(np.stack([np.asarray(per_unit[k], float) for k in names]),
                            resamples, seed)
    return {k: interval(stats[i]) for i, k in enumerate(names)}


# ---------------------------------------------------------------- per task
def accuracy_ci(correct: np.ndarray, name: str = "accuracy", resamples: int = DEFAULT_RESAMPLES,
                seed: int = DEFAULT_SEED) -> dict[str, list[float]]:
    """Pairs (NLVR2, SNLI-VE) or questions (video QA): correct (n,) bool -> percent interval."""
    return mean_cis({name: 100.0 * np.asarray(correct, dtype=np.float64)}, resamples, seed)


def vqa_ci(per_question: np.ndarray, resamples: int = DEFAULT_RESAMPLES,
           seed: int = DEFAULT_SEED) -> dict[str, list[float]]:
    """per_question: official accuracy in [0, 1] per question -> {"overall": [lo, hi]} (percent)."""
    return mean_cis({"overall": 100.0 * np.asarray(per_question, np.float64)}, resamples, seed)


def grounding_ci(iou: np.ndarray, threshold: float = 0.5, resamples: int = DEFAULT_RESAMPLES,
                 seed: int = DEFAULT_SEED) -> dict[str, list[float]]:
    """Expressions: IoU per expression -> Acc@threshold and mean IoU intervals (percent)."""
    iou = np.asarray(iou, dtype=np.float64)
    name = "acc@0.5" if threshold == 0.5 else f"acc@{threshold}"
    return mean_cis({name: 100.0 * (iou >= threshold), "mean_iou": 100.0 * iou}, resamples, seed)


def retrieval_ci(txt_ranks: np.ndarray, img_ranks: np.ndarray,
                 resamples: int = DEFAULT_RESAMPLES,
                 seed: int = DEFAULT_SEED) -> dict[str, list[float]]:
    """Queries per direction: txt_ranks (N_img,) best rank of an image's captions (TR),
    img_ranks (N_txt,) rank of a caption's image (IR) -> intervals of every itm_eval key."""
    out: dict[str, list[float]] = {}
    means = []
    for prefix, ranks, s in (("txt", txt_ranks, seed), ("img", img_ranks, seed + 1)):
        r = np.asarray(ranks)
        hits = np.stack([100.0 * (r < k) for k in (1, 5, 10)])  # (3, n)
        stats = resampled_means(hits, resamples, s)  # (3, resamples)
        for i, k in enumerate((1, 5, 10)):
            out[f"{prefix}_r{k}"] = interval(stats[i])
        means.append(stats.mean(axis=0))
        out[f"{prefix}_r_mean"] = interval(means[-1])
    out["r_mean"] = interval((means[0] + means[1]) / 2)
    return out


def caption_ci(per_image: Mapping[str, Any], resamples: int = DEFAULT_RESAMPLES,
               seed: int = DEFAULT_SEED) -> dict[str, list[float]]:
    """Images: per-image scores (x100) of the mean-type metrics (CIDEr with fixed document
    frequencies, ROUGE_L, SPICE) and the corpus statistics (objects with `n`, `names` and
    `resample(index chunks)`: BLEU, METEOR) -> intervals. NaN per-image SPICE is left out as its
    mean does. Metrics may be over different image sets (NoCaps: "in-domain/CIDEr" over the
    in-domain images, "overall/CIDEr" over all): metrics over one set share the resampled images."""
    by_set: dict[int, dict[str, np.ndarray]] = {}
    out: dict[str, list[float]] = {}
    for k, v in per_image.items():
        if hasattr(v, "resample"):
            if v.n:
                draws = v.resample(index_chunks(v.n, resamples, seed))
                out.update({name: interval(draws[name]) for name in v.names})
            continue
        v = np.asarray(v, np.float64)
        if len(v) and not np.isnan(v).any():
            by_set.setdefault(len(v), {})[k] = v
    for group in by_set.values():
        out.update(mean_cis(group, resamples, seed))
    return out
