"""Exact-match accuracy: NLVR2, SNLI-VE (class ids) and video QA (answer strings)."""
from __future__ import annotations

from typing import Hashable, Mapping, Sequence


def accuracy(predictions: Sequence[Hashable], labels: Sequence[Hashable]) -> float:
    """Percentage of predictions equal to their label (class ids or answer strings)."""
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions but {len(labels)} labels")
    if not labels:
        raise ValueError("no examples to score")
    return 100.0 * sum(p == g for p, g in zip(predictions, labels)) / len(labels)


def accuracy_by_id(predictions: Mapping[Hashable, Hashable],
                   labels: Mapping[Hashable, Hashable]) -> float:
    """Accuracy over every labelled id; a missing prediction is an error, not a miss."""
    missing = [k for k in labels if k not in predictions]
    if missing:
        raise KeyError(f"no prediction for id {missing[0]!r} ({len(missing)} missing)")
    keys = list(labels)
    return accuracy([predictions[k] for k in keys], [labels[k] for k in keys])
