"""CIDEr as a per-hypothesis reward for self-critical sequence training (SCST).

The official SCST (caption_mplug_scst.py) scores every beam hypothesis with CIDEr against all
reference captions of its image. Here the document frequencies come from a fixed reference
corpus (normally every training image's references, each image counted once), computed once;
the reference tf-idf vectors are cached per image, so a batch costs only the hypotheses' n-gram
counting. The n-gram counting is pycocoevalcap's own `precook`, and the vector/similarity maths
is the same as `CiderScorer.compute_cider` (checked in tests/eval against `Cider` when the corpus
equals the scored set).

Tokenisation: `tokenizer="simple"` (default) uses the pure-python PTB approximation
(`caption_eval.simple_tokenize`), because starting the Java PTB tokenizer per batch costs about a
second; `tokenizer="ptb"` runs the jar on each batch (exact, slow); `None` means the strings are
already tokenised.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Hashable, Mapping, Sequence

import numpy as np

from mplug.eval.caption_eval import ptb_tokenize, simple_tokenize

_Vec = tuple[list[dict], list[float], int]


class CiderReward:
    """Callable: `reward(hypotheses, image_ids) -> np.ndarray (H,)` of CIDEr (not x100)."""

    def __init__(self, references: Mapping[Hashable, Sequence[str]], n: int = 4,
                 sigma: float = 6.0, tokenizer: str | None = "simple"):
        from pycocoevalcap.cider.cider_scorer import precook

        self._precook = precook
        self.n, self.sigma, self.tokenizer = n, sigma, tokenizer
        refs = self._tokenize({k: list(v) for k, v in references.items()})
        self._cooked = {k: [precook(r, n) for r in rs] for k, rs in refs.items()}
        self.df: dict[tuple, float] = defaultdict(float)
        for cooked in self._cooked.values():  # df: number of images whose refs contain the n-gram
            for ngram in {g for ref in cooked for g in ref}:
                self.df[ngram] += 1.0
        self.ref_len = math.log(float(len(self._cooked)))
        self._ref_vecs: dict[Hashable, list[_Vec]] = {}

    def _tokenize(self, caps: dict[Any, list[str]]) -> dict[Any, list[str]]:
        if self.tokenizer is None:
            return caps
        if self.tokenizer == "ptb":
            return ptb_tokenize(caps)
        if self.tokenizer == "simple":
            return {k: [simple_tokenize(c) for c in v] for k, v in caps.items()}
        raise ValueError(f"tokenizer must be 'simple', 'ptb' or None, not {self.tokenizer!r}")

    def _vec(self, counts: Mapping[tuple, int]) -> _Vec:
        vec = [defaultdict(float) for _ in range(self.n)]
        norm = [0.0] * self.n
        length = 0
        for ngram, tf in counts.items():
            df = math.log(max(1.0, self.df.get(ngram, 0.0)))
            k = len(ngram) - 1
            vec[k][ngram] = float(tf) * (self.ref_len - df)
            norm[k] += vec[k][ngram] ** 2
            if k == 1:  # pycocoevalcap counts the length on bigrams; kept for identical numbers
                length += tf
        return vec, [math.sqrt(x) for x in norm], length

    def _sim(self, hyp: _Vec, ref: _Vec) -> np.ndarray:
        (vh, nh, lh), (vr, nr, lr) = hyp, ref
        val = np.zeros(self.n)
        penalty = math.exp(-(float(lh - lr) ** 2) / (2 * self.sigma ** 2))
        for k in range(self.n):
            for ngram, w in vh[k].items():
                r = vr[k].get(ngram, 0.0)
                val[k] += min(w, r) * r
            if nh[k] != 0 and nr[k] != 0:
                val[k] /= nh[k] * nr[k]
            val[k] *= penalty
        return val

    def _refs(self, key: Hashable) -> list[_Vec]:
        if key not in self._ref_vecs:
            if key not in self._cooked:
                raise KeyError(f"image {key!r} is not in the reference corpus")
            self._ref_vecs[key] = [self._vec(c) for c in self._cooked[key]]
        return self._ref_vecs[key]

    def __call__(self, hypotheses: Sequence[str], image_ids: Sequence[Hashable]) -> np.ndarray:
        if len(hypotheses) != len(image_ids):
            raise ValueError(f"{len(hypotheses)} hypotheses but {len(image_ids)} image ids")
        toks = self._tokenize({i: [h] for i, h in enumerate(hypotheses)})
        scores = np.zeros(len(hypotheses))  # (H,)
        for i, key in enumerate(image_ids):
            hyp = self._vec(self._precook(toks[i][0], self.n))
            refs = self._refs(key)
            total = sum((self._sim(hyp, r) for r in refs), np.zeros(self.n))
            scores[i] = float(np.mean(total)) / len(refs) * 10.0
        return scores
