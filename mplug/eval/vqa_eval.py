"""The official VQA v2 accuracy (GT-Vision-Lab `vqaEval.py`, byte-identical in ALBEF and mPLUG).

Reproduced rule by rule (AliceMind mPLUG/vqaTools/vqaEval.py):
- the prediction is stripped, punctuation-processed and digit/article-processed;
- the 10 ground-truth answers get the punctuation step only, and only when they are not all
  identical (so an all-identical ground truth is compared verbatim);
- per question: for each of the 10 answers, count how many of the *other* 9 equal the processed
  prediction, take min(1, matches / 3), and average over the 10 leave-one-out subsets;
- overall / per answer type / per question type: mean x 100 rounded to 2 decimals.

One deliberate difference: the official code drops "the current answer" with `item != gtAnsDatum`
on the answer dicts, which removes exactly one entry only because each dict carries a unique
`answer_id`. We leave out by position, which is what that code computes on real VQA files and
stays correct when `answer_id` is absent.
"""
from __future__ import annotations

import re
from collections import defaultdict
from typing import Iterable, Mapping, Sequence

CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've",
    "couldnt": "couldn't", "couldn'tve": "couldn't've", "couldnt've": "couldn't've",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't",
    "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't",
    "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've",
    "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've",
    "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
    "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've",
    "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're",
    "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've",
    "whyll": "why'll", "whyre": "why're", "whys": "why's", "wont": "won't",
    "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll",
    "youre": "you're", "youve": "you've",
}
NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
                "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
ARTICLES = ("a", "an", "the")
PUNCT = [";", r"/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@",
         "`", ",", "?", "!"]
# The official lookbehind is mistyped as a lookahead `(?!<=\d)`: in effect a period is removed
# unless a digit follows it ("2.5" keeps its period, "cat." loses it). Kept verbatim on purpose.
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(\,)(\d)")


def process_punctuation(text: str) -> str:
    """Official `processPunctuation`: delete or blank out punctuation, then strip periods."""
    out = text
    for p in PUNCT:
        if (p + " " in text or " " + p in text) or _COMMA_STRIP.search(text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD_STRIP.sub("", out)


def process_digit_article(text: str) -> str:
    """Official `processDigitArticle`: lower-case, number words -> digits, drop articles,
    restore contraction apostrophes."""
    words = []
    for word in text.lower().split():
        word = NUMBER_WORDS.get(word, word)
        if word not in ARTICLES:
            words.append(word)
    return " ".join(CONTRACTIONS.get(w, w) for w in words)


def _clean(text: str) -> str:
    return text.replace("\n", " ").replace("\t", " ").strip()


def normalize_answer(answer: str) -> str:
    """The processing the official evaluator applies to a *predicted* answer."""
    return process_digit_article(process_punctuation(_clean(answer)))


def question_accuracy(prediction: str, gt_answers: Sequence[str]) -> float:
    """VQA accuracy of one prediction against its (usually 10) human answers, in [0, 1]."""
    if not gt_answers:
        raise ValueError("a VQA question needs at least one ground-truth answer")
    pred = normalize_answer(prediction)
    gts = [_clean(a) for a in gt_answers]
    if len(set(gts)) > 1:
        gts = [process_punctuation(a) for a in gts]
    accs = []
    for i in range(len(gts)):
        matches = sum(1 for j, a in enumerate(gts) if j != i and a == pred)
        accs.append(min(1.0, matches / 3.0))
    return sum(accs) / len(accs)


def _pct(values: Iterable[float], ndigits: int) -> float:
    values = list(values)
    return round(100.0 * sum(values) / len(values), ndigits)


def vqa_accuracy(predictions: Mapping[object, str], annotations: Mapping[object, Mapping],
                 ndigits: int = 2) -> dict:
    """Score predictions {question_id: answer} against VQA annotations {question_id: ann}.

    `ann` has `answers` (list of {"answer": str} or str), and optionally `answer_type` and
    `question_type`. Returns {"overall", "perAnswerType", "perQuestionType"} in percent,
    rounded like the official evaluator. Every annotated question must have a prediction.
    """
    missing = [q for q in annotations if q not in predictions]
    if missing:
        raise KeyError(f"no prediction for question_id {missing[0]!r} ({len(missing)} missing)")
    overall: list[float] = []
    per_ans: dict[str, list[float]] = defaultdict(list)
    per_q: dict[str, list[float]] = defaultdict(list)
    for qid, ann in annotations.items():
        answers = [a["answer"] if isinstance(a, Mapping) else a for a in ann["answers"]]
        acc = question_accuracy(predictions[qid], answers)
        overall.append(acc)
        if ann.get("answer_type") is not None:
            per_ans[ann["answer_type"]].append(acc)
        if ann.get("question_type") is not None:
            per_q[ann["question_type"]].append(acc)
    if not overall:
        raise ValueError("no questions to score")
    return {"overall": _pct(overall, ndigits),
            "perAnswerType": {k: _pct(v, ndigits) for k, v in sorted(per_ans.items())},
            "perQuestionType": {k: _pct(v, ndigits) for k, v in sorted(per_q.items())}}
