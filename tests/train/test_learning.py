"""Done-when checks of issue 4 on the synthetic world, CPU, `mplug_tiny`: pretraining lowers each
of its four losses, and fine-tuned models beat the task's chance level (from the world's
manifest) on the validation split, scored by `mplug.eval`.

Slow (80 s on 2 quiet cores, up to ~3 min when they are shared). What a model this small learns in ~200 steps: SNLI-VE and
VQA beat chance (the manifest's `baselines` show that text-only guessing also does); retrieval,
NLVR2 and grounding stay at chance at this size and budget (see the report of issue 4)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from _toyrun import make_tiny_config
from mplug.train.run import train

pytestmark = pytest.mark.slow
STEPS_PRETRAIN = 200
STEPS_FINETUNE = 200


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    return make_tiny_config(tmp_path_factory.mktemp("cfg") / "learn.yaml", batch_size=16,
                            lr_text=1e-3, lr_vision=1e-3, warmup_steps=10)


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


@pytest.mark.parametrize("task, split, metric", [("snli_ve", "dev", "accuracy"), ("vqa", "val", "overall")])
def test_finetuned_model_beats_chance(task, split, metric, pretrained, world, config, tmp_path):
    from mplug.data.synth import read_manifest
    from mplug.eval.run import EvalSettings, evaluate

    cfg = make_tiny_config(tmp_path / "ft.yaml", batch_size=32, lr_text=1e-3, lr_vision=1e-3,
                           warmup_steps=10)
    train("finetune", task, cfg, "mplug_tiny", task, world, tmp_path,
          init=pretrained / "model.safetensors", max_steps=STEPS_FINETUNE)
    result = evaluate(task, tmp_path / "model.safetensors", world, split, tmp_path / "metrics.json",
                      settings=EvalSettings(model="mplug_tiny", batch_size=32))
    entry = read_manifest(world)["datasets"][task]
    chance = next(iter(entry["chance"].values()))
    score = result["metrics"][metric]
    assert score > chance, f"{task} {split}: {metric} {score:.2f} <= chance {chance:.2f}"
    if task == "vqa":  # and above always answering the most frequent answer
        assert score > entry["baselines"][split]["majority_acc"]
