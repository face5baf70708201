"""Analytic FLOPs of one forward pass of a fusion network (Figures 3 and 4 cost axis).

FLOPs = 2 x multiply-adds of the matrix products: the Q/K/V/output projections, the two attention
products (QK^T and AV) and the FFN. LayerNorm, softmax, GELU, biases and dropout are left out (they
are O(L*D), a few percent at these sizes). With width D, FFN width I, n_visual N, n_text L:
- self-attention over T tokens: 8*T*D^2 + 4*T^2*D
- cross-attention, Lq queries over Nk keys: 4*Lq*D^2 + 4*Nk*D^2 + 4*Lq*Nk*D
- FFN over T tokens: 4*T*D*I
Layer kinds: asymmetric = SA(L) + CA(L<-N) + FFN(L); connected = SA(N+L) + FFN(N+L);
two_stream = SA(L) + SA(N) + CA(L<-N) + CA(N<-L) + FFN(L) + FFN(N).
"""
from __future__ import annotations

from mplug.models.config import MPLUGConfig
from mplug.models.fusion import ASYMMETRIC, CONNECTED, TWO_STREAM, fusion_schedule


def self_attention_flops(tokens: int, width: int) -> int:
    return 8 * tokens * width ** 2 + 4 * tokens ** 2 * width


def cross_attention_flops(queries: int, keys: int, width: int) -> int:
    return 4 * queries * width ** 2 + 4 * keys * width ** 2 + 4 * queries * keys * width


def ffn_flops(tokens: int, width: int, intermediate: int) -> int:
    return 4 * tokens * width * intermediate


def layer_flops(kind: str, width: int, intermediate: int, n_visual: int, n_text: int) -> int:
    """FLOPs of one fusion layer of `kind` for one example."""
    d, i, n, t = width, intermediate, n_visual, n_text
    if kind == ASYMMETRIC:
        return self_attention_flops(t, d) + cross_attention_flops(t, n, d) + ffn_flops(t, d, i)
    if kind == CONNECTED:
        return self_attention_flops(n + t, d) + ffn_flops(n + t, d, i)
    if kind == TWO_STREAM:
        return (self_attention_flops(t, d) + self_attention_flops(n, d)
                + cross_attention_flops(t, n, d) + cross_attention_flops(n, t, d)
                + ffn_flops(t, d, i) + ffn_flops(n, d, i))
    raise ValueError(f"unknown fusion layer kind {kind!r}")


def fusion_flops(kinds: list[str], width: int, n_visual: int, n_text: int, batch: int = 1,
                 intermediate: int | None = None) -> int:
    """Total FLOPs of a fusion network given its layer kinds (see `fusion_schedule`)."""
    inter = 4 * width if intermediate is None else intermediate
    return batch * sum(layer_flops(k, width, inter, n_visual, n_text) for k in kinds)


def fusion_flops_for(cfg: MPLUGConfig, n_visual: int | None = None, n_text: int = 32,
                     batch: int = 1) -> int:
    """FLOPs of cfg's fusion network (fusion_type, stride, schedule, layer count)."""
    n = cfg.vision.n_tokens if n_visual is None else n_visual
    return fusion_flops(fusion_schedule(cfg), cfg.text.hidden, n, n_text, batch, cfg.text.intermediate)
