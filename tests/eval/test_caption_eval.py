"""Caption metrics equal pycocoevalcap's scorers called directly; SPICE never reported as 0."""
import numpy as np
import pytest

from mplug.eval import caption_eval
from mplug.eval.caption_eval import ptb_tokenize, score_captions, score_nocaps, simple_tokenize
from mplug.eval.cider_reward import CiderReward

REFS = {
    1: ["A man riding a wave on top of a surfboard.", "A surfer rides a large wave.",
        "Man on a surfboard riding an ocean wave."],
    2: ["Two dogs playing with a frisbee in the park.", "Dogs run after a frisbee on grass.",
        "A pair of dogs chasing a flying disc."],
    3: ["A plate of food with broccoli and rice.", "Broccoli, rice and chicken on a plate.",
        "A white plate topped with rice and vegetables."],
}
PREDS = {1: "a man riding a wave on a surfboard", 2: "two dogs playing with a frisbee",
         3: "a plate of rice and broccoli"}


@pytest.fixture(scope="module")
def tokenized():
    toks = ptb_tokenize({**{("g", k): v for k, v in REFS.items()},
                         **{("r", k): [v] for k, v in PREDS.items()}})
    return ({k: toks[("g", k)] for k in REFS}, {k: toks[("r", k)] for k in REFS})


def test_bleu_rouge_cider_equal_direct_pycocoevalcap(tokenized):
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    gts, res = tokenized
    ours = score_captions(REFS, PREDS, metrics=("Bleu", "ROUGE_L", "CIDEr"))
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    assert ours["Bleu_4"] == pytest.approx(100 * bleu[3])
    assert ours["Bleu_1"] == pytest.approx(100 * bleu[0])
    assert ours["ROUGE_L"] == pytest.approx(100 * Rouge().compute_score(gts, res)[0])
    assert ours["CIDEr"] == pytest.approx(100 * Cider().compute_score(gts, res)[0])
    assert 0 < ours["CIDEr"] and 0 < ours["Bleu_4"] <= 100
    with pytest.raises(KeyError, match="image_id 3"):
        score_captions(REFS, {1: "x", 2: "y"}, metrics=("CIDEr",))


def test_meteor_equals_direct(tokenized):  # METEOR starts a JVM (~9 s): checked once
    from pycocoevalcap.meteor.meteor import Meteor

    gts, res = tokenized
    ours = score_captions(gts, {k: v[0] for k, v in res.items()}, metrics=("METEOR",),
                          tokenized=True)
    assert ours["METEOR"] == pytest.approx(100 * Meteor().compute_score(gts, res)[0])


def test_spice_unavailable_is_null_with_reason(monkeypatch):
    monkeypatch.setattr(caption_eval, "spice_status", lambda: (False, "no CoreNLP jars"))
    out = score_captions(REFS, PREDS, metrics=("CIDEr", "SPICE"))
    assert out["SPICE"] is None and out["unavailable"] == {"SPICE": "no CoreNLP jars"}


def test_spice_status_reports_missing_jars():
    ok, reason = caption_eval.spice_status()
    if not ok:  # the offline case this project runs in
        assert "stanford-corenlp-3.6.0" in reason


def test_nocaps_per_domain(monkeypatch):
    monkeypatch.setattr(caption_eval, "spice_status", lambda: (False, "offline"))
    doms = {1: "in-domain", 2: "near-domain", 3: "out-domain"}
    out = score_nocaps(REFS, PREDS, doms)
    overall = score_captions(REFS, PREDS, metrics=("CIDEr",))["CIDEr"]
    assert out["overall/CIDEr"] == pytest.approx(overall)
    for d in ("in-domain", "near-domain", "out-domain"):
        assert out[f"{d}/CIDEr"] is not None and out[f"{d}/SPICE"] is None
    assert "out-domain/SPICE" in out["unavailable"]


SENTENCES = ["A man riding a wave on top of a surfboard.", "Two dogs' toys, on the floor!",
             "The cat's bowl is empty; it's sad.", 'A "red" bus (double-decker) on a street...',
             "People don't like it -- really?", "a t-shirt that says: hello",
             "A plate with 1,000 peas and 2.5 carrots.", "We're here and they'll go, I'm sure.",
             "dog,cat and bird", "a [red] {blue} car ( ok )"]


def test_simple_tokenize_matches_ptb_jar_on_captions():
    jar = ptb_tokenize({i: [s] for i, s in enumerate(SENTENCES)})
    assert [simple_tokenize(s) for s in SENTENCES] == [jar[i][0] for i in range(len(SENTENCES))]


def test_cider_reward_equals_cider_when_corpus_is_the_scored_set(tokenized):
    from pycocoevalcap.cider.cider import Cider

    gts, res = tokenized
    _, per_image = Cider().compute_score(gts, res)
    reward = CiderReward(gts, tokenizer=None)
    got = reward([res[k][0] for k in gts], list(gts))
    np.testing.assert_allclose(got, per_image, rtol=1e-9)
    # several hypotheses for one image (SCST beams): each scored against all its references
    beams = reward(["a man riding a wave on a surfboard", "a dog", ""], [1, 1, 1])
    assert beams[0] > beams[1] >= beams[2] == 0.0
    with pytest.raises(KeyError, match="reference corpus"):
        reward(["x"], [99])


def test_cider_reward_simple_tokenizer_handles_raw_text():
    reward = CiderReward(REFS)  # raw text, pure-python PTB approximation
    raw = reward(["A man riding a wave on a surfboard."], [1])
    clean = reward(["a man riding a wave on a surfboard"], [1])
    assert raw[0] == pytest.approx(clean[0]) and raw[0] > 0
