"""Backbone: shapes, masks, SDPA vs eager, HF BERT equivalence, pos-embed resize, gradients."""
import pytest
import torch

from mplug.models import get_config
from mplug.models.bert import TextEncoder, map_hf_bert
from mplug.models.info import used_parameters
from mplug.models.mplug import MPLUGBackbone
from mplug.models.vision import resize_pos_embed


def _vqa_forward(model, image, ids, mask):
    v, vm = model.encode_image(image)
    t = model.encode_text(ids, mask)
    v2, t2 = model.fuse(v, vm, t, mask)
    states, states_mask = torch.cat([v2, t2], 1), torch.cat([vm, mask], 1)
    out = model.text_decoder(ids, mask, states, states_mask, labels=ids.masked_fill(mask == 0, -100))
    return v, t, v2, t2, out


def test_shapes(backbone, tiny_cfg, make_inputs):
    image, ids, mask = make_inputs(tiny_cfg)
    v, t, v2, t2, out = _vqa_forward(backbone, image, ids, mask)
    n = tiny_cfg.vision.n_tokens
    assert v.shape == v2.shape == (2, n, 32) and t.shape == t2.shape == (2, 6, 32)
    assert out.logits.shape == (2, 6, tiny_cfg.text.vocab_size) and out.loss.dim() == 0
    assert torch.isfinite(out.loss)


def test_video_is_per_frame_tokens_concatenated(backbone, tiny_cfg):
    r = tiny_cfg.vision.image_res
    video = torch.randn(2, 3, 3, r, r)
    tokens, mask = backbone.encode_image(video)
    n = tiny_cfg.vision.n_tokens
    assert tokens.shape == (2, 3 * n, 32) and mask.shape == (2, 3 * n) and bool(mask.all())
    frame1, _ = backbone.encode_image(video[:, 1])
    torch.testing.assert_close(tokens[:, n:2 * n], frame1)


def test_visn_fc_when_widths_differ():
    cfg = get_config("mplug_tiny", **{"vision.width": 48, "vision.heads": 3})
    model = MPLUGBackbone(cfg).eval()
    assert model.visn_fc.in_features == 48 and model.visn_layer_norm.eps == 1e-12
    v, _ = model.encode_image(torch.randn(1, 3, 32, 32))
    assert v.shape[-1] == 32


def test_padding_does_not_leak(backbone, tiny_cfg, make_inputs):
    image, ids, mask = make_inputs(tiny_cfg)
    other = ids.clone()
    other[-1, 4:] = 777  # change only padded positions
    with torch.no_grad():
        a = _vqa_forward(backbone, image, ids, mask)
        b = _vqa_forward(backbone, image, other, mask)
    torch.testing.assert_close(a[3][:, :4], b[3][:, :4])  # fused text, real tokens
    torch.testing.assert_close(a[2], b[2])  # visual tokens after the connected layer
    torch.testing.assert_close(a[4].logits[:, :4], b[4].logits[:, :4])


def test_sdpa_equals_eager(tiny_cfg, make_inputs):
    image, ids, mask = make_inputs(tiny_cfg)
    outs = []
    for impl in ("sdpa", "eager"):
        torch.manual_seed(0)
        model = MPLUGBackbone(tiny_cfg.replace(attn_impl=impl)).eval()
        with torch.no_grad():
            outs.append(_vqa_forward(model, image, ids, mask))
    for a, b in zip(outs[0][:4], outs[1][:4]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(outs[0][4].logits, outs[1][4].logits, atol=1e-5, rtol=1e-5)


def test_text_encoder_matches_hf_bert():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    hf_cfg = BertConfig(hidden_size=32, num_attention_heads=2, intermediate_size=64, vocab_size=120,
                        num_hidden_layers=4, max_position_embeddings=64)
    hf = BertModel(hf_cfg, add_pooling_layer=False).eval()
    tcfg = get_config("mplug_tiny", vocab_size=120).text
    ours = TextEncoder(tcfg, 2).eval()
    full = dict(hf.state_dict())
    ours.load_state_dict(map_hf_bert(full, range(2)), strict=True)
    ids = torch.randint(1, 120, (2, 7))
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 5:] = 0
    hf.encoder.layer = hf.encoder.layer[:2]  # the text encoder is BERT layers 0..n-1
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask).last_hidden_state
        got = ours(ids, mask)
    torch.testing.assert_close(got[0], want[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[1, :5], want[1, :5], atol=1e-5, rtol=1e-5)
    # fusion init = BERT layers 2..3 renumbered 0..1, without embeddings
    mapped = map_hf_bert(full, range(2, 4), 2, embeddings=False)
    assert mapped and all(k.startswith(("encoder.layer.0.", "encoder.layer.1.")) for k in mapped)
    torch.testing.assert_close(mapped["encoder.layer.0.output.dense.weight"],
                               full["encoder.layer.2.output.dense.weight"])


def test_resize_pos_embed_keeps_cls_row():
    pos = torch.randn(1 + 16, 8)  # 4x4 grid
    out = resize_pos_embed(pos, 6)
    assert out.shape == (37, 8)
    torch.testing.assert_close(out[0], pos[0])
    assert resize_pos_embed(pos, 4) is pos
    # bilinear without align_corners: a constant grid stays constant
    const = torch.cat([pos[:1], torch.ones(16, 8)])
    torch.testing.assert_close(resize_pos_embed(const, 7)[1:], torch.ones(49, 8))
    with pytest.raises(ValueError, match="square"):
        resize_pos_embed(torch.randn(1 + 15, 8), 4)


def test_other_resolution_interpolates_on_the_fly(backbone):
    v, _ = backbone.encode_image(torch.randn(1, 3, 48, 48))
    assert v.shape == (1, 1 + 36, 32)


def test_determinism_under_fixed_seed(tiny_cfg, make_inputs):
    image, ids, mask = make_inputs(tiny_cfg)
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        model = MPLUGBackbone(tiny_cfg).train()
        torch.manual_seed(7)  # dropout stream
        outs.append(_vqa_forward(model, image, ids, mask)[4].loss)
    assert outs[0].item() == outs[1].item()


@pytest.mark.parametrize("ckpt", [False, True])
def test_gradients_reach_exactly_the_used_parameters(tiny_cfg, ckpt, make_inputs):
    torch.manual_seed(0)
    model = MPLUGBackbone(tiny_cfg.replace(grad_checkpointing=ckpt)).train()
    image, ids, mask = make_inputs(tiny_cfg)
    _vqa_forward(model, image, ids, mask)[4].loss.backward()
    used = {id(p) for p in used_parameters(model, "vqa")}
    for name, p in model.named_parameters():
        has_grad = p.grad is not None and bool(p.grad.abs().sum() > 0)
        assert has_grad == (id(p) in used), name
    # the only unused tensors are the connected layer's cross-attention (official: dead there)
    unused = [n for n, p in model.named_parameters() if id(p) not in used]
    assert unused and all(n.startswith("fusion_encoder.encoder.layer.3.crossattention.") for n in unused)


def test_gradient_checkpointing_same_gradients(tiny_cfg, make_inputs):
    grads = []
    image, ids, mask = make_inputs(tiny_cfg)
    for ckpt in (False, True):
        torch.manual_seed(0)
        model = MPLUGBackbone(tiny_cfg.replace(grad_checkpointing=ckpt)).eval()
        _vqa_forward(model, image, ids, mask)[4].loss.backward()
        grads.append(model.visual_encoder.conv1.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])
