"""Scaled dot-product attention with two interchangeable implementations.

`sdpa` calls torch's fused kernel; `eager` is the explicit softmax reference. Both take an additive
float mask broadcastable to (B, H, Lq, Lk) (0 = keep, large negative = drop) and must agree
numerically (tested), so `attn_impl` is a speed knob, not a modelling choice.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Official BERT code adds -10000 for masked positions (get_extended_attention_mask). A finite value
# keeps fully-masked rows finite (uniform attention) instead of NaN, in every dtype.
MASK_VALUE = -10000.0


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
           dropout_p: float, impl: str) -> torch.Tensor:
    """q (B,H,Lq,d), k/v (B,H,Lk,d), mask additive (B|1,1|H,Lq|1,Lk) or None -> (B,H,Lq,d)."""
    if mask is not None and mask.dtype != q.dtype:
        mask = mask.to(q.dtype)
    if impl == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
    scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.size(-1))  # (B,H,Lq,Lk)
    if mask is not None:
        scores = scores + mask
    probs = torch.softmax(scores, dim=-1)
    if dropout_p > 0:
        probs = F.dropout(probs, p=dropout_p)
    return torch.matmul(probs, v)


def padding_mask(mask: torch.Tensor | None, dtype: torch.dtype = torch.float32) -> torch.Tensor | None:
    """(B, L) 1/0 keep-mask -> additive (B, 1, 1, L)."""
    if mask is None:
        return None
    return (1.0 - mask[:, None, None, :].to(dtype)) * MASK_VALUE


def causal_mask(mask: torch.Tensor | None, q_len: int, k_len: int, batch: int,
                device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Additive (B, 1, q_len, k_len) mask: query i (absolute position k_len-q_len+i) sees keys
    <= its own position, and only keys whose 1/0 `mask` (B, k_len) entry is 1."""
    offset = k_len - q_len
    q_pos = torch.arange(q_len, device=device)[:, None] + offset
    k_pos = torch.arange(k_len, device=device)[None, :]
    keep = (k_pos <= q_pos)[None, None].expand(batch, 1, q_len, k_len)
    if mask is not None:
        keep = keep & mask[:, None, None, :].bool()
    return (~keep).to(dtype) * MASK_VALUE
