"""BLEU and METEOR recomputed per bootstrap resample equal pycocoevalcap's own scores, on the full
corpus and on a resample (a multiset of images, scored by pycocoevalcap as distinct copies)."""
import numpy as np
import pytest

from mplug.eval import bootstrap as bs
from mplug.eval import corpus_stats as cs
from mplug.eval.caption_eval import score_captions

WORDS = "a dog cat man runs sits on the grass sofa red small wave rides near".split()


def _corpus(n: int, seed: int = 0) -> tuple[dict, dict]:
    """Tokenized references (3 per image) and hypotheses of varied length and overlap: a
    reference with some words replaced, cut short or extended."""
    rng = np.random.default_rng(seed)
    gts = {i: [" ".join(rng.choice(WORDS, rng.integers(4, 10))) for _ in range(3)] for i in range(n)}
    res = {}
    for i in range(n):
        words = [w if rng.random() > 0.3 else str(rng.choice(WORDS)) for w in gts[i][0].split()]
        res[i] = [" ".join(words[:rng.integers(2, len(words) + 3)])]
    return gts, res


def _copies(d: dict, idx) -> dict:
    """The resample as pycocoevalcap sees it: each drawn image under an id of its own."""
    return {j: d[int(i)] for j, i in enumerate(idx)}


def test_bleu_counts_reproduce_pycocoevalcap_on_the_corpus_and_a_resample():
    from pycocoevalcap.bleu.bleu import Bleu

    gts, res = _corpus(30)
    score, counts = cs.bleu_counts(gts, res)
    assert counts.shape == (30, 10)
    reference, _ = Bleu(4).compute_score(gts, res, verbose=0)
    assert score == pytest.approx(reference, abs=1e-12)
    assert cs.bleu_from_counts(counts.sum(axis=0)) == pytest.approx(100 * np.asarray(reference), abs=1e-9)
    idx = np.random.default_rng(1).integers(0, 30, 30)  # with repeats
    drawn, _ = Bleu(4).compute_score(_copies(gts, idx), _copies(res, idx), verbose=0)
    assert cs.bleu_from_counts(counts[idx].sum(axis=0)) == pytest.approx(100 * np.asarray(drawn), abs=1e-9)
    short = np.array([[2, 10, 2, 1, 0, 0, 2, 1, 0, 0]], float)  # brevity penalty, no 3-grams
    assert cs.bleu_from_counts(short)[0, 0] == pytest.approx(100 * np.exp(1 - 10 / 2), rel=1e-6)
    assert 0 < cs.bleu_from_counts(short)[3, 0] < 0.01  # smoothed (pycocoevalcap), not 0


def test_meteor_eval_of_lines_reproduces_pycocoevalcap_and_a_resample():  # two JVMs (~5-9 s each)
    from pycocoevalcap.meteor.meteor import Meteor

    gts, res = _corpus(12)
    reference = Meteor()
    full, _ = reference.compute_score(gts, res)
    idx = np.random.default_rng(2).integers(0, 12, 12)
    drawn, _ = reference.compute_score(_copies(gts, idx), _copies(res, idx))
    del reference
    per: dict = {}
    out = score_captions(gts, {k: v[0] for k, v in res.items()}, metrics=("METEOR",), tokenized=True,
                         per_image=per)
    assert out["METEOR"] == pytest.approx(100 * full, abs=1e-7)
    stat = per["METEOR"]
    assert stat.process.corpus_score([stat.lines[i] for i in idx]) == pytest.approx(drawn, abs=1e-9)
    lo, hi = bs.caption_ci(per, resamples=50, seed=0)["METEOR"]
    assert lo < out["METEOR"] < hi
    assert stat.process._proc.poll() is not None  # resampling stopped the JVM


def test_caption_ci_gives_bleu_intervals_around_the_corpus_score_deterministically():
    gts, res = _corpus(40)
    preds = {k: v[0] for k, v in res.items()}

    def ci(seed: int) -> tuple[dict, dict]:
        per: dict = {}
        out = score_captions(gts, preds, metrics=("Bleu", "CIDEr"), tokenized=True, per_image=per)
        return out, bs.caption_ci(per, resamples=200, seed=seed)

    out, first = ci(0)
    for name in ("Bleu_1", "Bleu_4", "CIDEr"):
        lo, hi = first[name]
        assert lo < out[name] < hi and hi - lo > 1, (name, lo, out[name], hi)
    assert ci(0)[1] == first and ci(1)[1]["Bleu_4"] != first["Bleu_4"]


def test_index_chunks_are_the_draws_resampled_means_uses():
    scores = np.arange(50, dtype=float)
    means = bs.resampled_means(scores, resamples=30, seed=4)
    draws = np.concatenate(list(bs.index_chunks(50, 30, seed=4)))
    assert np.allclose(means, scores[draws].mean(axis=1))
