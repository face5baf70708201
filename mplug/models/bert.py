"""BERT building blocks with Hugging Face BERT parameter names (post-LN).

Names: embeddings.{word_embeddings, position_embeddings, token_type_embeddings, LayerNorm},
layer.{attention.self.{query,key,value}, attention.output.{dense,LayerNorm},
crossattention.self.{query,key,value}, crossattention.output.*, intermediate.dense,
output.{dense,LayerNorm}}. `embeddings.position_ids` is a NON-persistent buffer (converters drop
the official `*.embeddings.position_ids` keys).

K/V handling: `BertSelfAttention.project_kv(states) -> (k, v)` (each (B, H, N, d)) lets callers
project cross-attention keys/values once (an image's tokens) and pass them as `kv=` many times;
self-attention accepts `past=(k, v)` (or a KVCache slot, mplug/models/kv_cache.py) and returns
the grown cache when `use_cache=True`. `kv` with fewer rows than the queries is shared: the
queries of each K/V row (the beams of one image) are folded into the query axis, no copies.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from mplug.models.attention import attend, padding_mask
from mplug.models.config import TextConfig

KV = tuple[torch.Tensor, torch.Tensor]


class BertEmbeddings(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden, padding_idx=cfg.pad_token_id)
        self.position_embeddings = nn.Embedding(cfg.max_position, cfg.hidden)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab, cfg.hidden)
        self.LayerNorm = nn.LayerNorm(cfg.hidden, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout)
        self.register_buffer("position_ids", torch.arange(cfg.max_position)[None], persistent=False)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                past_length: int = 0, positions: torch.Tensor | None = None) -> torch.Tensor:
        """`positions` (1, L): position ids given as a tensor (a static KV cache's device-side
        position, so that a captured decoding step needs no host integer)."""
        length = input_ids.size(1)
        if past_length + length > self.position_ids.size(1):
            raise ValueError(f"sequence of {past_length + length} tokens exceeds max_position "
                             f"{self.position_ids.size(1)}")
        pos = self.position_ids[:, past_length:past_length + length] if positions is None else positions
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = (self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
             + self.position_embeddings(pos))  # (B, L, D)
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    """query from `hidden`; key/value from `kv_width`-wide states (cross) or `hidden` (self)."""

    def __init__(self, cfg: TextConfig, kv_width: int | None = None, impl: str = "sdpa"):
        super().__init__()
        kv_width = kv_width or cfg.hidden
        self.heads, self.head_dim = cfg.heads, cfg.hidden // cfg.heads
        self.query = nn.Linear(cfg.hidden, cfg.hidden)
        self.key = nn.Linear(kv_width, cfg.hidden)
        self.value = nn.Linear(kv_width, cfg.hidden)
        self.dropout_p = cfg.attention_dropout
        self.impl = impl

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, D) -> (B, H, L, d)
        return x.view(x.size(0), x.size(1), self.heads, self.head_dim).transpose(1, 2)

    def project_kv(self, states: torch.Tensor) -> KV:
        """states (B, N, kv_width) -> (k, v), each (B, H, N, d)."""
        return self._split(self.key(states)), self._split(self.value(states))

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None = None,
                kv_states: torch.Tensor | None = None, kv: KV | None = None,
                past=None, use_cache: bool = False) -> tuple[torch.Tensor, KV | None]:
        """hidden (R, L, D); mask additive (R|B|1, 1, L|1, Lk); kv_states (R, N, E) for
        cross-attention, or precomputed `kv` (each (B, H, N, d)); `past` = cached self-attention
        (k, v), or a cache slot with `update(k, v)` (mplug.models.kv_cache).
        Shared K/V: when `kv` has B < R rows (R = B * G), each of its rows serves G consecutive
        rows of `hidden` (the beams of one image, the candidate texts of one image). Those G rows
        are folded into the query axis ((B, H, G*L, d) against (B, H, N, d)), so each K/V row is
        read once, with no per-row copies; exact, because no query attends to another query.
        The mask must then be per K/V row (B) or per query row but equal within a group (its
        first row per group is used). Returns ((R, L, D), present)."""
        rows, length, width = hidden.shape
        q = self.query(hidden)  # (R, L, D)
        if kv is not None:
            k, v = kv
        else:
            k, v = self.project_kv(hidden if kv_states is None else kv_states)
            if past is not None:
                if hasattr(past, "update"):
                    k, v = past.update(k, v)
                else:
                    k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        group = rows // k.size(0) if k.size(0) < rows else 1
        if group > 1:
            if k.size(0) * group != rows:
                raise ValueError(f"{rows} query rows cannot share {k.size(0)} key/value rows")
            q = q.reshape(k.size(0), group * length, width)  # (B, G*L, D)
            if mask is not None and mask.size(0) == rows:
                mask = mask[::group]  # (B, 1, 1|L, Lk): one mask per shared K/V row
        out = attend(self._split(q), k, v, mask, self.dropout_p if self.training else 0.0,
                     self.impl)  # (B, H, G*L, d)
        out = out.transpose(1, 2).reshape(hidden.shape)
        return out, ((k, v) if use_cache else None)


class BertSelfOutput(nn.Module):
    """LayerNorm(dropout(dense(h)) + residual)."""

    def __init__(self, cfg: TextConfig, in_width: int | None = None):
        super().__init__()
        self.dense = nn.Linear(in_width or cfg.hidden, cfg.hidden)
        self.LayerNorm = nn.LayerNorm(cfg.hidden, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout)

    def forward(self, h: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(h)) + residual)


class BertAttention(nn.Module):
    """`self` (BertSelfAttention) + `output` (BertSelfOutput): one post-LN attention sublayer."""

    def __init__(self, cfg: TextConfig, kv_width: int | None = None, impl: str = "sdpa"):
        super().__init__()
        self.self = BertSelfAttention(cfg, kv_width, impl)
        self.output = BertSelfOutput(cfg)

    def project_kv(self, states: torch.Tensor) -> KV:
        return self.self.project_kv(states)

    def forward(self, hidden, mask=None, kv_states=None, kv=None, past=None, use_cache=False):
        ctx, present = self.self(hidden, mask, kv_states, kv, past, use_cache)
        return self.output(ctx, hidden), present


class BertIntermediate(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden, cfg.intermediate)
        self.act = nn.GELU()  # HF 'gelu' = exact erf GELU

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(x))


class BertOutput(BertSelfOutput):
    def __init__(self, cfg: TextConfig):
        super().__init__(cfg, in_width=cfg.intermediate)


class BertLayer(nn.Module):
    """Self-attention [+ cross-attention] + FFN, each post-LN (BERT / decoder layer)."""

    def __init__(self, cfg: TextConfig, cross: bool = False, encoder_width: int | None = None,
                 impl: str = "sdpa"):
        super().__init__()
        self.attention = BertAttention(cfg, None, impl)
        self.crossattention = BertAttention(cfg, encoder_width, impl) if cross else None
        self.intermediate = BertIntermediate(cfg)
        self.output = BertOutput(cfg)

    def ffn(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.intermediate(x), x)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None = None,
                encoder_states: torch.Tensor | None = None, encoder_mask: torch.Tensor | None = None,
                cross_kv: KV | None = None, past=None, use_cache: bool = False):
        """hidden (R,L,D), additive masks; `cross_kv` may have fewer rows than `hidden` (shared
        K/V, see BertSelfAttention.forward); returns ((R,L,D), present self-attn cache or None)."""
        h, present = self.attention(hidden, mask, past=past, use_cache=use_cache)
        if self.crossattention is not None and (encoder_states is not None or cross_kv is not None):
            h, _ = self.crossattention(h, encoder_mask, kv_states=encoder_states, kv=cross_kv)
        return self.ffn(h), present


class BertEncoderLayers(nn.Module):
    """`layer` = ModuleList of BertLayer (the HF `encoder` module)."""

    def __init__(self, cfg: TextConfig, n_layers: int, cross: bool = False,
                 encoder_width: int | None = None, impl: str = "sdpa", grad_checkpointing: bool = False):
        super().__init__()
        self.layer = nn.ModuleList(
            [BertLayer(cfg, cross, encoder_width, impl) for _ in range(n_layers)])
        self.grad_checkpointing = grad_checkpointing


class TextEncoder(nn.Module):
    """BERT text encoder: `embeddings` + `encoder.layer.N` (self-attention + FFN)."""

    def __init__(self, cfg: TextConfig, n_layers: int, impl: str = "sdpa",
                 grad_checkpointing: bool = False):
        super().__init__()
        self.embeddings = BertEmbeddings(cfg)
        self.encoder = BertEncoderLayers(cfg, n_layers, impl=impl, grad_checkpointing=grad_checkpointing)
        init_bert_weights(self, cfg.initializer_range)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None,
                inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """ids (B, L), mask (B, L) 1/0 -> (B, L, D). `inputs_embeds` skips the embedding layer."""
        h = self.embeddings(input_ids, token_type_ids) if inputs_embeds is None else inputs_embeds
        mask = padding_mask(attention_mask, h.dtype)
        for layer in self.encoder.layer:
            if self.encoder.grad_checkpointing and self.training and h.requires_grad:
                h = checkpoint(lambda x, m, lyr=layer: lyr(x, m)[0], h, mask, use_reentrant=False)
            else:
                h = layer(h, mask)[0]
        return h


def init_bert_weights(module: nn.Module, std: float = 0.02) -> None:
    """HF BERT init: normal(0, std) Linear/Embedding weights, zero biases, unit LayerNorms."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=std)
            if m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def map_hf_bert(hf_state: dict[str, torch.Tensor], layers: Iterable[int], layer_offset: int = 0,
                embeddings: bool = True, prefix: str = "") -> dict[str, torch.Tensor]:
    """Map a Hugging Face BertModel / BertForMaskedLM state dict onto our module names.

    Keeps `embeddings.*` (if `embeddings`) and `encoder.layer.{i}.*` for i in `layers`, renumbered
    to `encoder.layer.{i - layer_offset}`; drops `bert.` prefixes, the pooler and position_ids.
    Examples: text encoder = layers 0-5; fusion init = layers 6-11 with layer_offset 6 (only
    attention/intermediate/output exist in BERT, crossattention stays random, as official).
    `prefix` is prepended to every output key (e.g. "text_encoder.").
    """
    wanted = set(layers)
    out: dict[str, torch.Tensor] = {}
    for key, value in hf_state.items():
        k = key[len("bert."):] if key.startswith("bert.") else key
        if k.endswith("position_ids"):
            continue
        if k.startswith("embeddings."):
            if embeddings:
                out[prefix + k] = value
        elif k.startswith("encoder.layer."):
            idx, rest = k[len("encoder.layer."):].split(".", 1)
            if int(idx) in wanted:
                out[f"{prefix}encoder.layer.{int(idx) - layer_offset}.{rest}"] = value
    return out
