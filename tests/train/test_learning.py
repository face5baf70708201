"""Done-when checks of issue 4 on the synthetic world, CPU, `mplug_tiny`: pretraining lowers each
of its four losses, and the fine-tuning recipes, trained from that short pretraining and scored
by `mplug.eval.run.evaluate` on the validation split, beat the task's chance level from the
world's manifest AND its image-blind constant (VQA/SNLI-VE's majority answer, grounding's mean
training box; NLVR2's labels are balanced, so its majority label scores chance).

Slow: ~4 min on 2 cores. What does NOT learn at this budget, measured (issue 4's report):
- retrieval with the official ITC queue: from random init the queue collapses every image to one
  feature (loss_itc = ln(batch + queue), R@1 = chance; tests/train/test_collapse.py). Like
  config/smoke.yaml, these runs use in-batch ITC without momentum encoders (`official_itc=False`).
- captioning (strict xfail): CE and SCST give every image one caption; they beat the manifest's
  constant caption only because another constant scores higher.
- VQA and SNLI-VE beat majority and chance but not the manifest's image-blind text prior
  (`blind_acc`); grounding beats chance on RefCOCO mostly through its location words (RefCOCO+
  stays below chance at this budget).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from _toyrun import make_tiny_config
from mplug.train.run import train

pytestmark = pytest.mark.slow
STEPS_PRETRAIN = 200
STEPS_FINETUNE = 200
STEPS_GROUNDING = 400
GROUNDING_BINS = 33  # 2 px per bin at 64 px: the floor-quantised true box keeps IoU > 0.57
# Caption decoding of config/smoke.yaml's evaluate.caption_ce; CIDEr only (no Java scorers).
CAPTION_EVAL = dict(caption_beam=3, caption_min_length=3, caption_max_length=12,
                    caption_metrics=("CIDEr",))


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    return make_tiny_config(tmp_path_factory.mktemp("cfg") / "learn.yaml", batch_size=16,
                            lr_text=1e-3, lr_vision=1e-3, warmup_steps=10, official_itc=False)


@pytest.fixture(scope="module")
def ft_config(tmp_path_factory) -> Path:
    return make_tiny_config(tmp_path_factory.mktemp("cfg") / "ft.yaml", batch_size=32,
                            lr_text=1e-3, lr_vision=1e-3, warmup_steps=10,
                            grounding_bins=GROUNDING_BINS, official_itc=False)


@pytest.fixture(scope="module")
def pretrained(world, config, tmp_path_factory, dist_env_restored) -> Path:
    out = tmp_path_factory.mktemp("pretrain")
    train("pretrain", "pretrain", config, "mplug_tiny", "pretrain_14m", world, out,
          max_steps=STEPS_PRETRAIN)
    return out


def test_pretraining_lowers_each_loss(pretrained):
    recs = [json.loads(line) for line in (pretrained / "train_log.jsonl").read_text().splitlines()]
    assert len(recs) == STEPS_PRETRAIN
    n = len(recs) // 5
    for key in ("loss_itc", "loss_itm", "loss_mlm", "loss_prefix"):
        first = sum(r[key] for r in recs[:n]) / n
        last = sum(r[key] for r in recs[-n:]) / n
        assert last < first, f"{key}: mean of the last 20% ({last:.4f}) >= first 20% ({first:.4f})"


def _finetune(task: str, stage: str, steps: int, cfg: Path, world: Path, out: Path,
              init: Path) -> Path:
    train("finetune", task, cfg, "mplug_tiny", stage, world, out, init=init, max_steps=steps)
    return out / "model.safetensors"


def _evaluate(task: str, ckpt: Path, world: Path, split: str, out: Path,
              dataset: str | None = None, **settings) -> dict:
    from mplug.eval.run import EvalSettings, evaluate

    return evaluate(task, ckpt, world, split, out / f"{task}_{split}.json", dataset=dataset,
                    settings=EvalSettings(model="mplug_tiny", batch_size=32, **settings))["metrics"]


def _manifest(world: Path, dataset: str) -> dict:
    from mplug.data.synth import read_manifest

    return read_manifest(world)["datasets"][dataset]


@pytest.mark.parametrize("task, split, metric", [
    ("snli_ve", "dev", "accuracy"), ("vqa", "val", "overall"), ("nlvr2", "dev", "accuracy")])
def test_finetuned_model_beats_chance(task, split, metric, pretrained, world, ft_config, tmp_path):
    ckpt = _finetune(task, task, STEPS_FINETUNE, ft_config, world, tmp_path,
                     pretrained / "model.safetensors")
    score = _evaluate(task, ckpt, world, split, tmp_path)[metric]
    entry = _manifest(world, task)
    chance = next(iter(entry["chance"].values()))
    majority = entry["baselines"][split]["majority_acc"]
    print(f"{task} {split} {metric}={score:.2f} chance={chance:.2f} majority={majority:.2f}")
    assert score > max(chance, majority), \
        f"{task} {split}: {metric} {score:.2f} <= chance {chance:.2f} / majority {majority:.2f}"


def _caption_cider(ckpt: Path, world: Path, out: Path) -> tuple[float, float]:
    """(val CIDEr of the model, val CIDEr of its own commonest caption given to every image, by
    the same scorer): a captioner that ignores the image scores the same twice."""
    from collections import Counter

    from mplug.data.formats import read_records
    from mplug.eval.caption_eval import score_captions

    score = _evaluate("caption", ckpt, world, "val", out, **CAPTION_EVAL)["CIDEr"]
    preds = json.loads((out / "caption_val.predictions.json").read_text())
    const = Counter(p["caption"] for p in preds).most_common(1)[0][0]
    refs = {r["image_id"]: r["captions"]
            for r in read_records(world / "coco_caption" / "val.jsonl", "caption")}
    return score, score_captions(refs, {k: const for k in refs}, metrics=("CIDEr",))["CIDEr"]


@pytest.mark.xfail(strict=True, reason="measured: after 200 CE steps (and 20 SCST steps) the tiny "
                   "captioner gives every val image the same caption ('a red circle', CIDEr 70.9; "
                   "SCST: one longer caption, 97.6); both beat the manifest's constant caption "
                   "(66.8) without looking at the image")
def test_caption_ce_and_scst_beat_every_constant_caption(pretrained, world, ft_config, tmp_path):
    """CE, then 20 SCST steps from it (reward CIDEr, baseline the beams' mean): val CIDEr above
    the manifest's constant caption AND above the model's own commonest caption for all images."""
    blind = _manifest(world, "coco_caption")["baselines"]["val"]["blind_constant_cider"]
    ce = _finetune("caption", "caption_ce", STEPS_FINETUNE, ft_config, world, tmp_path / "ce",
                   pretrained / "model.safetensors")
    scst = _finetune("caption", "caption_scst", 20, ft_config, world, tmp_path / "scst", ce)
    for stage, ckpt in (("caption_ce", ce), ("caption_scst", scst)):
        score, own_constant = _caption_cider(ckpt, world, ckpt.parent)
        print(f"{stage} val CIDEr={score:.1f} its commonest caption for all={own_constant:.1f} "
              f"manifest constant caption={blind:.1f}")
        assert score > max(blind, own_constant), stage


def test_grounding_beats_chance_and_mean_box(pretrained, world, ft_config, tmp_path):
    """Mixed RefCOCO/+/g fine-tuning, coordinate tokens with GROUNDING_BINS bins (training and
    decoding must agree on it), RefCOCO val Acc@0.5 above a random object of the image (scored
    with its exact box) and above the mean training box."""
    ckpt = _finetune("grounding", "grounding_mixed", STEPS_GROUNDING, ft_config, world, tmp_path,
                     pretrained / "model.safetensors")
    acc = _evaluate("grounding", ckpt, world, "val", tmp_path, dataset="refcoco",
                    grounding_bins=GROUNDING_BINS)["acc@0.5"]
    entry = _manifest(world, "refcoco")
    chance = entry["chance"]["val"]["acc@0.5"]
    blind = entry["baselines"]["val"]["blind_mean_box_acc@0.5"]
    print(f"grounding refcoco val acc@0.5={acc:.1f} chance={chance:.1f} mean box={blind:.1f}")
    assert acc > max(chance, blind), f"grounding: Acc@0.5 {acc:.1f} <= chance {chance:.1f} / mean box {blind:.1f}"


def _chance_recall(n_items: int, n_pos: int, k: int) -> float:
    """Recall@k (%) of a uniformly random ranking: P(one of n_pos positives in the top k)."""
    from math import comb

    return 100.0 * (1.0 - comb(n_items - n_pos, k) / comb(n_items, k))


def test_retrieval_beats_chance(pretrained, world, ft_config, tmp_path):
    """COCO-style retrieval fine-tuning (ITC + ITM with hard negatives), scored on val with the
    evaluation's ITC top-k + ITM rerank: text R@1 and the mean recall (R@1/5/10 both ways) above
    a random ranking's. Measured: TR@1 16.7 (chance 3.3), r_mean 37.8 (chance 17.0); image R@1
    alone stays at chance (3.3) at this budget."""
    ckpt = _finetune("retrieval_coco", "retrieval_coco", STEPS_FINETUNE, ft_config, world,
                     tmp_path, pretrained / "model.safetensors")
    m = _evaluate("retrieval_coco", ckpt, world, "val", tmp_path, k_test=16)
    n_img, n_txt = m["n_images"], m["n_texts"]
    per_image = n_txt // n_img
    chance = [_chance_recall(n_txt, per_image, k) for k in (1, 5, 10)] + \
             [_chance_recall(n_img, 1, k) for k in (1, 5, 10)]
    chance_mean = sum(chance) / len(chance)
    print(f"retrieval_coco val {m} chance r_mean={chance_mean:.1f} txt_r1={chance[0]:.1f}")
    assert m["txt_r1"] > chance[0] and m["r_mean"] > chance_mean, (m, chance)
