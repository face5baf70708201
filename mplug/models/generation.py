"""Decoding with the mPLUG decoder: beam search, greedy, and answer-list ranking.

`beam_search` follows the official `TextGenerator._fast_translate_batch` (models/predictor.py):
start [CLS], EOS forbidden while step < min_length, GNMT length penalty ((5+len)/6)^alpha on the
running log-probability, a hypothesis is recorded whenever a beam emits EOS (the beam itself stays
alive, as official), an image is done when its TOP beam emits EOS (or at max_length), and its best
`num_return` recorded hypotheses are returned. Differences from the official code:
- returned ids EXCLUDE the start token / prompt (official returns them; callers stripped them);
- `use_cache=True` keeps a preallocated self-attention key/value cache (mplug/models/kv_cache.py)
  and projects each image's cross-attention K/V once, shared by its beams by folding them into
  the query axis (official recomputes the whole prefix for every beam at every step);
  `use_cache=False` is that plain recompute path and gives the same sequences (tested);
- `use_cache="static"`: a StaticKVCache (fixed shapes, device-side position: the step's shapes
  never change while the alive rows stay) and `use_cache="graph"`: that step compiled with
  `torch.compile(mode="reduce-overhead")`, i.e. captured as a CUDA graph per row count and
  replayed (GRAPH_COMPILE; CUDA only in effect, untested without a GPU). Both give the plain
  path's sequences (static tested on the CPU); `True` (the dynamic cache) stays the default.
Nothing here disables autograd: SCST calls beam_search with gradients enabled.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mplug.models.decoder import TextDecoder
from mplug.models.kv_cache import KVCache, StaticKVCache

NEG = -1e20
CACHE_MODES = (False, True, "dynamic", "static", "graph")
# how use_cache="graph" compiles the cached step: CUDA graphs through torch.compile (tests on a
# CPU swap in another backend)
GRAPH_COMPILE = {"mode": "reduce-overhead", "dynamic": False}


def _cache_mode(use_cache) -> str | None:
    """use_cache -> None (plain), 'dynamic', 'static' or 'graph' (any non-string: its truth)."""
    if not isinstance(use_cache, str):
        return "dynamic" if use_cache else None
    if use_cache not in CACHE_MODES:
        raise ValueError(f"use_cache={use_cache!r}: use one of {CACHE_MODES}")
    mode = use_cache
    if mode != "dynamic" and torch.is_grad_enabled():
        raise ValueError(f"use_cache={mode!r} writes in place: decode under torch.no_grad() "
                         "(SCST's grad-mode beams use use_cache=True)")
    return mode


def _decode_step(decoder: TextDecoder, cache: KVCache, inputs: torch.Tensor, mask, kv) -> torch.Tensor:
    """inputs (R, T) new tokens -> next-token logits (R, V), through the cache."""
    out = decoder(inputs, None, None, mask, past=cache, use_cache=True, cross_kv=kv)
    return out.logits[:, -1]


_COMPILED: dict = {}


def _compiled_step():
    """`_decode_step` under torch.compile(**GRAPH_COMPILE), compiled once per process (and per
    GRAPH_COMPILE), so that generate calls reuse its graphs instead of recompiling."""
    key = tuple(sorted(GRAPH_COMPILE.items()))
    if key not in _COMPILED:
        _COMPILED[key] = torch.compile(_decode_step, **GRAPH_COMPILE)
    return _COMPILED[key]


class _Rows:
    """Per-row (batch x beam) decoder inputs for the alive images, cached or not.

    Plain (`use_cache=False`, the official-style reference): each row gets a copy of its image's
    encoder states and the decoder re-runs the whole prefix, projecting the cross-attention K/V
    again, at every step. Cached: each image's cross-attention K/V are projected once here and
    shared by its beams without copies (beams folded into the query axis); the
    self-attention keys/values live in a preallocated KVCache reordered with the beams."""

    def __init__(self, decoder: TextDecoder, states: torch.Tensor, mask: torch.Tensor | None,
                 use_cache, max_tokens: int = 0):
        mode = _cache_mode(use_cache)
        self.decoder, self.states, self.mask, self.use_cache = decoder, states, mask, mode is not None
        self.n_images = states.size(0)
        self.kv_img = self.cache = None
        self._step = self._cached_step
        if mode is not None:
            # an all-ones mask adds nothing: drop it (one fewer op per layer and step)
            if mask is not None and bool(mask.all()):
                self.mask = None
            self.kv_img = decoder.project_cross_kv(states)  # per layer (B, H, N, d), ONCE
            n = len(decoder.layers)
            self.cache = KVCache(n, max_tokens) if mode == "dynamic" else StaticKVCache(n, max_tokens)
        if mode == "graph":
            step = _compiled_step()
            self._step = lambda inputs, m, kv: step(self.decoder, self.cache, inputs, m, kv)

    def _cached_step(self, inputs: torch.Tensor, mask, kv) -> torch.Tensor:
        return _decode_step(self.decoder, self.cache, inputs, mask, kv)

    def select(self, images: torch.Tensor, k: int) -> None:
        """Set the alive images (ascending indices into the original batch), each repeated k
        times (rows are image-major: row = image * k + beam)."""
        if self.use_cache:
            if images.numel() == self.n_images:  # all alive: no copy at all
                self.rows_kv, self.rows_mask = self.kv_img, self.mask
            else:
                self.rows_kv = [(kk.index_select(0, images), vv.index_select(0, images))
                                for kk, vv in self.kv_img]
                self.rows_mask = None if self.mask is None else self.mask.index_select(0, images)
            return
        rows = images.repeat_interleave(k)
        self.rows_mask = None if self.mask is None else self.mask[rows]
        self.rows_states = self.states[rows]

    def reorder_past(self, index: torch.Tensor) -> None:
        if self.cache is not None:
            self.cache.reorder(index)

    def logits(self, seq: torch.Tensor, step: int) -> torch.Tensor:
        """seq (R, T) -> next-token logits (R, V)."""
        if not self.use_cache:
            return self.decoder(seq, None, self.rows_states, self.rows_mask).logits[:, -1]
        if self.cache.length == 0:  # the prompt: once, not compiled (its own shape)
            inputs, step = seq, self._cached_step
        else:
            inputs, step = seq[:, -1:], self._step
            if self.cache.static:
                inputs = inputs.contiguous()  # the same strides at every step: no recompile
        logits = step(inputs, self.rows_mask, self.rows_kv)
        if self.cache.static:  # advanced here, outside a captured step (no host integer inside)
            self.cache.advance(inputs.size(1))
        return logits


def _prompt(prompt_ids, bos: int, b: int, device) -> torch.Tensor:
    if prompt_ids is None:
        return torch.full((b, 1), bos, dtype=torch.long, device=device)
    p = prompt_ids.to(device)
    return p.unsqueeze(0).expand(b, -1).clone() if p.dim() == 1 else p.clone()


def _log_probs(logits: torch.Tensor, logits_mask: torch.Tensor | None) -> torch.Tensor:
    if logits_mask is not None:
        logits = logits + logits_mask.to(logits.dtype)
    return F.log_softmax(logits.float(), dim=-1)


def _eos_column(log_probs: torch.Tensor, eos: int) -> torch.Tensor:
    col = torch.zeros(log_probs.size(-1), dtype=torch.bool, device=log_probs.device)
    col[eos] = True
    return col


def _pad_stack(seqs: list[torch.Tensor], pad: int, device) -> torch.Tensor:
    width = max([s.numel() for s in seqs] + [1])
    out = torch.full((len(seqs), width), pad, dtype=torch.long, device=device)
    for i, s in enumerate(seqs):
        out[i, :s.numel()] = s
    return out


def beam_search(decoder: TextDecoder, encoder_states: torch.Tensor,
                encoder_mask: torch.Tensor | None = None, *, bos: int = 101, eos: int = 102,
                pad: int = 0, beam_size: int = 5, min_length: int = 1, max_length: int = 10,
                length_penalty: float = 0.6, num_return: int = 1, use_cache: bool | str = True,
                prompt_ids: torch.Tensor | None = None,
                logits_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """encoder_states (B, N, D), encoder_mask (B, N) 1/0. prompt_ids (P,) or (B, P) starting with
    [CLS] (default: just `bos`). logits_mask (V,) additive. Returns ids (B, num_return, T) of the
    generated tokens after the prompt (EOS included when emitted, padded with `pad`) and scores
    (B, num_return): length-penalised log-probabilities (-inf where fewer hypotheses exist)."""
    if num_return > beam_size:
        raise ValueError(f"num_return={num_return} > beam_size={beam_size}")
    b, device, k = encoder_states.size(0), encoder_states.device, beam_size
    seq = _prompt(prompt_ids, bos, b, device).repeat_interleave(k, 0)  # (B*K, P)
    n_prompt = seq.size(1)
    rows = _Rows(decoder, encoder_states, encoder_mask, use_cache, n_prompt + max_length)
    batch_offset = torch.arange(b, device=device)
    rows.select(batch_offset, k)
    topk_log_probs = torch.tensor([0.0] + [float("-inf")] * (k - 1), device=device).repeat(b)
    hyps: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[] for _ in range(b)]
    results: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[] for _ in range(b)]
    for step in range(max_length):
        log_probs = _log_probs(rows.logits(seq, step), logits_mask)  # (R, V)
        vocab = log_probs.size(-1)
        if step < min_length:  # out of place: SCST backpropagates through these scores
            log_probs = log_probs.masked_fill(_eos_column(log_probs, eos), NEG)
        log_probs = log_probs + topk_log_probs.view(-1, 1)
        lp = ((5.0 + (step + 1)) / 6.0) ** length_penalty
        curr = (log_probs / lp).reshape(-1, k * vocab)  # (nb, K*V)
        topk_scores, topk_ids = curr.topk(k, dim=-1)  # (nb, K)
        topk_log_probs = topk_scores * lp
        beam_index = torch.div(topk_ids, vocab, rounding_mode="floor")
        tokens = topk_ids.fmod(vocab)
        nb = beam_index.size(0)
        select = (beam_index + torch.arange(0, nb * k, k, device=device)[:, None]).view(-1)
        seq = torch.cat([seq[select], tokens.view(-1, 1)], dim=-1)
        if step + 1 < max_length:  # after the last step the cache is not read again
            rows.reorder_past(select)
        finished = tokens.eq(eos)
        if step + 1 == max_length:
            finished.fill_(True)
        end = finished[:, 0].clone()
        if not finished.any():
            continue
        preds = seq.view(nb, k, -1)
        for i in range(nb):
            img = int(batch_offset[i])
            if end[i]:
                finished[i].fill_(True)
            for j in finished[i].nonzero().view(-1).tolist():
                hyps[img].append((topk_scores[i, j], preds[i, j]))
            if end[i]:
                best = sorted(hyps[img], key=lambda h: float(h[0].detach()), reverse=True)
                results[img] = best[:num_return]
        keep = (~end).nonzero().view(-1)
        if keep.numel() == 0:
            break
        if keep.numel() < nb:
            keep_rows = (keep[:, None] * k + torch.arange(k, device=device)).view(-1)
            topk_log_probs = topk_log_probs[keep]
            batch_offset = batch_offset[keep]
            seq = preds[keep].reshape(-1, seq.size(-1))
            rows.reorder_past(keep_rows)
            rows.select(batch_offset, k)
    ids, scores = [], torch.full((b, num_return), float("-inf"), device=device)
    for img in range(b):
        for n in range(num_return):
            if n < len(results[img]):
                score, pred = results[img][n]
                scores[img, n] = score
                ids.append(pred[n_prompt:])
            else:
                ids.append(torch.empty(0, dtype=torch.long, device=device))
    return _pad_stack(ids, pad, device).view(b, num_return, -1), scores


def greedy(decoder: TextDecoder, encoder_states: torch.Tensor,
           encoder_mask: torch.Tensor | None = None, *, bos: int = 101, eos: int = 102,
           pad: int = 0, min_length: int = 1, max_length: int = 10, length_penalty: float = 0.6,
           use_cache: bool | str = True, prompt_ids: torch.Tensor | None = None,
           logits_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Argmax decoding. Returns ids (B, T) after the prompt (padded with `pad` after EOS) and
    scores (B,): summed log-probability / GNMT penalty at the final length (= beam_size 1)."""
    b, device = encoder_states.size(0), encoder_states.device
    seq = _prompt(prompt_ids, bos, b, device)
    n_prompt = seq.size(1)
    rows = _Rows(decoder, encoder_states, encoder_mask, use_cache, n_prompt + max_length)
    rows.select(torch.arange(b, device=device), 1)
    total = torch.zeros(b, device=device)
    scores = torch.zeros(b, device=device)
    done = torch.zeros(b, dtype=torch.bool, device=device)
    for step in range(max_length):
        log_probs = _log_probs(rows.logits(seq, step), logits_mask)
        if step < min_length:
            log_probs = log_probs.masked_fill(_eos_column(log_probs, eos), NEG)
        best, token = log_probs.max(dim=-1)
        token = torch.where(done, torch.full_like(token, pad), token)
        total = total + torch.where(done, torch.zeros_like(best), best)
        seq = torch.cat([seq, token[:, None]], dim=-1)
        lp = ((5.0 + (step + 1)) / 6.0) ** length_penalty
        newly = ~done & (token.eq(eos) | (step + 1 == max_length))
        scores = torch.where(newly, total / lp, scores)
        done = done | newly
        if bool(done.all()):
            break
    return seq[:, n_prompt:], scores


def rank_answers(decoder: TextDecoder, encoder_states: torch.Tensor,
                 encoder_mask: torch.Tensor | None, answer_ids: torch.Tensor,
                 answer_mask: torch.Tensor, k: int, pad: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Official `rank_answer` (zero-shot video QA): take the k answers whose FIRST token is most
    probable after [CLS], then rescore them by full-sequence log-likelihood.

    encoder_states (Q, N, D); answer_ids/mask (A, T) as `[CLS] answer [SEP]`. Returns
    (answer indices (Q, k) best first, their probabilities (Q, k) = softmax over the k scores).
    As official, the rescoring sums log p(first token) and the sequence NLL, which counts the
    first token twice; kept so that zero-shot numbers are comparable.
    """
    q = encoder_states.size(0)
    k = min(k, answer_ids.size(0))
    kv = decoder.project_cross_kv(encoder_states)  # once per question/video
    start = answer_ids[0, 0].repeat(q, 1)  # (Q, 1) [CLS]
    first_logits = decoder(start, None, None, encoder_mask, cross_kv=kv).logits[:, 0]  # (Q, V)
    prob_first = first_logits.float().softmax(-1).index_select(1, answer_ids[:, 1])  # (Q, A)
    topk_probs, topk_ids = prob_first.topk(k, dim=1)  # (Q, k)
    flat = topk_ids.reshape(-1)
    ids, mask = answer_ids[flat], answer_mask[flat]  # (Q*k, T)
    labels = ids.masked_fill(ids == pad, -100)
    # the k answers of a question share its K/V (Q rows for Q*k queries): no per-answer copies
    nll = decoder(ids, mask, None, encoder_mask, labels=labels, reduction="none", cross_kv=kv).loss
    log_probs = topk_probs.reshape(-1).log() - nll.float()  # (Q*k,)
    probs = log_probs.view(q, k).softmax(-1)
    probs, rerank = probs.topk(k, dim=1)
    return torch.gather(topk_ids, 1, rerank), probs
