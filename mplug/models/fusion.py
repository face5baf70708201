"""Cross-modal skip-connected fusion (paper section 3.2, Eq. 1-5, Algorithm 1) and the fusion
networks it is compared with (Figures 1 and 4).

Layer kinds:
- `asymmetric` co-attention (Eq. 1-3): text self-attention -> text->vision cross-attention -> FFN,
  each post-LN. The visual tokens pass through untouched.
- `connected` attention (Eq. 4-5): self-attention + FFN over cat([v; l]) with the layer's OWN
  `attention`/`intermediate`/`output` weights (its `crossattention` is unused in that layer).
- `two_stream` co-attention (ablation): both streams self-attend, then cross-attend to the other
  stream's self-attended states, then their own FFN. The vision side has its own modules
  `vision_attention`, `vision_crossattention`, `vision_intermediate`, `vision_output`.

Which layer is which (`fusion_schedule(cfg)`):
- fusion_type 'skip', schedule 'official' (released code, default): relative layer i in 0..T-1 is
  connected when i != 0 and i % S == 0; after a connected layer v <- v + v_new (an extra visual
  residual, modeling_mplug.py:679-681) and the text is replaced.
- fusion_type 'skip', schedule 'paper' (Algorithm 1): layer i in 1..T is connected when
  i % (S+1) == 0; v <- v_new.
- 'connected' (single stream): every layer connected; 'asymmetric' (ALBEF/BLIP): none;
  'two_stream': every layer two-stream. The ablations use the plain v <- v_new update.

NLVR2 (`n_images=2`, paper section 5.5 following BLIP): every layer gets a second cross-attention
`crossattention2` for the second image; the two cross-attention outputs (each a post-LN sublayer
over the same self-attended text) are averaged before the FFN. Connected layers attend over
cat([v1; v2; t]). Initialise `crossattention2` as a copy of `crossattention` when fine-tuning.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from mplug.models.attention import padding_mask
from mplug.models.bert import KV, BertAttention, BertIntermediate, BertOutput, init_bert_weights
from mplug.models.config import MPLUGConfig

ASYMMETRIC, CONNECTED, TWO_STREAM = "asymmetric", "connected", "two_stream"


def fusion_schedule(cfg: MPLUGConfig) -> list[str]:
    """The kind of each of the cfg.fusion_layers layers, in order."""
    n, s = cfg.fusion_layers, cfg.stride
    if cfg.fusion_type == "connected":
        return [CONNECTED] * n
    if cfg.fusion_type == "asymmetric":
        return [ASYMMETRIC] * n
    if cfg.fusion_type == "two_stream":
        return [TWO_STREAM] * n
    if cfg.schedule == "official":
        return [CONNECTED if (i != 0 and i % s == 0) else ASYMMETRIC for i in range(n)]
    return [CONNECTED if i % (s + 1) == 0 else ASYMMETRIC for i in range(1, n + 1)]


class FusionLayer(nn.Module):
    """One fusion layer; `kind` picks which forward runs. Module names match the official
    FusionLayer (attention, crossattention, intermediate, output)."""

    def __init__(self, cfg: MPLUGConfig, kind: str, n_images: int = 1):
        super().__init__()
        t, impl = cfg.text, cfg.attn_impl
        self.kind = kind
        self.attention = BertAttention(t, None, impl)
        self.crossattention = BertAttention(t, t.hidden, impl)  # visual tokens are D-wide already
        self.crossattention2 = BertAttention(t, t.hidden, impl) if n_images == 2 else None
        self.intermediate = BertIntermediate(t)
        self.output = BertOutput(t)
        if kind == TWO_STREAM:
            self.vision_attention = BertAttention(t, None, impl)
            self.vision_crossattention = BertAttention(t, t.hidden, impl)
            self.vision_intermediate = BertIntermediate(t)
            self.vision_output = BertOutput(t)

    def ffn(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.intermediate(x), x)

    def forward(self, v: list[torch.Tensor], v_masks: list[torch.Tensor | None], t: torch.Tensor,
                t_mask: torch.Tensor | None, cross_kv: list[KV] | None = None):
        """v: list (one per image) of (B, N, D); masks additive (B,1,1,N); t (B, L, D).
        Returns (list of new visual states, new text)."""
        if self.kind == CONNECTED:
            return self._connected(v, v_masks, t, t_mask)
        if self.kind == TWO_STREAM:
            return self._two_stream(v, v_masks, t, t_mask)
        return v, self._asymmetric(v, v_masks, t, t_mask, cross_kv)

    def _asymmetric(self, v, v_masks, t, t_mask, cross_kv):  # Eq. 1-3
        t = self.attention(t, t_mask)[0]
        kvs = cross_kv or [None] * len(v)
        outs = [self.crossattention(t, v_masks[0], kv_states=v[0], kv=kvs[0])[0]]
        if len(v) == 2:
            outs.append(self.crossattention2(t, v_masks[1], kv_states=v[1], kv=kvs[1])[0])
        t = outs[0] if len(outs) == 1 else (outs[0] + outs[1]) / 2
        return self.ffn(t)

    def _connected(self, v, v_masks, t, t_mask):  # Eq. 4-5
        sizes = [x.size(1) for x in v] + [t.size(1)]
        x = torch.cat([*v, t], dim=1)  # (B, N(+N2)+L, D)
        mask = torch.cat([*v_masks, t_mask], dim=-1)
        x = self.ffn(self.attention(x, mask)[0])
        *v_new, t_new = torch.split(x, sizes, dim=1)
        return list(v_new), t_new

    def _two_stream(self, v, v_masks, t, t_mask):
        if len(v) != 1:
            raise ValueError("two_stream fusion supports one image per example")
        v0 = self.vision_attention(v[0], v_masks[0])[0]
        t_sa = self.attention(t, t_mask)[0]
        t_ca = self.crossattention(t_sa, v_masks[0], kv_states=v0)[0]
        v_ca = self.vision_crossattention(v0, t_mask, kv_states=t_sa)[0]
        v_out = self.vision_output(self.vision_intermediate(v_ca), v_ca)
        return [v_out], self.ffn(t_ca)


def _full_mask(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        mask = torch.ones(x.shape[:2], dtype=torch.long, device=x.device)
    return padding_mask(mask, x.dtype)


class FusionLayers(nn.Module):
    """Holds `layer` so that keys read `fusion_encoder.encoder.layer.N.*` as official."""

    def __init__(self, layers: list[FusionLayer]):
        super().__init__()
        self.layer = nn.ModuleList(layers)


class FusionEncoder(nn.Module):
    """The cross-modal fusion network: forward(v, v_mask, t, t_mask) -> (v', t')."""

    def __init__(self, cfg: MPLUGConfig, n_images: int = 1):
        super().__init__()
        if n_images not in (1, 2):
            raise ValueError(f"n_images={n_images}: fusion supports 1 or 2 images")
        self.cfg, self.n_images = cfg, n_images
        self.kinds = fusion_schedule(cfg)
        self.encoder = FusionLayers([FusionLayer(cfg, k, n_images) for k in self.kinds])
        # the official extra visual residual belongs to the released skip-connected schedule only
        self.visual_residual = cfg.fusion_type == "skip" and cfg.schedule == "official"
        self.grad_checkpointing = cfg.grad_checkpointing
        init_bert_weights(self, cfg.text.initializer_range)

    @property
    def first_visual_change(self) -> int:
        """Index of the first layer that changes the visual tokens (len(layers) if none)."""
        return next((i for i, k in enumerate(self.kinds) if k != ASYMMETRIC), len(self.kinds))

    def project_cross_kv(self, v: torch.Tensor | Sequence[torch.Tensor]) -> list[list[KV]]:
        """Cross-attention (k, v) of every layer before the first one that changes the visual
        tokens: list over those layers of [per-image (k, v)]. For retrieval reranking, project an
        image once and reuse it for many texts (expand the batch dim as needed)."""
        vs = [v] if torch.is_tensor(v) else list(v)
        out = []
        for i in range(self.first_visual_change):
            layer = self.encoder.layer[i]
            kvs = [layer.crossattention.project_kv(vs[0])]
            if len(vs) == 2:
                kvs.append(layer.crossattention2.project_kv(vs[1]))
            out.append(kvs)
        return out

    def forward(self, v, v_mask, t: torch.Tensor, t_mask: torch.Tensor | None,
                cross_kv: list[list[KV]] | None = None):
        """v (B, N, D) (or a pair of them when n_images == 2), v_mask (B, N) 1/0 (or a pair, or
        None = all ones), t (B, L, D), t_mask (B, L) 1/0. `cross_kv` from `project_cross_kv`
        replaces the K/V projection of the first len(cross_kv) layers.
        Returns (v', t') with v' shaped like v (a list when n_images == 2)."""
        vs = [v] if torch.is_tensor(v) else list(v)
        if len(vs) != self.n_images:
            raise ValueError(f"fusion built for {self.n_images} image(s), got {len(vs)}")
        v_masks = [v_mask] * len(vs) if (v_mask is None or torch.is_tensor(v_mask)) else list(v_mask)
        v_add = [_full_mask(x, m) for x, m in zip(vs, v_masks)]
        t_add = _full_mask(t, t_mask)
        if cross_kv is not None and len(cross_kv) > self.first_visual_change:
            raise ValueError("cross_kv given for a layer after the visual tokens changed")
        for i, layer in enumerate(self.encoder.layer):
            kv = cross_kv[i] if cross_kv is not None and i < len(cross_kv) else None
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                new_v, t = checkpoint(layer, vs, v_add, t, t_add, kv, use_reentrant=False)
            else:
                new_v, t = layer(vs, v_add, t, t_add, kv)
            if layer.kind == CONNECTED and self.visual_residual:
                vs = [old + new for old, new in zip(vs, new_v)]
            else:
                vs = new_v
        return (vs[0] if torch.is_tensor(v) else vs), t
