"""Honest baselines for the synthetic world, computed from the generated records.

A check "the model beats chance" can pass with no vision at all when the text gives the answer
away, so the manifest states, per task: uniform chance, the majority answer, an image-blind
model (the majority label for the same text in training, backing off to the text's template,
then to the global majority) and, where the world allows, a colour-only model (the same lookup
also keyed on the set of colours in the image). These are lookup tables fitted on the training
split and scored on the evaluation split: what memorisation of the text (and colours) achieves.
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict
from typing import Hashable, Sequence

from mplug.data import world

_ATTR = {**{c: "<colour>" for c in world.COLOURS}, **{s: "<shape>" for s in world.SHAPES},
         **{p: "<shapes>" for p in world.PLURAL.values()}, **{s: "<size>" for s in world.SIZES},
         **{c: "<column>" for c in world.COLUMNS}, **{d: "<dir>" for d in world.DIRECTIONS},
         **{n: "<number>" for n in world.NUMBER_WORDS.values()}}


def template(text: str) -> str:
    """The text with attribute words (colour, shape, size, place, number) masked."""
    return " ".join(_ATTR.get(w, w) for w in re.findall(r"[a-z0-9]+|[^\sa-z0-9]", text.lower()))


def colours_in_text(text: str) -> frozenset[str]:
    return frozenset(w for w in re.findall(r"[a-z]+", text.lower()) if w in world.COLOURS)


def _majority(counter: Counter) -> Hashable:
    # ties broken by the label's string form so the result is deterministic
    return max(sorted(counter.items(), key=lambda kv: str(kv[0])), key=lambda kv: kv[1])[0]


def backoff_predict(train: Sequence[tuple[tuple, Hashable]], test_keys: Sequence[tuple]) -> list:
    """Majority label of the most specific key level seen in training, else global majority.

    train: (keys, label) with keys ordered most to least specific; test_keys: same key tuples.
    """
    levels = [defaultdict(Counter) for _ in range(max((len(k) for k, _ in train), default=0))]
    overall: Counter = Counter()
    for keys, label in train:
        overall[label] += 1
        for lvl, k in enumerate(keys):
            levels[lvl][k][label] += 1
    fallback = _majority(overall) if overall else None
    out = []
    for keys in test_keys:
        pred = fallback
        for lvl, k in enumerate(keys):
            if lvl < len(levels) and k in levels[lvl]:
                pred = _majority(levels[lvl][k])
                break
        out.append(pred)
    return out


def majority_label(labels: Sequence[Hashable]) -> Hashable:
    return _majority(Counter(labels))


def vqa_accuracy(pred: str, answers: Sequence[str]) -> float:
    """VQA accuracy, the common min(#matches / 3, 1) form (no answer normalisation needed here:
    the synthetic answers are already normalised)."""
    return min(1.0, sum(a == pred for a in answers) / 3.0)


def accuracy(preds: Sequence, golds: Sequence) -> float:
    return sum(p == g for p, g in zip(preds, golds)) / max(1, len(golds))


def colour_match_recall_at_1(text_colours: Sequence[frozenset], text_item: Sequence[int],
                             item_colours: Sequence[frozenset]) -> dict[str, float]:
    """Expected R@1 of a ranker that sees only colours: it ranks first, uniformly at random, one
    of the items whose colour set equals the text's colours (and vice versa)."""
    by_set: dict[frozenset, list[int]] = defaultdict(list)
    for i, cs in enumerate(item_colours):
        by_set[cs].append(i)
    t2i = [(1.0 / len(by_set[tc])) if text_item[t] in by_set[tc] else 0.0
           for t, tc in enumerate(text_colours)]
    texts_by_set: dict[frozenset, list[int]] = defaultdict(list)
    for t, tc in enumerate(text_colours):
        texts_by_set[tc].append(t)
    i2t = []
    for i, ic in enumerate(item_colours):
        cand = texts_by_set.get(ic, [])
        i2t.append(sum(text_item[t] == i for t in cand) / len(cand) if cand else 0.0)
    return {"txt_r1": sum(t2i) / max(1, len(t2i)), "img_r1": sum(i2t) / max(1, len(i2t))}


def iou_xywh(a: Sequence[float], b: Sequence[float]) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0.0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def cider(preds: dict, refs: dict) -> float:
    """CIDEr-D (pycocoevalcap's scorer, whitespace tokens: the synthetic text is already
    lower-case and space-separated), x100 as the paper prints it."""
    from pycocoevalcap.cider.cider import Cider

    score, _ = Cider().compute_score({k: list(v) for k, v in refs.items()},
                                     {k: [preds[k]] for k in refs})
    return round(100.0 * float(score), 2)
