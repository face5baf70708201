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
Both return the same values (tested). `StaticKVCache` (below) keeps every step's shapes fixed
for CUDA-graph capture of the decoding step.
"""
from __future__ import annotations

import torch

KV = tuple[torch.Tensor, torch.Tensor]


class KVCache:
    """Keys/values of `n_layers` self-attention layers; at most `max_length` tokens (in place)."""

    static = False  # StaticKVCache: fixed shapes, a device-side position (CUDA graphs)

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


class StaticKVCache(KVCache):
    """Fixed shapes for every decoding step, so that a step can be captured as a CUDA graph.

    Per layer zero-initialised (R, H, T_max, d) buffers that attention reads WHOLE; the write
    position is a device tensor `pos` (advanced in place, so a captured graph sees the new value
    on replay) and the not-yet-written slots are hidden by `key_mask` (additive, finfo.min: they
    get softmax weight exactly 0, and the zeros behind them keep 0 x value finite). `reorder`
    copies back into the same buffers while the row count stays (fixed addresses, as graphs
    need). Same keys/values as KVCache for the written slots (tested); in place only (no
    autograd: SCST's grad-mode decoding uses the functional KVCache)."""

    static = True

    def __init__(self, n_layers: int, max_length: int):
        super().__init__(n_layers, max_length, inplace=True)
        self.pos: torch.Tensor | None = None  # () long: tokens cached, on the device

    def _position(self, device) -> torch.Tensor:
        if self.pos is None:
            self.pos = _static(torch.zeros((), dtype=torch.long, device=device))
        return self.pos

    def positions(self, n: int, device) -> torch.Tensor:
        """(1, n) absolute positions of the next n tokens (the embeddings' position ids)."""
        return (self._position(device) + torch.arange(n, device=device))[None]

    def key_mask(self, n: int, dtype: torch.dtype, device) -> torch.Tensor:
        """(1, 1, n, T_max) additive: query i (absolute pos + i) sees keys j <= pos + i."""
        q = self.positions(n, device)[0][:, None]  # (n, 1)
        keys = torch.arange(self.max_length, device=device)[None]  # (1, T_max)
        neg = torch.tensor(torch.finfo(dtype).min, dtype=dtype, device=device)
        return torch.where(keys <= q, torch.zeros((), dtype=dtype, device=device), neg)[None, None]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> KV:
        """k, v (R, H, T, d) written at [pos, pos + T); returns the whole buffers (R, H, T_max, d).
        Reads no host integer (the bound is checked by `advance`, outside a captured step)."""
        if self.k[layer] is None:
            shape = (k.size(0), k.size(1), self.max_length, k.size(3))
            self.k[layer], self.v[layer] = _static(k.new_zeros(shape)), _static(v.new_zeros(shape))
        idx = self.positions(k.size(2), k.device)[0]
        self.k[layer].index_copy_(2, idx, k)
        self.v[layer].index_copy_(2, idx, v)
        return self.k[layer], self.v[layer]

    def advance(self, n: int) -> None:
        """Called by the cache's owner after each step (the decoder does not: see its forward)."""
        if self.length + n > self.max_length:
            raise ValueError(f"KV cache holds {self.max_length} tokens; step needs {self.length + n}")
        self.length += n
        self._position(self.k[0].device if self.k[0] is not None else "cpu").add_(n)

    def reorder(self, rows: torch.Tensor) -> None:
        if self.k[0] is None:
            return
        for i in range(self.n_layers):
            k, v = self.k[i].index_select(0, rows), self.v[i].index_select(0, rows)
            if k.shape == self.k[i].shape:  # same rows: into the same memory (graph addresses)
                self.k[i].copy_(k)
                self.v[i].copy_(v)
            else:  # images finished: fewer rows, new buffers (a new graph for the new shape)
                self.k[i], self.v[i] = _static(k), _static(v)


def _static(t: torch.Tensor) -> torch.Tensor:
    """Mark a cache buffer as living at a fixed address, so that torch.compile's CUDA graphs
    (mode="reduce-overhead") may write it in place instead of skipping the graph."""
    mark = getattr(torch._dynamo, "mark_static_address", None)
    if mark is not None:
        mark(t)
    return t
