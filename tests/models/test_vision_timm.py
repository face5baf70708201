"""Our CLIP ViT against timm's VisionTransformer, loaded through timm's own OpenAI-CLIP converter
(`timm.models.vision_transformer._convert_openai_clip`): same weights, same features. The BERT
text encoder has its counterpart against transformers' BertModel (test_core_model.py)."""
from __future__ import annotations

from functools import partial

import pytest
import torch
from torch import nn

from mplug.models.config import VisionConfig
from mplug.models.vision import VisionTransformer

timm_vit = pytest.importorskip("timm.models.vision_transformer")


def timm_clip_vit(cfg: VisionConfig) -> nn.Module:
    """timm's ViT in the OpenAI CLIP layout (pre-norm, QuickGELU, no pooling head)."""
    return timm_vit.VisionTransformer(
        img_size=cfg.image_res, patch_size=cfg.patch, embed_dim=cfg.width, depth=cfg.layers,
        num_heads=cfg.heads, mlp_ratio=cfg.mlp_ratio, qkv_bias=True, pre_norm=True,
        num_classes=0, global_pool="token", act_layer="quick_gelu",
        norm_layer=partial(nn.LayerNorm, eps=cfg.ln_eps))


@pytest.mark.parametrize("cfg", [VisionConfig(width=32, layers=2, heads=2, patch=8, image_res=32),
                                 VisionConfig(width=48, layers=3, heads=4, patch=14, image_res=56)],
                         ids=["p8", "p14"])
def test_vit_features_equal_timm_through_its_clip_converter(cfg):
    torch.manual_seed(0)
    ours = VisionTransformer(cfg, attn_impl="eager").eval()
    openai_state = {f"visual.{k}": v for k, v in ours.state_dict().items()}
    theirs = timm_clip_vit(cfg).eval()
    converted = timm_vit._convert_openai_clip(openai_state, theirs)
    missing, unexpected = theirs.load_state_dict(converted, strict=False)
    assert not unexpected, unexpected
    assert not missing, missing  # every timm tensor comes from our OpenAI-named weights
    image = torch.randn(2, 3, cfg.image_res, cfg.image_res)
    with torch.no_grad():
        expected = theirs.forward_features(image)  # (B, 1+P, W): norm over all tokens
        got = ours(image)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
