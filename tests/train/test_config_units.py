"""Pure-Python parts of the engine: DeepSpeed config, optimizer groups and schedules, launcher
detection, the train-section parser, the batch plan."""
from __future__ import annotations

import math

import pytest
import torch

from mplug.errors import ConfigError
from mplug.train.deepspeed_config import EngineConfig, build_ds_config, micro_batch_for
from mplug.train.distributed import detect, expand_nodelist, export
from mplug.train.optim import (OptimConfig, albef_epoch_lr, build_optimizer, build_scheduler,
                               param_groups, step_lr)
from mplug.train.sampler import BatchPlan
from mplug.train.settings import parse_train_settings


# ----------------------------------------------------------------------------- DeepSpeed config
@pytest.mark.parametrize("stage", [0, 1, 2, 3])
@pytest.mark.parametrize("precision", ["bf16", "fp16", "fp32"])
def test_ds_config_per_stage_and_precision(stage, precision):
    cfg = build_ds_config(EngineConfig(zero_stage=stage, precision=precision, grad_accum=2), 8, 4)
    assert cfg["zero_optimization"]["stage"] == stage
    assert cfg["bf16"]["enabled"] is (precision == "bf16")
    assert cfg["fp16"]["enabled"] is (precision == "fp16")
    assert cfg["train_batch_size"] == 8 * 2 * 4 and cfg["train_micro_batch_size_per_gpu"] == 8
    assert cfg["gradient_clipping"] == 1.0 and cfg["zero_allow_untested_optimizer"] is True
    assert cfg["zero_optimization"]["overlap_comm"] is False  # official ds_config.json
    assert ("stage3_gather_16bit_weights_on_model_save" in cfg["zero_optimization"]) is (stage == 3)


def test_ds_config_offload_and_errors():
    cfg = build_ds_config(EngineConfig(zero_stage=2, offload_optimizer=True), 4, 1)
    assert cfg["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    with pytest.raises(ConfigError, match="zero_stage"):
        EngineConfig.from_dict({"zero_stage": 4})
    with pytest.raises(ConfigError, match="offload_optimizer needs zero_stage"):
        EngineConfig.from_dict({"zero_stage": 0, "offload_optimizer": True})
    with pytest.raises(ConfigError, match="unknown key train.engine.zero"):
        EngineConfig.from_dict({"zero": 2})
    with pytest.raises(ConfigError, match="precision"):
        EngineConfig.from_dict({"precision": "fp8"})
    assert micro_batch_for(1024, EngineConfig(grad_accum=2), 16) == 32
    with pytest.raises(ConfigError, match="not divisible"):
        micro_batch_for(1000, EngineConfig(), 16)


# ----------------------------------------------------------------------------- optimizer
class _Named(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.visual_encoder = torch.nn.Module()
        self.visual_encoder.conv1 = torch.nn.Linear(2, 2)
        self.visual_encoder.ln_pre = torch.nn.LayerNorm(2)  # CLIP LN names: decayed (official)
        self.text = torch.nn.Module()
        self.text.dense = torch.nn.Linear(2, 2)
        self.text.LayerNorm = torch.nn.LayerNorm(2)
        self.visual_encoder_m = torch.nn.Linear(2, 2).requires_grad_(False)


def test_param_groups_official_rules():
    cfg = OptimConfig(lr=1e-4, lr_vit=1e-5, weight_decay=0.02)
    m = _Named()
    names = {id(p): n for n, p in m.named_parameters()}
    groups = {g["name"]: g for g in param_groups(m.named_parameters(), cfg)}
    got = {k: sorted(names[id(p)] for p in g["params"]) for k, g in groups.items()}
    assert got["vit_decay"] == ["visual_encoder.conv1.weight", "visual_encoder.ln_pre.weight"]
    assert got["vit_no_decay"] == ["visual_encoder.conv1.bias", "visual_encoder.ln_pre.bias"]
    assert got["rest_decay"] == ["text.dense.weight"]
    assert got["rest_no_decay"] == ["text.LayerNorm.bias", "text.LayerNorm.weight", "text.dense.bias"]
    assert groups["vit_decay"]["lr"] == 1e-5 and groups["rest_decay"]["lr"] == 1e-4
    assert groups["rest_no_decay"]["weight_decay"] == 0.0 and groups["vit_decay"]["weight_decay"] == 0.02


def test_cosine_schedule_per_group():
    cfg = OptimConfig(lr=1e-4, lr_vit=1e-5, warmup_lr=1e-6, min_lr=1e-6, warmup_steps=10)
    opt = build_optimizer(_Named(), cfg)
    sched = build_scheduler(opt, cfg, steps_per_epoch=50, epochs=2)  # 100 steps
    lrs = []
    for _ in range(100):
        lrs.append({g["name"]: g["lr"] for g in opt.param_groups})
        opt.step()
        sched.step()
    assert lrs[0]["rest_decay"] == pytest.approx(1e-6) and lrs[0]["vit_decay"] == pytest.approx(1e-6)
    assert lrs[10]["rest_decay"] == pytest.approx(1e-4) and lrs[10]["vit_decay"] == pytest.approx(1e-5)
    assert lrs[5]["rest_decay"] == pytest.approx(1e-6 + (1e-4 - 1e-6) * 0.5)
    assert lrs[99]["rest_decay"] == pytest.approx(1e-6) and lrs[99]["vit_decay"] == pytest.approx(1e-6)
    mid = step_lr(10 + 44, 1e-4, cfg, 100)  # halfway through the decay
    assert mid == pytest.approx(1e-6 + 0.5 * (1e-4 - 1e-6) * (1 + math.cos(math.pi * 44 / 89)))
    assert all(lrs[i]["rest_decay"] >= lrs[i + 1]["rest_decay"] for i in range(10, 99))


def test_albef_epoch_schedule_matches_official_stepping():
    # VQA official: 8 epochs, warm-up 4 units of 100 iterations, lr1 3e-5, warmup_lr 1e-5, min 1e-6
    cfg = OptimConfig(lr=3e-5, lr_vit=5e-6, warmup_lr=1e-5, min_lr=1e-6, warmup_epochs=4,
                      schedule="albef_epoch")
    per_epoch = 1000
    assert albef_epoch_lr(0, 3e-5, cfg, per_epoch, 8) == pytest.approx(1e-5)
    assert albef_epoch_lr(250, 3e-5, cfg, per_epoch, 8) == pytest.approx(1e-5 + 2 * (2e-5 / 4))
    # after 400 iterations t = 4: cosine evaluated at t=4 of 8, not at its start
    def cosine(t: int) -> float:
        return 1e-6 + 0.5 * 2.9e-5 * (1 + math.cos(math.pi * t / 8))

    assert albef_epoch_lr(999, 3e-5, cfg, per_epoch, 8) == pytest.approx(cosine(4))
    assert albef_epoch_lr(1000, 3e-5, cfg, per_epoch, 8) == pytest.approx(cosine(5))
    assert albef_epoch_lr(4000, 3e-5, cfg, per_epoch, 8) == pytest.approx(1e-6)  # t=8 >= epochs


# ----------------------------------------------------------------------------- launchers
def test_expand_nodelist():
    assert expand_nodelist("gpu[01-03,07],cpu1") == ["gpu01", "gpu02", "gpu03", "gpu07", "cpu1"]
    assert expand_nodelist("node7") == ["node7"]
    assert expand_nodelist("a[8-10]") == ["a8", "a9", "a10"]


def test_detect_torchrun_slurm_single():
    d = detect({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "MASTER_ADDR": "h", "MASTER_PORT": "1234"})
    assert (d.rank, d.world_size, d.local_rank, d.master_addr, d.master_port, d.launcher) == \
        (3, 8, 1, "h", 1234, "torchrun")
    env = {"SLURM_PROCID": "9", "SLURM_NTASKS": "16", "SLURM_LOCALID": "1", "SLURM_STEP_ID": "0",
           "SLURM_NODELIST": "gpu[10-11]", "SLURM_JOB_ID": "4242"}
    d = detect(env)
    assert (d.rank, d.world_size, d.local_rank, d.master_addr, d.launcher) == (9, 16, 1, "gpu10", "slurm")
    assert d.master_port == 20000 + 4242
    export(d, env)
    assert env["RANK"] == "9" and env["WORLD_SIZE"] == "16" and env["MASTER_ADDR"] == "gpu10"
    # the batch script of a multi-task allocation (no srun step) is one process
    d = detect({"SLURM_PROCID": "0", "SLURM_NTASKS": "16"})
    assert (d.rank, d.world_size, d.launcher) == (0, 1, "single")
    with pytest.raises(ConfigError, match="rank 5 of world size 4"):
        detect({"RANK": "5", "WORLD_SIZE": "4"})


# ----------------------------------------------------------------------------- settings / plan
def _train(**over):
    return {"epochs": 2, "batch_size": 32, "lr_text": 1e-4, "lr_vision": 1e-5, "image_res": 64,
            "weight_decay": 0.02, **over}


def test_parse_train_settings_maps_keys():
    s = parse_train_settings(_train(precision="fp32", zero_stage=1, grad_clip=None, mlm_prob=0.2,
                                    queue_size=128, hflip=False, rand_augment=None,
                                    scheduler="linear", warmup_steps=5), seed=7)
    assert s.loop.seed == 7 and s.loop.batch_size == 32 and s.optim.lr_vit == 1e-5
    assert s.engine.zero_stage == 1 and s.engine.precision == "fp32" and s.engine.grad_clip == 0.0
    assert s.model_overrides["mlm_probability"] == 0.2 and s.model_overrides["queue_size"] == 128
    assert s.data_opts == {"flip": False, "randaugment": False}
    assert s.optim.schedule == "linear" and s.optim.warmup_steps == 5
    s = parse_train_settings(_train(scheduler="albef_epoch", warmup_epochs=4, eval_every=1500,
                                    train_splits=["train", "val", "vg_qa"],
                                    scst={"grad_path": "rescore", "beam_size": 3}), seed=0)
    assert (s.optim.schedule, s.optim.warmup_epochs, s.loop.eval_every) == ("albef_epoch", 4, 1500)
    assert s.train_splits == ("train", "val", "vg_qa") and s.scst["grad_path"] == "rescore"


def test_vqa_train_splits_become_datasets():
    from mplug.train.recipes import train_splits

    official = parse_train_settings(_train(train_splits=["train", "val", "vg_qa"]), seed=0)
    assert train_splits("vqa", official) == [("train", {"include_vg": True}), ("val", {"include_vg": False})]
    default = parse_train_settings(_train(), seed=0)
    assert train_splits("vqa", default) == [("train", {"include_vg": True})]  # train + VG-QA
    only_vg = parse_train_settings(_train(train_splits=["vg_qa"]), seed=0)
    assert train_splits("vqa", only_vg) == [("vg_qa", {"include_vg": False})]
    assert train_splits("caption", official) == [("train", {})]


@pytest.mark.parametrize("bad, match", [
    ({"epoch": 3}, "unknown key train.epoch"),
    ({"batch_size": 0}, "train.batch_size=0"),
    ({"optimizer": "sgd"}, "only adamw"),
    ({"zero_stage": 5}, "zero_stage"),
    ({"scheduler": "step"}, "schedule"),
    ({"grounding": {"loss_weighting": "plain"}}, "loss_weighting"),
    ({"warmup_epochs": -1}, "train.warmup_epochs=-1"),
    ({"train_splits": ["train", "test"]}, "train.train_splits"),
    ({"scst": {"grad_path": "sample"}}, "train.scst.grad_path='sample'"),
])
def test_parse_train_settings_errors_name_the_key(bad, match):
    with pytest.raises(ConfigError, match=match):
        parse_train_settings(_train(**bad), seed=0)


def test_batch_plan_deterministic_disjoint_and_resumable():
    plan = BatchPlan(n_examples=103, global_batch=16, world_size=2, grad_accum=2, seed=5)
    assert plan.micro_batch == 4 and plan.steps_per_epoch == 6 and plan.micro_batches_per_epoch == 12
    r0, r1 = plan.epoch_batches(0, 0), plan.epoch_batches(0, 1)
    assert r0 == plan.epoch_batches(0, 0)  # a function of (seed, epoch, rank) only
    flat = [i for b in r0 + r1 for i in b]
    assert len(flat) == len(set(flat)) == 96  # disjoint across ranks, last partial batch dropped
    assert plan.epoch_batches(1, 0) != r0  # reshuffled per epoch
    with pytest.raises(ConfigError, match="larger than the dataset"):
        BatchPlan(n_examples=10, global_batch=16)


def test_alpha_ramp_over_the_first_epoch():
    from mplug.train.loop import StepContext
    from mplug.train.recipes import alpha_at

    assert alpha_at(0.4, StepContext(epoch=0, step=0, micro_in_epoch=0, micro_per_epoch=10)) == 0.0
    assert alpha_at(0.4, StepContext(0, 5, 5, 10)) == pytest.approx(0.2)
    assert alpha_at(0.4, StepContext(1, 12, 2, 10)) == 0.4


def test_dataset_folders_prefer_the_stage_list(tmp_path):
    from mplug.train.recipes import dataset_folders

    for name in ("refcoco", "refcoco+", "pretrain_14m"):
        (tmp_path / name).mkdir()
    assert dataset_folders("grounding", tmp_path, ["refcoco", "refcoco+"], None) == ["refcoco", "refcoco+"]
    # real-data configs list download sources: fall back to the stage's / task's folder
    assert dataset_folders("pretrain", tmp_path, ["coco", "vg"], "pretrain_14m") == ["pretrain_14m"]
    assert dataset_folders("vqa", tmp_path, ["vqa_raw"], None) == [None]
