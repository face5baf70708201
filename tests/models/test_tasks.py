"""Task models on the tiny config: losses, gradients, inference methods, options."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _task_batches import make_batch  # noqa: E402

from mplug.errors import ConfigError  # noqa: E402
from mplug.models.tasks import build_model  # noqa: E402
from mplug.task_registry import model_tasks  # noqa: E402

torch.set_num_threads(1)

COMPONENTS = {"pretrain": {"loss_itc", "loss_itm", "loss_mlm", "loss_prefix"}, "vqa": {"loss_vqa"},
              "caption": {"loss_caption"}, "retrieval": {"loss_itc", "loss_itm"},
              "grounding": {"loss_grounding"}, "nlvr2": {"loss_cls"}, "snli_ve": {"loss_cls"}}


@pytest.mark.parametrize("task", model_tasks())
def test_loss_finite_and_gradients_reach_every_trained_parameter(task):
    torch.manual_seed(0)
    model = build_model("mplug_tiny", task).train()
    out = model(make_batch(task, model.cfg))
    assert COMPONENTS[task] <= set(out)
    assert torch.isfinite(out["loss"]) and out["loss"].requires_grad
    out["loss"].backward()
    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trained
    no_grad = [n for n, p in trained if p.grad is None or not torch.isfinite(p.grad).all()
               or p.grad.abs().sum() == 0]
    assert no_grad == []
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    # only the momentum copies and official never-used weights are frozen
    allowed = ("_m.", "crossattention.", "crossattention2.", "text_encoder.", "fusion_encoder.")
    assert all(n.split(".")[0].endswith("_m") or any(a in n for a in allowed) for n in frozen)


def test_connected_layer_cross_attention_is_frozen_and_the_rest_trains():
    model = build_model("mplug_tiny", "vqa")  # 4 fusion layers, stride 3: relative layer 3 connected
    layers = model.fusion_encoder.encoder.layer
    assert not any(p.requires_grad for p in layers[3].crossattention.parameters())
    assert all(p.requires_grad for p in layers[2].crossattention.parameters())


def test_vqa_loss_weighting_by_hand():
    torch.manual_seed(0)
    model = build_model("mplug_tiny", "vqa").eval()
    batch = make_batch("vqa", model.cfg, b=4)
    loss = model(batch)["loss"]
    memory, mask = model.fused_states(batch["image"], batch["text_ids"], batch["text_mask"])
    total = 0.0
    for k in range(batch["answer_ids"].size(0)):
        row = int(batch["answer_index"][k])
        ids = batch["answer_ids"][k: k + 1]
        n = int(batch["answer_mask"][k].sum())
        logits = model.text_decoder(ids[:, :n], None, memory[row: row + 1], mask[row: row + 1]).logits
        logp = torch.log_softmax(logits[0, :-1], dim=-1)
        nll = -logp[torch.arange(n - 1), ids[0, 1:n]].sum()  # every answer token after [CLS]
        total = total + batch["answer_weight"][k] * nll
    assert torch.allclose(loss, total / 4, rtol=1e-4, atol=1e-5)


def test_vqa_generate_and_rank():
    torch.manual_seed(0)
    model = build_model("mplug_tiny", "vqa").eval()
    batch = make_batch("vqa", model.cfg, b=2)
    ids, scores = model.generate(batch, beam_size=3, max_length=5, num_return=2)
    assert ids.shape[:2] == (2, 2) and ids.shape[2] <= 5 and scores.shape == (2, 2)
    idx, probs = model.rank_answers(batch, batch["answer_ids"], batch["answer_mask"], k=3)
    assert idx.shape == (2, 3) and torch.allclose(probs.sum(1), torch.ones(2))
    video = dict(batch, image=torch.randn(2, 3, 3, 32, 32))  # (B, F, 3, H, W)
    assert torch.isfinite(model(video)["loss"])


@pytest.mark.parametrize("mode", ["visual", "fused"])
def test_caption_modes(mode):
    torch.manual_seed(0)
    model = build_model("mplug_tiny", "caption", caption_input=mode)
    frozen = not any(p.requires_grad for p in model.text_encoder.parameters())
    assert frozen == (mode == "visual")
    batch = make_batch("caption", model.cfg, b=2)
    memory, _ = model.memory(batch)
    n_visual = model.cfg.vision.n_tokens
    assert memory.shape[1] == (n_visual if mode == "visual" else n_visual + 1)
    model.train()
    loss = model(batch)["loss"]
    loss.backward()
    assert torch.isfinite(loss)
    model.eval()
    prompt = torch.tensor([101, 1050])
    ids, _ = model.generate(batch, beam_size=2, min_length=2, max_length=4, prompt_ids=prompt)
    assert ids.shape[0] == 2 and ids.shape[2] <= 4


def test_retrieval_inference_methods():
    torch.manual_seed(0)
    model = build_model("mplug_tiny", "retrieval").eval()
    batch = make_batch("retrieval", model.cfg, b=3)
    feats = model.itc_features(batch["image"], batch["text_ids"], batch["text_mask"])
    sim = model.itc_sim(feats["image_feat"], feats["text_feat"])
    assert sim.shape == (3, 3) and sim.abs().max() <= 1 + 1e-5
    scores = model.itm_scores(feats["image_embeds"], feats["text_embeds"], batch["text_mask"],
                              feats["image_mask"])
    assert scores.shape == (3,)
    # the same score through the full fused path (no precomputation)
    _, t = model.fuse(feats["image_embeds"], None, feats["text_embeds"], batch["text_mask"])
    assert torch.allclose(scores, model.itm_head(t[:, 0])[:, 1], atol=1e-5)
    video = model.itc_features(image=torch.randn(2, 4, 3, 32, 32))
    assert video["image_feat"].shape == (2, model.cfg.embed_dim)
    assert video["image_embeds"].shape[1] == 4 * model.cfg.vision.n_tokens


def test_retrieval_without_distillation_and_with_clamp():
    torch.manual_seed(0)
    model = build_model("mplug_tiny", "retrieval", distill=False, clamp_temp=True).train()
    assert not any(n.endswith("_m") for n, _ in model.named_children())
    with torch.no_grad():
        model.temp.fill_(5.0)
    out = model(make_batch("retrieval", model.cfg))
    assert model.temp.item() == pytest.approx(0.5) and torch.isfinite(out["loss"])


def test_distillation_alpha_changes_the_itc_loss():
    torch.manual_seed(0)
    model = build_model("mplug_tiny", "retrieval").eval()  # eval: no queue/momentum update
    batch = make_batch("retrieval", model.cfg)
    torch.manual_seed(1)
    a = model(batch, alpha=0.0)["loss_itc"]
    b = model(batch, alpha=0.4)["loss_itc"]
    assert not torch.allclose(a, b)  # the soft targets change the ITC loss


def test_grounding_generate_returns_boxes():
    torch.manual_seed(0)
    model = build_model("mplug_tiny", "grounding").eval()
    boxes = model.generate(make_batch("grounding", model.cfg, b=3))
    assert boxes.shape == (3, 4) and boxes.min() >= 0 and boxes.max() <= 1
    with pytest.raises(ConfigError, match="vocab_size"):
        build_model("mplug_tiny", "grounding", vocab_size=400)
    small = build_model("mplug_tiny", "grounding", vocab_size=400, grounding_bins=33)
    assert torch.isfinite(small.train()(make_batch("grounding", small.cfg))["loss"])


def test_classifiers_predict():
    torch.manual_seed(0)
    for task, n in (("nlvr2", 2), ("snli_ve", 3)):
        model = build_model("mplug_tiny", task).eval()
        pred = model.predict(make_batch(task, model.cfg, b=3))
        assert pred.shape == (3,) and pred.max() < n
    nlvr = build_model("mplug_tiny", "nlvr2")
    nlvr.init_crossattention2()
    layer = nlvr.fusion_encoder.encoder.layer[0]
    assert torch.equal(layer.crossattention2.self.key.weight, layer.crossattention.self.key.weight)


def test_build_model_options_and_errors():
    with pytest.raises(ConfigError, match="unknown task"):
        build_model("mplug_tiny", "ocr")
    with pytest.raises(ConfigError, match="caption_input"):
        build_model("mplug_tiny", "caption", caption_input="both")
    with pytest.raises(ConfigError, match="nonsense"):
        build_model("mplug_tiny", "vqa", nonsense=1)
    assert build_model("mplug_tiny", "vqa", image_res=48).cfg.vision.image_res == 48


def test_determinism_under_seed():
    outs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = build_model("mplug_tiny", "pretrain").train()
        outs.append(model(make_batch("pretrain", model.cfg))["loss"].detach())
    assert torch.equal(outs[0], outs[1])
