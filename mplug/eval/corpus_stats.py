"""BLEU and METEOR as corpus statistics a bootstrap can recompute per resample.

Both are ratios of sums over the corpus, not means of per-image scores, so their interval resamples
images and recomputes the corpus score from the drawn images' sufficient statistics (the method of
Koehn 2004 for BLEU), exactly as the full score is computed:

- BLEU (pycocoevalcap's BleuScorer, "closest" reference length): per image the candidate length,
  the closest reference length and, for n = 1..4, the candidate n-grams and the clipped matches;
  a resample sums them and applies pycocoevalcap's formula (its smoothing constants included).
- METEOR 1.5 (the jar pycocoevalcap ships, run with pycocoevalcap's arguments): per image the
  jar's SCORE statistics line; a resample is one EVAL of the drawn lines, so the jar itself
  aggregates them (its aggregation is not a plain sum in one fragmentation corner case).

On the full sample both equal pycocoevalcap's scores (tests/eval/test_corpus_stats.py).
"""
from __future__ import annotations

import subprocess
import weakref
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

BLEU_N = 4
_TINY, _SMALL = 1e-15, 1e-9  # pycocoevalcap.bleu.bleu_scorer.compute_score's smoothing


def bleu_counts(gts: Mapping, res: Mapping) -> tuple[list[float], np.ndarray]:
    """(Bleu_1..4 as pycocoevalcap.bleu.Bleu(4) scores them, per-image counts (n, 2 + 2N)):
    columns testlen, closest reflen, guess_1..N, correct_1..N, in `gts` order."""
    from pycocoevalcap.bleu.bleu_scorer import BleuScorer

    scorer = BleuScorer(n=BLEU_N)
    for k in gts:
        scorer += (res[k][0], gts[k])
    score, _ = scorer.compute_score(option="closest", verbose=0)
    rows = []
    for comps in scorer.ctest:
        test = comps["testlen"]
        ref = min((abs(length - test), length) for length in comps["reflen"])[1]
        rows.append([test, ref, *comps["guess"], *comps["correct"]])
    return [float(s) for s in score], np.asarray(rows, dtype=np.float64).reshape(-1, 2 + 2 * BLEU_N)


def bleu_from_counts(totals: np.ndarray) -> np.ndarray:
    """Corpus Bleu_1..N x100 from summed counts: (..., 2 + 2N) -> (N, ...)."""
    test, ref = totals[..., 0], totals[..., 1]
    guess, correct = totals[..., 2:2 + BLEU_N], totals[..., 2 + BLEU_N:]
    precision = np.cumprod((correct + _TINY) / (guess + _SMALL), axis=-1)  # (..., N)
    bleu = precision ** (1.0 / np.arange(1, BLEU_N + 1))
    ratio = (test + _TINY) / (ref + _SMALL)
    brevity = np.where(ratio < 1, np.exp(1 - 1 / ratio), 1.0)
    return 100.0 * np.moveaxis(bleu * brevity[..., None], -1, 0)


class BleuStatistic:
    """Bleu_1..4 of a resample: the drawn images' counts summed."""

    names = tuple(f"Bleu_{k}" for k in range(1, BLEU_N + 1))

    def __init__(self, counts: np.ndarray):
        self.counts, self.n = counts, len(counts)

    def resample(self, chunks: Iterable[np.ndarray]) -> dict[str, np.ndarray]:
        """chunks of (r, n) drawn image indices -> {name: (resamples,) scores}."""
        scores = np.concatenate([bleu_from_counts(self.counts[idx].sum(axis=1)) for idx in chunks], axis=1)
        return dict(zip(self.names, scores))


class MeteorProcess:
    """The METEOR 1.5 jar in -stdio mode, started as pycocoevalcap.meteor.Meteor starts it."""

    def __init__(self):
        import pycocoevalcap.meteor.meteor as ref

        cmd = ["java", "-jar", "-Xmx2G", ref.METEOR_JAR, "-", "-", "-stdio", "-l", "en", "-norm"]
        self._proc = subprocess.Popen(cmd, cwd=Path(ref.__file__).parent, stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self._stop = weakref.finalize(self, _kill, self._proc)

    def _ask(self, line: str, replies: int) -> list[str]:
        self._proc.stdin.write(f"{line}\n".encode())
        self._proc.stdin.flush()
        return [self._proc.stdout.readline().decode().strip() for _ in range(replies)]

    def stats(self, hypothesis: str, references: Sequence[str]) -> str:
        """The jar's statistics line for one image (pycocoevalcap's `_stat`)."""
        hypothesis = hypothesis.replace("|||", "").replace("  ", " ")
        return self._ask(" ||| ".join(("SCORE", " ||| ".join(references), hypothesis)), 1)[0]

    def corpus_score(self, lines: Sequence[str]) -> float:
        """METEOR of the images whose statistics lines are given (one EVAL; the jar answers a
        score per line, then the corpus score)."""
        return float(self._ask("EVAL ||| " + " ||| ".join(lines), len(lines) + 1)[-1])

    def close(self) -> None:
        self._stop()


def _kill(proc: subprocess.Popen) -> None:
    if proc.stdin:
        proc.stdin.close()
    proc.kill()
    proc.wait()


def meteor_lines(process: MeteorProcess, gts: Mapping, res: Mapping) -> tuple[float, list[str]]:
    """(METEOR as pycocoevalcap scores it, per-image statistics lines in `gts` order)."""
    lines = [process.stats(res[k][0], gts[k]) for k in gts]
    return process.corpus_score(lines), lines


class MeteorStatistic:
    """METEOR of a resample: one EVAL of the drawn images' statistics lines. Owns the process
    it was scored with, and stops it once resampled (or when collected)."""

    names = ("METEOR",)

    def __init__(self, process: MeteorProcess, lines: list[str]):
        self.process, self.lines, self.n = process, lines, len(lines)

    def resample(self, chunks: Iterable[np.ndarray]) -> dict[str, np.ndarray]:
        try:
            scores = [100.0 * self.process.corpus_score([self.lines[i] for i in row])
                      for idx in chunks for row in idx]
        finally:
            self.process.close()
        return {"METEOR": np.asarray(scores)}
