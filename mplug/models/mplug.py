"""The mPLUG backbone: visual encoder (+ visn_fc for large), text encoder, fusion, decoder.

Task models (mplug/models/tasks.py) compose this with heads; this module holds no losses.
"""
from __future__ import annotations

import torch
from torch import nn

from mplug.models.bert import TextEncoder
from mplug.models.config import MPLUGConfig
from mplug.models.decoder import TextDecoder
from mplug.models.fusion import FusionEncoder
from mplug.models.vision import VisionTransformer


class MPLUGBackbone(nn.Module):
    """Modules: visual_encoder, [visn_fc, visn_layer_norm, dropout], text_encoder, fusion_encoder,
    text_decoder. `n_images=2` builds the NLVR2 fusion (a second cross-attention per layer);
    `with_decoder=False` skips the decoder (retrieval, NLVR2, SNLI-VE have none)."""

    def __init__(self, cfg: MPLUGConfig, n_images: int = 1, with_decoder: bool = True):
        super().__init__()
        self.cfg = cfg
        self.visual_encoder = VisionTransformer(cfg.vision, cfg.attn_impl, cfg.grad_checkpointing)
        if cfg.use_visn_fc:
            self.visn_fc = nn.Linear(cfg.vision.width, cfg.text.hidden)
            self.visn_layer_norm = nn.LayerNorm(cfg.text.hidden, eps=cfg.text.layer_norm_eps)
            self.dropout = nn.Dropout(cfg.text.hidden_dropout)
        self.text_encoder = TextEncoder(cfg.text, cfg.text_layers, cfg.attn_impl, cfg.grad_checkpointing)
        self.fusion_encoder = FusionEncoder(cfg, n_images=n_images)
        self.text_decoder = TextDecoder(cfg) if with_decoder else None

    def encode_image(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """image (B,3,H,W) -> tokens (B, 1+P, D); video (B,F,3,H,W) -> (B, F*(1+P), D): each
        frame through the ViT, tokens concatenated along the sequence, no temporal embedding (as
        official). Returns (tokens, all-ones mask (B, N) long)."""
        if image.dim() == 5:
            b, f = image.shape[:2]
            tokens = self._encode_frames(image.flatten(0, 1))  # (B*F, 1+P, D)
            tokens = tokens.reshape(b, f * tokens.size(1), tokens.size(2))
        elif image.dim() == 4:
            tokens = self._encode_frames(image)
        else:
            raise ValueError(f"image must be (B,3,H,W) or (B,F,3,H,W), got {tuple(image.shape)}")
        mask = torch.ones(tokens.shape[:2], dtype=torch.long, device=tokens.device)
        return tokens, mask

    def _encode_frames(self, image: torch.Tensor) -> torch.Tensor:
        x = self.visual_encoder(image)  # (B, 1+P, W)
        if self.cfg.use_visn_fc:
            x = self.dropout(self.visn_layer_norm(self.visn_fc(x)))  # (B, 1+P, D)
        return x

    def encode_text(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """ids (B, L), mask (B, L) -> (B, L, D)."""
        return self.text_encoder(ids, mask)

    def fuse(self, v, v_mask, t: torch.Tensor, t_mask: torch.Tensor, cross_kv=None):
        """(v (B,N,D), v_mask, t (B,L,D), t_mask) -> (v', t'); see FusionEncoder.forward."""
        return self.fusion_encoder(v, v_mask, t, t_mask, cross_kv=cross_kv)
