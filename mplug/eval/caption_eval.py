"""Caption metrics: pycocoevalcap's scorers after PTB tokenisation, called one by one.

`COCOEvalCap.evaluate()` builds SPICE up front, and SPICE downloads Stanford CoreNLP 3.6.0 at first
use, so offline it fails as a whole. We call the tokenizer and each scorer ourselves with the same
inputs COCOEvalCap gives them (so BLEU/METEOR/ROUGE_L/CIDEr are identical to it), and report SPICE
as unavailable (value None plus a reason) when its CoreNLP jars are absent; never as 0.

Values are x100, the way the paper prints them (CIDEr 155.1, not 1.551).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

from mplug.eval.corpus_stats import BleuStatistic, MeteorProcess, MeteorStatistic, bleu_counts, meteor_lines

CAPTION_METRICS = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr", "SPICE")
NOCAPS_DOMAINS = ("in-domain", "near-domain", "out-domain")
_CORENLP = "stanford-corenlp-3.6.0"


def _pkg_dir() -> Path:
    import pycocoevalcap

    return Path(list(pycocoevalcap.__path__)[0])


# ---------------------------------------------------------------- tokenisation
def ptb_tokenize(captions: Mapping[Any, Sequence[str]]) -> dict[Any, list[str]]:
    """Stanford PTBTokenizer (the jar pycocoevalcap ships), lower-cased, punctuation removed.

    Same command and post-processing as `pycocoevalcap.tokenizer.PTBTokenizer`, but the temporary
    file lives in the system temp folder rather than inside site-packages (read-only on clusters,
    and shared between concurrent jobs).
    """
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer  # noqa: F401 (jar location)
    from pycocoevalcap.tokenizer.ptbtokenizer import PUNCTUATIONS, STANFORD_CORENLP_3_4_1_JAR

    keys = [k for k, caps in captions.items() for _ in caps]
    lines = [c.replace("\n", " ") for caps in captions.values() for c in caps]
    if not lines:
        return {k: [] for k in captions}
    jar = _pkg_dir() / "tokenizer" / STANFORD_CORENLP_3_4_1_JAR
    with tempfile.TemporaryDirectory(prefix="mplug_ptb_") as tmp:
        src = Path(tmp) / "sentences.txt"
        src.write_text("\n".join(lines), encoding="utf-8")
        proc = subprocess.run(["java", "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer",
                               "-preserveLines", "-lowerCase", str(src)],
                              capture_output=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"PTBTokenizer failed (java exit {proc.returncode}): "
                           f"{proc.stderr.decode(errors='replace')[-500:]}")
    out_lines = proc.stdout.decode("utf-8").split("\n")
    result: dict[Any, list[str]] = {k: [] for k in captions}
    for k, line in zip(keys, out_lines):
        result[k].append(" ".join(w for w in line.rstrip().split(" ") if w not in PUNCTUATIONS))
    return result


# A pure-python approximation of the above for the SCST inner loop, where starting a JVM per
# batch adds latency to every step. It lower-cases, splits off leading/trailing punctuation, commas
# not between digits, and the PTB clitics ('s 're 've 'll 'd 'm n't), writes brackets the way the
# jar does after -lowerCase ("-lrb-": pycocoevalcap's punctuation list has only the upper-case
# forms, so brackets survive into the official scores too), and drops exactly the tokens
# pycocoevalcap drops. Known differences from the jar: no splitting of other punctuation inside a
# word, no SGML-entity or abbreviation handling; on ordinary captions the outputs are identical
# (tests/eval compares a sample with the jar).
_PTB_DROP = {"''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":",
             "-", "--", "...", ";"}
_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
_EDGE = "\"'`()[]{}.,!?;:"
_LEAD = re.compile(r"^([\"'`(\[{]+)")
_TRAIL = re.compile(r"([.,!?;:\"'`)\]}]+)$")
_CLITIC = re.compile(r"^(.+?)(n't|'s|'re|'ve|'ll|'d|'m)$")
_INNER_COMMA = re.compile(r"(?<!\d),|,(?!\d)")


def _edge_tokens(chars: str) -> list[str]:
    """Brackets become PTB's -lrb- tokens; any other edge punctuation is dropped anyway."""
    return [_BRACKETS[c] for c in chars if c in _BRACKETS]


def simple_tokenize(text: str) -> str:
    """PTB-like tokenisation + punctuation removal in pure python (see the note above)."""
    out: list[str] = []
    text = _INNER_COMMA.sub(" , ", text.lower().replace("\n", " "))
    for word in text.split():
        if not word.strip(_EDGE):  # only punctuation
            out.extend(_edge_tokens(word))
            continue
        lead = _LEAD.match(word)
        if lead:
            out.extend(_edge_tokens(lead.group(1)))
            word = word[lead.end():]
        trail = _TRAIL.search(word)
        tail = ""
        if trail:
            tail, word = trail.group(1), word[:trail.start()]
        clitic = _CLITIC.match(word)
        out.extend([clitic.group(1), clitic.group(2)] if clitic else [word])
        out.extend(_edge_tokens(tail))
    return " ".join(t for t in out if t not in _PTB_DROP)


# ---------------------------------------------------------------- SPICE
def spice_status() -> tuple[bool, str]:
    """(available, reason). SPICE needs the CoreNLP 3.6.0 jars in pycocoevalcap/spice/lib."""
    lib = _pkg_dir() / "spice" / "lib"
    missing = [n for n in (f"{_CORENLP}.jar", f"{_CORENLP}-models.jar") if not (lib / n).is_file()]
    if missing:
        return False, (f"Stanford CoreNLP models missing ({', '.join(missing)} not in {lib}); "
                       "SPICE downloads them at first use, which needs internet. Run "
                       "`python -m pycocoevalcap.spice.get_stanford_models` once where there is "
                       "internet, or copy the two jars there.")
    if subprocess.run(["java", "-version"], capture_output=True).returncode != 0:
        return False, "java is not installed (SPICE runs on Java 8+)"
    return True, ""


def _spice(gts: Mapping, res: Mapping) -> tuple[float, list[float]]:
    """SPICE like pycocoevalcap's wrapper, with temp/cache files outside site-packages."""
    spice_dir = _pkg_dir() / "spice"
    ids = list(gts)
    data = [{"image_id": str(i), "test": res[i][0], "refs": list(gts[i])} for i in ids]
    cache = Path(os.environ.get("MPLUG_SPICE_CACHE", Path(tempfile.gettempdir()) / "mplug_spice_cache"))
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mplug_spice_") as tmp:
        src, dst = Path(tmp) / "in.json", Path(tmp) / "out.json"
        src.write_text(json.dumps(data))
        subprocess.run(["java", "-jar", "-Xmx8G", "spice-1.0.jar", str(src), "-cache", str(cache),
                        "-out", str(dst), "-subset", "-silent"], cwd=spice_dir, check=True,
                       capture_output=True)
        results = {r["image_id"]: r["scores"]["All"]["f"] for r in json.loads(dst.read_text())}
    per = [float(results[str(i)]) if results[str(i)] is not None else float("nan") for i in ids]
    import numpy as np

    return float(np.nanmean(per)) if per else float("nan"), per


# ---------------------------------------------------------------- corpus scores
def _keep(per_image: dict | None, name: str, scores: Any) -> None:
    if per_image is not None:
        per_image[name] = [100.0 * float(x) for x in scores]


def score_captions(references: Mapping[Any, Sequence[str]], predictions: Mapping[Any, str],
                   metrics: Sequence[str] = ("Bleu", "METEOR", "ROUGE_L", "CIDEr", "SPICE"),
                   tokenized: bool = False, per_image: dict | None = None) -> dict[str, Any]:
    """Corpus caption metrics x100 over the images in `references` (all must be predicted).

    Returns {"Bleu_1".."Bleu_4", "METEOR", "ROUGE_L", "CIDEr", "SPICE"} for the requested
    `metrics`; an unavailable metric has value None and a reason under "unavailable".
    `per_image`, when given, is filled with what the bootstrap (mplug.eval.bootstrap) resamples,
    in `references` order: {metric: per-image scores x100} for the metrics whose corpus score is
    their mean (ROUGE_L, CIDEr with the split's document frequencies, SPICE), and under "Bleu" and
    "METEOR" the corpus statistics recomputed per resample (mplug.eval.corpus_stats).
    """
    missing = [k for k in references if k not in predictions]
    if missing:
        raise KeyError(f"no prediction for image_id {missing[0]!r} ({len(missing)} missing)")
    ids = list(references)
    if tokenized:
        gts = {k: list(references[k]) for k in ids}
        res = {k: [predictions[k]] for k in ids}
    else:
        both = ptb_tokenize({**{("g", k): list(references[k]) for k in ids},
                             **{("r", k): [predictions[k]] for k in ids}})
        gts = {k: both[("g", k)] for k in ids}
        res = {k: both[("r", k)] for k in ids}
    out: dict[str, Any] = {}
    unavailable: dict[str, str] = {}
    if "Bleu" in metrics:
        score, counts = bleu_counts(gts, res)
        out.update({f"Bleu_{i + 1}": 100.0 * s for i, s in enumerate(score)})
        if per_image is not None:
            per_image["Bleu"] = BleuStatistic(counts)
    if "METEOR" in metrics:
        process = MeteorProcess()
        score, lines = meteor_lines(process, gts, res)
        out["METEOR"] = 100.0 * score
        if per_image is not None:
            per_image["METEOR"] = MeteorStatistic(process, lines)  # stops the JVM once resampled
        else:
            process.close()
    if "ROUGE_L" in metrics:
        from pycocoevalcap.rouge.rouge import Rouge

        score, per = Rouge().compute_score(gts, res)
        out["ROUGE_L"] = 100.0 * float(score)
        _keep(per_image, "ROUGE_L", per)
    if "CIDEr" in metrics:
        from pycocoevalcap.cider.cider import Cider

        score, per = Cider().compute_score(gts, res)
        out["CIDEr"] = 100.0 * float(score)
        _keep(per_image, "CIDEr", per)
    if "SPICE" in metrics:
        ok, reason = spice_status()
        if ok:
            try:
                score, per = _spice(gts, res)
                out["SPICE"] = 100.0 * score
                _keep(per_image, "SPICE", per)
            except (subprocess.CalledProcessError, OSError, KeyError, ValueError) as err:
                out["SPICE"], unavailable["SPICE"] = None, f"SPICE failed: {err}"
        else:
            out["SPICE"], unavailable["SPICE"] = None, reason
    if unavailable:
        out["unavailable"] = unavailable
    return out


def score_nocaps(references: Mapping[Any, Sequence[str]], predictions: Mapping[Any, str],
                 domains: Mapping[Any, str],
                 metrics: Sequence[str] = ("CIDEr", "SPICE"),
                 per_image: dict | None = None) -> dict[str, Any]:
    """NoCaps: metrics per in/near/out-of-domain and overall, each scored on its own subset (as
    the NoCaps evaluation server does, so CIDEr's document frequencies are per subset)."""
    result: dict[str, Any] = {}
    unavailable: dict[str, str] = {}
    for dom in (*NOCAPS_DOMAINS, "overall"):
        ids = [k for k in references if dom == "overall" or domains.get(k) == dom]
        if not ids:
            continue
        per: dict | None = {} if per_image is not None else None
        part = score_captions({k: references[k] for k in ids}, predictions, metrics, per_image=per)
        for name, scores in (per or {}).items():
            per_image[f"{dom}/{name}"] = scores
        for name in metrics:
            result[f"{dom}/{name}"] = part.get(name)
        for name, why in part.get("unavailable", {}).items():
            unavailable[f"{dom}/{name}"] = why
    if unavailable:
        result["unavailable"] = unavailable
    return result
