"""The 12-layer causal BERT decoder with cross-attention and the tied LM head.

Keys: text_decoder.bert.{embeddings, encoder.layer.N.{attention, crossattention, intermediate,
output}}, text_decoder.cls.predictions.{transform.dense, transform.LayerNorm, decoder.weight,
decoder.bias, bias}. `decoder.weight` IS `bert.embeddings.word_embeddings.weight` and
`decoder.bias` IS `bias` (tied at construction, as HF `tie_weights`); the state dict lists both
names, like the official checkpoints.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from mplug.models.attention import causal_mask, padding_mask
from mplug.models.bert import KV, BertEmbeddings, BertEncoderLayers, init_bert_weights
from mplug.models.config import MPLUGConfig, TextConfig
from mplug.models.kv_cache import KVCache


@dataclass
class DecoderOutput:
    logits: torch.Tensor  # (B, L, V)
    loss: torch.Tensor | None = None  # scalar ('mean') or (B,) ('none': summed per sequence)
    past: list[KV] | KVCache | None = None  # per layer self-attention (k, v) (B, H, L_total, d)
    hidden: torch.Tensor | None = None  # (B, L, D) last hidden states


class BertDecoderModel(nn.Module):
    """`embeddings` + `encoder.layer.N` with causal self-attention and cross-attention."""

    def __init__(self, cfg: TextConfig, n_layers: int, impl: str, grad_checkpointing: bool):
        super().__init__()
        self.embeddings = BertEmbeddings(cfg)
        self.encoder = BertEncoderLayers(cfg, n_layers, cross=True, encoder_width=cfg.hidden,
                                         impl=impl, grad_checkpointing=grad_checkpointing)


class PredictionTransform(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden, cfg.hidden)
        self.act = nn.GELU()
        self.LayerNorm = nn.LayerNorm(cfg.hidden, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.act(self.dense(x)))


class LMPredictionHead(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.transform = PredictionTransform(cfg)
        self.decoder = nn.Linear(cfg.hidden, cfg.vocab_size)
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        self.decoder.bias = self.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(x))


class OnlyMLMHead(nn.Module):
    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.predictions = LMPredictionHead(cfg)


class TextDecoder(nn.Module):
    """Causal decoder + LM head (official BertLMHeadModel / BertPrefixModel)."""

    def __init__(self, cfg: MPLUGConfig):
        super().__init__()
        self.text_cfg = cfg.text
        self.bert = BertDecoderModel(cfg.text, cfg.decoder_layers, cfg.attn_impl, cfg.grad_checkpointing)
        self.cls = OnlyMLMHead(cfg.text)
        init_bert_weights(self, cfg.text.initializer_range)
        self.tie_weights()

    def tie_weights(self) -> None:
        """Share the LM output matrix with the word embeddings (call again after loading)."""
        self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight
        self.cls.predictions.decoder.bias = self.cls.predictions.bias

    @property
    def layers(self) -> nn.ModuleList:
        return self.bert.encoder.layer

    def project_cross_kv(self, encoder_states: torch.Tensor) -> list[KV]:
        """Cross-attention (k, v) of every layer for (B, N, D) encoder states: project an image
        once and reuse it for every beam and step."""
        return [lyr.crossattention.project_kv(encoder_states) for lyr in self.layers]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                encoder_states: torch.Tensor | None = None, encoder_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, reduction: str = "mean",
                past: list[KV] | KVCache | None = None, use_cache: bool = False,
                cross_kv: list[KV] | None = None, label_smoothing: float = 0.0) -> DecoderOutput:
        """input_ids (R, L); attention_mask (R, L_past + L) 1/0 (None = all real);
        encoder_states (B, N, D) with encoder_mask (B, N), or per-layer `cross_kv`;
        labels (R, L) with -100 = ignore: shifted CE (token t predicts labels t+1).
        reduction 'mean' = mean over labelled tokens; 'none' = (R,) sum per sequence (official
        BertLMHeadModel). `past`/`use_cache`: self-attention KV cache for incremental decoding,
        either the per-layer (k, v) list of the previous call's `past`, or a KVCache (updated in
        place and returned as `past`). `cross_kv` (and then `encoder_mask`) may have B < R rows:
        each serves R / B consecutive rows (the beams of one image), with no copies."""
        if encoder_states is None and cross_kv is None:
            raise ValueError("decoder needs encoder_states or cross_kv")
        b, length = input_ids.shape
        cache = past if isinstance(past, KVCache) else None
        static = cache is not None and cache.static
        # a StaticKVCache's position is a device tensor: no host integer inside a captured step
        past_len = 0 if static else cache.length if cache is not None else (past[0][0].size(2) if past else 0)
        if static and attention_mask is not None:
            raise ValueError("a StaticKVCache decodes without attention_mask (no padded prefixes)")
        h = self.bert.embeddings(input_ids, past_length=past_len,
                                 positions=cache.positions(length, input_ids.device) if static else None)
        if static:  # fixed-size keys: the unwritten slots and the future are masked
            self_mask = cache.key_mask(length, h.dtype, h.device)
        elif attention_mask is None and length == 1:
            self_mask = None  # one new token at the end sees every cached key: nothing to mask
        else:
            self_mask = causal_mask(attention_mask, length, past_len + length, b, h.device, h.dtype)
        enc_mask = None
        if encoder_states is not None or encoder_mask is not None:
            ref = encoder_states if encoder_states is not None else h
            n = encoder_states.size(1) if encoder_states is not None else cross_kv[0][0].size(2)
            em = encoder_mask if encoder_mask is not None else torch.ones(
                b, n, dtype=torch.long, device=ref.device)
            enc_mask = padding_mask(em, h.dtype)
        presents: list[KV] = []
        for i, layer in enumerate(self.layers):
            layer_past = cache.slot(i) if cache is not None else (past[i] if past else None)
            kv = cross_kv[i] if cross_kv is not None else None
            # not with a KVCache: its tensors are written in place as decoding advances, so a
            # recomputation in backward would read later steps' keys (SCST backprops through beams)
            if (self.bert.encoder.grad_checkpointing and self.training and torch.is_grad_enabled()
                    and cache is None):
                h, present = checkpoint(layer, h, self_mask, encoder_states, enc_mask, kv, layer_past,
                                        use_cache, use_reentrant=False)
            else:
                h, present = layer(h, self_mask, encoder_states, enc_mask, kv, layer_past, use_cache)
            if use_cache and cache is None:
                presents.append(present)
        if cache is not None and not static:  # a StaticKVCache is advanced by its owner, outside
            cache.advance(length)
        logits = self.cls.predictions(h)  # (R, L, V)
        loss = None
        if labels is not None:
            loss = lm_loss(logits, labels, reduction, label_smoothing)
        out_past = cache if cache is not None else (presents if use_cache else None)
        return DecoderOutput(logits=logits, loss=loss, past=out_past, hidden=h)


def lm_loss(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean",
            label_smoothing: float = 0.0) -> torch.Tensor:
    """Shifted next-token cross-entropy; labels -100 are ignored."""
    shifted = logits[:, :-1].contiguous()
    target = labels[:, 1:].contiguous()
    if reduction == "mean":
        return F.cross_entropy(shifted.view(-1, shifted.size(-1)), target.view(-1),
                               ignore_index=-100, label_smoothing=label_smoothing)
    if reduction == "none":
        per_tok = F.cross_entropy(shifted.view(-1, shifted.size(-1)), target.view(-1),
                                  ignore_index=-100, reduction="none", label_smoothing=label_smoothing)
        return per_tok.view(target.shape).sum(1)
    raise ValueError(f"reduction={reduction!r}: use 'mean' or 'none'")
