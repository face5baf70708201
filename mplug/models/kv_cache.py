"""Self-attention key/value cache of every decoder layer, for incremental decoding.

`TextDecoder.forward(..., past=cache, use_cache=True)` hands each layer `cache.slot(i)`; the
layer's self-attention calls `slot.update(k, v)` with the new tokens' keys/values (R, H, T, d) and
attends to what it returns (all tokens so far); the decoder then calls `cache.advance(T)`.
Beam search reorders the rows (beams) after every step with `cache.reorder(rows)`.

Two modes, chosen by whether autograd records (SCST backpropagates through beam search):
- in place (no autograd): per layer preallocated (R, H, T_max, d) buffers; a step writes its
  tokens at [length, length + T) and attention reads the [:length + T] prefix view, so there is no
  torch.cat per step; `reorder` gathers only the filled prefix with index_select into spare
  buffers that are then swapped in (no allocation while the row count stays the same);
- functional (autograd on): torch.cat / index_select into new tensors, as a plain cache would,
  because in-place writes would invalidate tensors saved for backward.
Both return the same values (tested).
"""
from __future__ import annotations

import torch

KV = tuple[torch.Tensor, torch.Tensor]


class KVCache:
    """Keys/values of `n_layers` self-attention layers; at most `max_length` tokens (in place)."""

    def __init__(self, n_layers: int, max_length: int, inplace: bool | None = None):
        self.n_layers, self.max_length = n_layers, max_length
        self.inplace = (not torch.is_grad_enabled()) if inplace is None else inplace
        self.length = 0  # tokens cached (the same for every layer between steps)
        self.k: list[torch.Tensor | None] = [None] * n_layers  # (R, H, T_max | length, d)
        self.v: list[torch.Tensor | None] = [None] * n_layers
        self._spare: list[KV] | None = None  # in place: reorder targets, same shapes as k/v

    def slot(self, layer: int) -> "LayerSlot":
        return LayerSlot(self, layer)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> KV:
        """k, v (R, H, T, d) of the new tokens -> keys/values of all tokens (R, H, length+T, d).
        In place, these are views of the cache buffers: valid until the next update/reorder."""
        start, end = self.length, self.length + k.size(2)
        if not self.inplace:
            if self.k[layer] is not None:
                k = torch.cat([self.k[layer], k], dim=2)
                v = torch.cat([self.v[layer], v], dim=2)
            self.k[layer], self.v[layer] = k, v
            return k, v
        if end > self.max_length:
            raise ValueError(f"KV cache holds {self.max_length} tokens; step needs {end}")
        if self.k[layer] is None:
            shape = (k.size(0), k.size(1), self.max_length, k.size(3))
            self.k[layer], self.v[layer] = k.new_empty(shape), v.new_empty(shape)
        kb, vb = self.k[layer], self.v[layer]
        kb[:, :, start:end] = k
        vb[:, :, start:end] = v
        return kb[:, :, :end], vb[:, :, :end]

    def advance(self, n: int) -> None:
        """Called by the decoder once every layer has stored the step's `n` tokens."""
        self.length += n

    def reorder(self, rows: torch.Tensor) -> None:
        """Keep rows `rows` (R',) long, in that order (beam reordering; fewer rows when images
        finish)."""
        if self.k[0] is None:
            return
        if not self.inplace:
            self.k = [k.index_select(0, rows) for k in self.k]
            self.v = [v.index_select(0, rows) for v in self.v]
            return
        n = self.length
        if self._spare is None or rows.numel() != self.k[0].size(0):
            self._spare = [(k.new_empty((rows.numel(),) + k.shape[1:]),
                            v.new_empty((rows.numel(),) + v.shape[1:])) for k, v in zip(self.k, self.v)]
        for i, (sk, sv) in enumerate(self._spare):
            # only the filled prefix is copied; the rest of the buffer is written by later steps
            torch.index_select(self.k[i][:, :, :n], 0, rows, out=sk[:, :, :n])
            torch.index_select(self.v[i][:, :, :n], 0, rows, out=sv[:, :, :n])
        old = list(zip(self.k, self.v))
        self.k, self.v = [k for k, _ in self._spare], [v for _, v in self._spare]
        # the old buffers become the next spares only when they have the same row count
        self._spare = old if old[0][0].size(0) == rows.numel() else None


class LayerSlot:
    """One layer's view of a KVCache: what BertSelfAttention calls as `past.update(k, v)`."""

    __slots__ = ("cache", "layer")

    def __init__(self, cache: KVCache, layer: int):
        self.cache, self.layer = cache, layer

    def update(self, k: torch.Tensor, v: torch.Tensor) -> KV:
        return self.cache.update(self.layer, k, v)
