"""The analytic training-step FLOPs (mplug.models.flops.train_step_flops) against torch's
FlopCounterMode on the real forward + backward of each task model.

The measured runs use attn_impl="eager": on the CPU, torch's fused SDPA kernel
(`_scaled_dot_product_flash_attention_for_cpu`) has no FlopCounterMode formula, so under "sdpa"
the QK^T and AV products would count as 0. Eager attention computes the same products with
explicit matmuls, which are counted (the two implementations agree numerically, tested elsewhere).
"""
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from mplug.bench.train import random_batch
from mplug.models import build_model
from mplug.models import heads as H
from mplug.models.flops import fusion_flops_for, pretrain_split, train_step_flops

sys.path.insert(0, str(Path(__file__).parent))
from _task_batches import make_batch  # noqa: E402

TOL = 0.05


def _measure(model, batch, backward=True):
    model.train()
    with FlopCounterMode(display=False) as fc:
        out = model(batch)
        if backward:
            out["loss"].backward()
    return fc.get_total_flops()


@pytest.fixture
def split_widths(monkeypatch):
    """Record the widths the PrefixLM split of the measured run padded to (it is random)."""
    seen = {}

    def recording(*args, **kwargs):
        out = split(*args, **kwargs)
        seen.update(prefix_len=out[0].size(1), target_len=out[2].size(1))
        return out

    split = H.split_prefix
    monkeypatch.setattr(H, "split_prefix", recording)
    return seen


def _pretrain(model_name="mplug_tiny", b=4, n_text=12, **over):
    torch.manual_seed(0)
    model = build_model(model_name, "pretrain", attn_impl="eager", **over)
    return model, random_batch(model.cfg, b, n_text)  # the batch `mplug bench train` times


def _close(analytic, measured):
    return abs(analytic - measured) <= TOL * measured


@pytest.mark.parametrize("distill", [True, False])
def test_pretrain_step_matches_flop_counter(split_widths, distill):
    model, batch = _pretrain(distill=distill)
    measured = _measure(model, batch)
    got = train_step_flops(model.cfg, "pretrain", 4, 12, distill=distill, **split_widths)
    assert _close(got["total"], measured), (got["total"], measured)
    assert got["flops_per_sample"] == got["total"] / 4
    assert ("momentum_forward" in got["components"]) is distill
    # the test can fail: leaving out any component bigger than the tolerance (plus whatever the
    # analytic count is off by) misses
    slack = TOL * measured + abs(got["total"] - measured)
    big = {k: c["total"] for k, c in got["components"].items() if c["total"] > slack}
    assert {"vit", "itm_fusion_pos", "itm_fusion_neg", "mlm_fusion", "mlm_head", "prefix_fusion",
            "decoder", "lm_head"} <= set(big), sorted(big)
    for name, flops in big.items():
        assert not _close(got["total"] - flops, measured), name
    # ... and so does counting the forward alone, or forgetting that momentum has no backward
    assert not _close(got["forward"], measured)
    if distill:
        mom = got["components"]["momentum_forward"]["forward"]
        assert not _close(got["total"] + 2 * mom, measured)


def test_pretrain_forward_per_module(split_widths):
    """Forward alone, module by module (FlopCounterMode attributes forward FLOPs to the module
    that ran them; its backward attribution is not reliable, so the step total is checked above):
    every component is checked on its own, small ones included."""
    model, batch = _pretrain()
    model.train()
    with FlopCounterMode(display=False) as fc:
        model(batch)
    per_module = {k: sum(v.values()) for k, v in fc.get_flop_counts().items()}
    got = train_step_flops(model.cfg, "pretrain", 4, 12, **split_widths)
    fwd = {k: c["forward"] for k, c in got["components"].items()}
    groups = {
        "visual_encoder": fwd["vit_patch_embed"] + fwd["vit"],
        "text_encoder": fwd["text_encoder"] + fwd["mlm_text_encoder"] + fwd["prefix_text_encoder"],
        "fusion_encoder": fwd["itm_fusion_pos"] + fwd["itm_fusion_neg"] + fwd["mlm_fusion"] + fwd["prefix_fusion"],
        "mlm_head.predictions": fwd["mlm_head"], "text_decoder": fwd["decoder"] + fwd["lm_head"],
        "itm_head": fwd["itm_head"],
        "vision_proj": fwd["itc_proj"] // 2, "text_proj": fwd["itc_proj"] // 2,
    }
    for module, flops in groups.items():
        assert _close(flops, per_module[f"PretrainModel.{module}"]), module
    momentum = sum(per_module[f"PretrainModel.{m}_m"] for m in
                   ("visual_encoder", "text_encoder", "vision_proj", "text_proj"))
    assert _close(fwd["momentum_forward"], momentum)
    assert _close(got["forward"], per_module["Global"]), (got["forward"], per_module["Global"])


def test_pretrain_default_split_is_the_padded_batch():
    """Without measured widths the split is the one a batch pads to; at batch 32 the measured
    step (random split) is within the tolerance of it."""
    assert pretrain_split(12) == (6, 12) and pretrain_split(30) == (15, 30)
    model, batch = _pretrain(b=32, queue_size=64)
    measured = _measure(model, batch)
    assert _close(train_step_flops(model.cfg, "pretrain", 32, 12)["total"], measured)


@pytest.mark.parametrize("name,over", [
    ("mplug_large_mini", {"image_res": 56}),  # visn_fc, patch 14, stride 6
    ("mplug_tiny", {"fusion_type": "connected"}),
    ("mplug_tiny", {"fusion_type": "two_stream"}),
    ("mplug_tiny", {"schedule": "paper"}),
])
def test_pretrain_other_architectures(split_widths, name, over):
    model, batch = _pretrain(name, b=2, n_text=10, **over)
    measured = _measure(model, batch)
    got = train_step_flops(model.cfg, "pretrain", 2, 10, **split_widths)
    assert _close(got["total"], measured), (got["total"], measured)


def _finetune(task, **over):
    torch.manual_seed(0)
    model = build_model("mplug_tiny", task, attn_impl="eager", **over)
    return model, make_batch(task, model.cfg, b=4)


@pytest.mark.parametrize("task", ["vqa", "caption", "retrieval", "grounding", "snli_ve", "nlvr2"])
def test_finetune_step_matches_flop_counter(task):
    model, batch = _finetune(task)
    measured = _measure(model, batch)
    kw = {}
    if task == "vqa":  # K answer rows (not one per question) of the padded answer length
        kw = dict(n_answers=batch["answer_ids"].size(0), target_len=batch["answer_ids"].size(1))
    if task == "caption":
        kw = dict(target_len=batch["target_ids"].size(1))
    n_text = batch["text_ids"].size(1) if "text_ids" in batch else 1
    got = train_step_flops(model.cfg, task, 4, n_text, **kw)
    assert _close(got["total"], measured), (task, got["total"], measured)
    if task == "retrieval":  # ITM's hard negatives are a second fusion call over 2B pairs
        neg = got["components"]["itm_fusion_neg"]["total"]
        assert not _close(got["total"] - neg, measured)
    if task == "vqa":  # the decoder runs once per answer row, not per question
        assert not _close(train_step_flops(model.cfg, task, 4, n_text, target_len=kw["target_len"])["total"],
                          measured)


def test_caption_fused_input():
    model, batch = _finetune("caption", caption_input="fused")
    batch.update(make_batch("vqa", model.cfg, b=4))  # a text prompt for the encoder
    measured = _measure(model, batch)
    got = train_step_flops(model.cfg, "caption", 4, batch["text_ids"].size(1), caption_input="fused",
                           target_len=batch["target_ids"].size(1))
    assert _close(got["total"], measured), (got["total"], measured)


def test_fusion_figure_flops_unchanged(tiny_cfg):
    """The Figures 3/4 fusion FLOPs are still the per-call fusion component."""
    got = train_step_flops(tiny_cfg, "snli_ve", 3, 7)
    assert got["components"]["fusion"]["forward"] == fusion_flops_for(tiny_cfg, n_text=7, batch=3)


def test_unknown_task():
    with pytest.raises(ValueError, match="unknown task"):
        train_step_flops(build_model("mplug_tiny", "vqa").cfg, "nope", 1, 4)


def test_itc_queue_similarities():
    """A long queue makes the ITC similarities (and the distillation targets' ones) a large part
    of the step: their backward is 1 x forward (only the online side has a gradient)."""
    model, batch = _finetune("retrieval", queue_size=50000)
    measured = _measure(model, batch)
    got = train_step_flops(model.cfg, "retrieval", 4, batch["text_ids"].size(1))
    assert _close(got["total"], measured), (got["total"], measured)
    sim = got["components"]["itc_sim"]
    assert sim["total"] > 0.1 * measured
    assert not _close(got["total"] + sim["forward"], measured)  # a 2 x backward would miss


def test_video_retrieval_frames():
    """Video (B, F, 3, H, W): every frame through the ViT, F x (1 + P) visual tokens in fusion."""
    model, batch = _finetune("retrieval")
    batch["image"] = torch.randn(4, 3, 3, 32, 32)
    measured = _measure(model, batch)
    got = train_step_flops(model.cfg, "retrieval", 4, batch["text_ids"].size(1), n_frames=3)
    assert _close(got["total"], measured), (got["total"], measured)
