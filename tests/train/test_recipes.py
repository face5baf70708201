"""Every recipe on the synthetic world through `mplug.train.run.train` (the code behind
`mplug train`), with the < 1M-parameter `mplug_tiny` model and 2 steps each: it runs, writes the
three outputs, loads its --init, and exports weights that fit the task model exactly."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from _toyrun import make_tiny_config
from mplug.errors import ConfigError
from mplug.train.run import train

JOBS = [("vqa", "vqa"), ("caption", "caption_ce"), ("caption", "caption_scst"),
        ("retrieval_coco", "retrieval_coco"), ("retrieval_flickr", "retrieval_flickr"),
        ("grounding", "grounding_mixed"), ("grounding", "grounding_refcoco"), ("nlvr2", "nlvr2"),
        ("snli_ve", "snli_ve")]


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory) -> Path:
    return make_tiny_config(tmp_path_factory.mktemp("cfg") / "tiny.yaml", max_steps=2)


@pytest.fixture(scope="module")
def pretrained(world, tiny_config, tmp_path_factory, dist_env_restored) -> Path:
    out = tmp_path_factory.mktemp("pretrain")
    summary = train("pretrain", "pretrain", tiny_config, "mplug_tiny", "pretrain_14m", world, out)
    assert summary["steps"] == 2
    return out


def _fits_task_model(out: Path, task: str, summary: dict) -> None:
    from mplug.models import build_model
    from mplug.models.loading import load_into, load_state_dict_safe

    model = build_model("mplug_tiny", task, **summary["run"]["model_overrides"])
    load_into(model, load_state_dict_safe(out / "model.safetensors"), strict=True, source=str(out))


def test_pretrain_outputs(pretrained):
    summary = json.loads((pretrained / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["engine"]["zero_stage"] == 2
    assert set(summary["last_losses"]) >= {"loss_itc", "loss_itm", "loss_mlm", "loss_prefix"}
    recs = [json.loads(line) for line in (pretrained / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [1, 2]
    assert {"loss", "loss_itc", "lr_vit_decay", "lr_rest_decay", "samples_per_s", "max_rss_mb"} <= set(recs[0])
    assert summary["provenance"]["checkpoint_sha256"]
    _fits_task_model(pretrained, "pretrain", summary)
    assert list((pretrained / "tensorboard").iterdir())


@pytest.mark.parametrize("task, stage", JOBS)
def test_finetune_recipe_runs_from_pretrained(task, stage, pretrained, world, tiny_config, tmp_path):
    summary = train("finetune", task, tiny_config, "mplug_tiny", stage, world, tmp_path,
                    init=pretrained / "model.safetensors")
    run = summary["run"]
    assert summary["steps"] == 2 and run["stage"] == stage and run["init"]["loaded"] > 50
    losses = summary["last_losses"]
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values()), losses
    if stage == "caption_scst":
        assert {"loss_scst", "reward", "reward_baseline"} <= set(losses)
    if task == "nlvr2":  # second cross-attention starts as a copy of the first (BLIP)
        assert any("crossattention2" in k for k in run["init"]["fresh"])
    if stage == "grounding_mixed":
        assert run["datasets"] == ["refcoco", "refcoco+", "refcocog"]
    model_task = {"retrieval_coco": "retrieval", "retrieval_flickr": "retrieval"}.get(task, task)
    _fits_task_model(tmp_path, model_task, summary)


def test_stage_and_task_errors(world, tiny_config, tmp_path):
    with pytest.raises(ConfigError, match="--stage nope"):
        train("finetune", "vqa", tiny_config, "mplug_tiny", "nope", world, tmp_path)
    with pytest.raises(ConfigError, match="is a caption job"):
        train("finetune", "vqa", tiny_config, "mplug_tiny", "caption_ce", world, tmp_path)
    with pytest.raises(ConfigError, match="unknown fine-tuning task"):
        train("finetune", "pretrain", tiny_config, "mplug_tiny", None, world, tmp_path)
    with pytest.raises(ConfigError, match="pass --stage"):  # two caption jobs
        train("finetune", "caption", tiny_config, "mplug_tiny", None, world, tmp_path)


def test_pretraining_resumes_exactly_from_a_mid_epoch_checkpoint(world, tmp_path, dist_env_restored):
    """The pretraining data is streamed (JSONL + webdataset shards): resuming re-reads and drops
    the consumed batches and restores the RNG. A run resumed from its step-2 checkpoint (as after
    a SIGKILL at step 3) ends with the same weights as the uninterrupted 4-step run."""
    import shutil

    from mplug.models.loading import load_state_dict_safe

    cfg = make_tiny_config(tmp_path / "c.yaml", max_steps=4, save_every=2, batch_size=8)
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    train("pretrain", "pretrain", cfg, "mplug_tiny", "pretrain_14m", world, full)
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copytree(full / "checkpoints" / "step_00000002", resumed / "checkpoints" / "step_00000002")
    (resumed / "checkpoints" / "latest").write_text("step_00000002\n")
    summary = train("pretrain", "pretrain", cfg, "mplug_tiny", "pretrain_14m", world, resumed,
                    resume="latest")
    assert summary["steps"] == 4
    a = load_state_dict_safe(full / "model.safetensors")
    b = load_state_dict_safe(resumed / "model.safetensors")
    diff = [k for k in a if not torch.equal(a[k], b[k])]
    assert not diff, f"resumed pretraining differs: {diff[:5]}"


def test_scst_step_baseline_is_the_mean_reward_of_the_beams(world):
    """SCST (official mPLUG/caption_mplug_scst.py): advantage = reward - mean reward of the image's beams, so a
    constant reward gives exactly zero loss, and a reward that favours some beams gives a
    gradient on the decoder."""
    from types import SimpleNamespace

    import numpy as np

    from mplug.data.collate import Collator
    from mplug.data.datasets import build_dataset
    from mplug.data.tokenizer import find_vocab, load_tokenizer, vocab_overrides
    from mplug.models import build_model
    from mplug.train.loop import StepContext
    from mplug.train.recipes import scst_step

    tok = load_tokenizer(find_vocab(world))
    torch.manual_seed(0)
    model = build_model("mplug_tiny", "caption", image_res=32, **vocab_overrides(tok, "mplug_tiny"))
    ds = build_dataset("caption", world, "train", tok, 32, True)
    batch = Collator("caption", tok)([ds[i] for i in range(3)])
    engine = SimpleNamespace(module=model)
    ctx = StepContext(0, 0, 0, 1)
    scst = {"beam_size": 3, "min_length": 2, "max_length": 6}

    flat = scst_step(tok, lambda hyps, ids: np.full(len(hyps), 0.7), scst)(engine, batch, ctx)
    assert flat["loss"].item() == 0.0 and flat["reward_baseline"].item() == pytest.approx(0.7)

    first_beam = lambda hyps, ids: np.array([1.0 if i % 3 == 0 else 0.0 for i in range(len(hyps))])  # noqa: E731
    out = scst_step(tok, first_beam, scst)(engine, batch, ctx)
    assert out["reward"].item() == pytest.approx(1 / 3) and out["reward_baseline"].item() == pytest.approx(1 / 3)
    out["loss"].backward()
    grads = [p.grad for n, p in model.named_parameters() if n.startswith("text_decoder") and p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)


def test_retrieval_with_momentum_encoders_trains_at_zero3(world, tmp_path, dist_env_restored):
    """ZeRO-3 with the momentum encoders and the 0-dim ITC `temp` (engine._zero3_momentum and the
    0-dim broadcast patches): trains, the momentum copies follow the EMA (they start equal to
    the online weights and lag behind them), and the export loads strictly."""
    from _toyrun import make_tiny_config
    from mplug.models.loading import load_state_dict_safe

    cfg = make_tiny_config(tmp_path / "z3.yaml", max_steps=2, zero_stage=3)
    summary = train("finetune", "retrieval_coco", cfg, "mplug_tiny", "retrieval_coco", world,
                    tmp_path / "out")
    assert summary["engine"]["zero_stage"] == 3 and summary["steps"] == 2
    _fits_task_model(tmp_path / "out", "retrieval", summary)
    import yaml

    from mplug.models import build_model
    from mplug.train.loop import set_seed

    set_seed(int(yaml.safe_load(cfg.read_text())["seed"]))  # as run.train: the initial weights
    init = build_model("mplug_tiny", "retrieval", **summary["run"]["model_overrides"]).state_dict()
    w = load_state_dict_safe(tmp_path / "out" / "model.safetensors")
    keys = [k for k in w if k.startswith("text_encoder_m.") and w[k].is_floating_point()]
    assert keys and all(torch.equal(init[k], init[k.replace("_m.", ".", 1)]) for k in keys)
    # moved away from the start, but not onto the online weights: an EMA lagging behind them
    assert any(not torch.equal(w[k], init[k]) for k in keys)
    assert any(not torch.equal(w[k], w[k.replace("_m.", ".", 1)]) for k in keys)
    assert w["temp"].shape == ()
