"""CLIP vision transformer with OpenAI CLIP parameter names (weights map 1:1 from CLIP).

Keys: conv1.weight (no bias), class_embedding (W), positional_embedding (1+P, W), ln_pre,
transformer.resblocks.N.{attn.in_proj_weight, attn.in_proj_bias, attn.out_proj.{weight,bias},
ln_1, mlp.c_fc, mlp.c_proj, ln_2}, ln_post. No `proj`: like the official `skip_last_layer=True`,
`forward` returns ln_post over ALL tokens without the projection.
"""
from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from mplug.models.attention import attend
from mplug.models.config import VisionConfig


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class LayerNorm(nn.LayerNorm):
    """CLIP's LayerNorm: computes in fp32 and casts back (stable under fp16/bf16)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # weights cast too: under DeepSpeed bf16 they are bf16, and a fp32 input with bf16
        # weights is a dtype error in F.layer_norm
        w = None if self.weight is None else self.weight.float()
        b = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, w, b, self.eps).to(x.dtype)


class CLIPAttention(nn.Module):
    """nn.MultiheadAttention's parameter layout (in_proj_weight/bias, out_proj) with SDPA/eager."""

    def __init__(self, width: int, heads: int, dropout: float, impl: str):
        super().__init__()
        self.heads, self.dropout, self.impl = heads, dropout, impl
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (B, N, W)
        b, n, w = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)  # (B, N, 3W)
        qkv = qkv.view(b, n, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        out = attend(qkv[0], qkv[1], qkv[2], None, self.dropout if self.training else 0.0, self.impl)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, w))


class ResidualAttentionBlock(nn.Module):
    """Pre-LN block: x + attn(ln_1(x)); x + mlp(ln_2(x))."""

    def __init__(self, cfg: VisionConfig, impl: str):
        super().__init__()
        w, hidden = cfg.width, int(cfg.width * cfg.mlp_ratio)
        self.attn = CLIPAttention(w, cfg.heads, cfg.attn_dropout, impl)
        self.ln_1 = LayerNorm(w, eps=cfg.ln_eps)
        act = QuickGELU() if cfg.quick_gelu else nn.GELU()
        self.mlp = nn.Sequential(OrderedDict(
            [("c_fc", nn.Linear(w, hidden)), ("gelu", act), ("c_proj", nn.Linear(hidden, w))]))
        self.ln_2 = LayerNorm(w, eps=cfg.ln_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, cfg: VisionConfig, impl: str, grad_checkpointing: bool = False):
        super().__init__()
        self.resblocks = nn.ModuleList([ResidualAttentionBlock(cfg, impl) for _ in range(cfg.layers)])
        self.grad_checkpointing = grad_checkpointing

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.resblocks:
            if self.grad_checkpointing and self.training and x.requires_grad:
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return x


def resize_pos_embed(pos: torch.Tensor, new_grid: int | tuple[int, int]) -> torch.Tensor:
    """Interpolate a ViT position embedding (1+P_old, W) to a new patch grid, keeping the CLS row.

    Bilinear with torch's default align_corners, as the official `models/vit.py:resize_pos_embed`
    that every fine-tuning script applies at load time. Returns (1 + gh*gw, W).
    """
    gh, gw = (new_grid, new_grid) if isinstance(new_grid, int) else new_grid
    cls_row, grid = pos[:1], pos[1:]
    old = int(round(math.sqrt(grid.size(0))))
    if old * old != grid.size(0):
        raise ValueError(f"position embedding has {grid.size(0)} patch rows, not a square grid")
    if (old, old) == (gh, gw):
        return pos
    dtype = pos.dtype
    grid = grid.float().reshape(1, old, old, -1).permute(0, 3, 1, 2)  # (1, W, old, old)
    grid = F.interpolate(grid, size=(gh, gw), mode="bilinear")
    grid = grid.permute(0, 2, 3, 1).reshape(gh * gw, -1).to(dtype)
    return torch.cat([cls_row, grid], dim=0)


class VisionTransformer(nn.Module):
    """CLIP ViT: image (B,3,H,W) -> ln_post(all tokens) (B, 1+P, W)."""

    def __init__(self, cfg: VisionConfig, attn_impl: str = "sdpa", grad_checkpointing: bool = False):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        scale = w ** -0.5
        self.conv1 = nn.Conv2d(3, w, kernel_size=cfg.patch, stride=cfg.patch, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(w))
        self.positional_embedding = nn.Parameter(scale * torch.randn(cfg.n_tokens, w))
        self.ln_pre = LayerNorm(w, eps=cfg.ln_eps)
        self.transformer = Transformer(cfg, attn_impl, grad_checkpointing)
        self.ln_post = LayerNorm(w, eps=cfg.ln_eps)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.conv1(image.to(self.conv1.weight.dtype))  # (B, W, gh, gw)
        gh, gw = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)  # (B, P, W)
        cls = self.class_embedding.to(x.dtype).expand(x.size(0), 1, -1)
        x = torch.cat([cls, x], dim=1)  # (B, 1+P, W)
        pos = self.positional_embedding
        if pos.size(0) != x.size(1):
            # A resolution other than the one the weights were built for: interpolate on the fly
            # (the official code slices pos[:N], which is only right for the built resolution).
            pos = resize_pos_embed(pos, (gh, gw))
        x = self.ln_pre(x + pos.to(x.dtype))
        x = self.transformer(x)
        return self.ln_post(x)
