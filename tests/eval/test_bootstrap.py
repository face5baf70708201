"""Bootstrap intervals (mplug.eval.bootstrap): binomial agreement, determinism, resampling units."""
import math
import time

import numpy as np
import pytest

from mplug.eval import bootstrap as bs
from mplug.eval.retrieval_eval import recall_at_k, retrieval_ranks


def test_accuracy_interval_matches_normal_binomial():
    rng = np.random.default_rng(1)
    n, p = 20_000, 0.7
    hits = rng.random(n) < p
    lo, hi = bs.accuracy_ci(hits)["accuracy"]
    phat = hits.mean()
    half = 1.96 * math.sqrt(phat * (1 - phat) / n) * 100
    assert lo == pytest.approx(100 * phat - half, abs=0.15 * half)
    assert hi == pytest.approx(100 * phat + half, abs=0.15 * half)


def test_deterministic_for_a_seed_and_seed_matters():
    hits = np.random.default_rng(2).random(500) < 0.5
    assert bs.accuracy_ci(hits, seed=3) == bs.accuracy_ci(hits, seed=3)
    assert bs.accuracy_ci(hits, seed=3) != bs.accuracy_ci(hits, seed=4)
    assert bs.resampled_means(hits.astype(float), resamples=17).shape == (17,)


def test_vqa_resamples_questions_with_their_official_accuracy():
    # every question scores 2/3 (two of ten annotators agree): no spread between questions,
    # so resampling questions gives a zero-width interval at 66.67, not a 0/1 binomial one
    lo, hi = bs.vqa_ci(np.full(300, 2 / 3))["overall"]
    assert lo == pytest.approx(66.6667, abs=1e-3) and hi == pytest.approx(66.6667, abs=1e-3)


def test_grounding_resamples_expressions():
    iou = np.array([0.9, 0.1] * 200)
    ci = bs.grounding_ci(iou)
    assert ci["acc@0.5"][0] < 50 < ci["acc@0.5"][1]
    assert ci["mean_iou"][0] < 50 < ci["mean_iou"][1]
    assert ci["acc@0.5"][1] - ci["acc@0.5"][0] > ci["mean_iou"][1] - ci["mean_iou"][0]


def test_retrieval_resamples_queries_per_direction_and_is_fast():
    rng = np.random.default_rng(0)
    n_img, per = 5000, 5
    n_txt = n_img * per
    # ranks as the COCO-5K evaluation would give them: TR over 5,000 images, IR over 25,000 texts
    txt_ranks = rng.geometric(0.6, n_img) - 1
    img_ranks = rng.geometric(0.4, n_txt) - 1
    start = time.perf_counter()
    ci = bs.retrieval_ci(txt_ranks, img_ranks)
    assert time.perf_counter() - start < 20  # "a COCO-5K retrieval CI in seconds"
    # IR has 5x the queries of TR: its R@1 interval is narrower by about sqrt(5)
    w_txt = ci["txt_r1"][1] - ci["txt_r1"][0]
    w_img = ci["img_r1"][1] - ci["img_r1"][0]
    assert 1.6 < w_txt / w_img < 3.0
    assert ci["r_mean"][0] < ci["r_mean"][1]
    # ranks are recall_at_k's own
    s = rng.random((4, 8))
    t = rng.random((8, 4))
    t2i, i2t = np.repeat(np.arange(4), 2), [[2 * i, 2 * i + 1] for i in range(4)]
    tr, ir = retrieval_ranks(s, t, t2i, i2t)
    r = recall_at_k(s, t, t2i, i2t)
    assert r["txt_r1"] == pytest.approx(100 * np.mean(tr < 1))
    assert r["img_r5"] == pytest.approx(100 * np.mean(ir < 5))


def test_caption_interval_is_over_images_and_holds_cider_df_fixed():
    per = {"CIDEr": np.linspace(0, 200, 101), "SPICE": np.full(101, np.nan)}
    ci = bs.caption_ci(per)
    assert set(ci) == {"CIDEr"}  # SPICE without per-image values gets no interval
    assert ci["CIDEr"][0] < 100 < ci["CIDEr"][1]


def test_nocaps_domains_are_bootstrapped_over_their_own_images():
    """NoCaps scores each domain on its own images: per-image arrays of different lengths."""
    from mplug.eval.caption_eval import score_nocaps

    refs = {i: [f"a dog on grass number {i}", "a dog outside"] for i in range(9)}
    hyps = {i: "a dog on grass" if i % 2 else "a cat" for i in range(9)}
    domains = {i: ("in-domain", "near-domain", "out-domain")[i % 3] for i in range(9)}
    domains.update({0: "in-domain", 3: "in-domain"})  # unequal domain sizes
    per: dict = {}
    score_nocaps(refs, hyps, domains, metrics=("CIDEr",), per_image=per)
    assert len({len(v) for v in per.values()}) > 1
    ci = bs.caption_ci(per, resamples=200)
    assert set(ci) == set(per) and all(lo <= hi for lo, hi in ci.values())


def test_caption_per_image_scores_average_to_the_corpus_score():
    from mplug.eval.caption_eval import score_captions

    refs = {i: [f"a dog on grass number {i}", "a dog outside", f"brown dog {i % 3}"] for i in range(12)}
    preds = {i: ("a dog on grass" if i % 2 else "a cat on a sofa") for i in range(12)}
    per: dict = {}
    out = score_captions(refs, preds, metrics=("CIDEr", "ROUGE_L"), tokenized=True, per_image=per)
    assert len(per["CIDEr"]) == 12
    assert np.mean(per["CIDEr"]) == pytest.approx(out["CIDEr"])
    assert np.mean(per["ROUGE_L"]) == pytest.approx(out["ROUGE_L"])
