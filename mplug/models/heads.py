"""Pre-training objectives and their building blocks (paper 3.3; official retrieval/VQA code).

Pure tensor functions (easy to test by hand) plus two mixins that task models use to register
their parameters under the official top-level names:

* `MomentumMixin` — `*_m` copies (no grad, copied at init) and the EMA update (m = 0.995).
* `ContrastiveMixin` — `vision_proj`, `text_proj` (D -> 256), learnable `temp` (0.07), queues
  `image_queue`/`text_queue` (256 x Q), `idx_queue` (1 x Q, -100), `queue_ptr`; ITC with
  momentum distillation; ITM with hard negatives; `itm_head` (D -> 2).

Other pieces: `mask_tokens` (15%, 80/10/10), `split_prefix` (PrefixLM), the grounding coordinate tokens and
the grounding loss.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mplug.errors import ConfigError


# ----------------------------------------------------------------------------- options
@dataclass
class HeadOptions:
    """Objective/task options that are not architecture (so not in MPLUGConfig).

    Defaults reproduce the official code; the alternatives are named where the paper or a cheaper
    smoke run differs.
    """

    distill: bool = True  # momentum encoders + distillation (pretrain, retrieval; VQA see tasks)
    clamp_temp: bool = False  # official does not clamp `temp`; True clamps to temp_range
    temp_min: float = 0.001
    temp_max: float = 0.5
    mlm_probability: float = 0.15
    # PrefixLM: the caption is split at a random word position in
    # [prefix_min_frac, prefix_max_frac] x (caption length); the prefix goes through the encoder.
    prefix_min_frac: float = 0.0
    prefix_max_frac: float = 0.5
    caption_input: str = "visual"  # 'visual' (official) | 'fused' (decoder over [V'; T'] of a prompt)

    def validate(self) -> None:
        if self.caption_input not in ("visual", "fused"):
            raise ConfigError(f"caption_input={self.caption_input!r}: use 'visual' or 'fused'")
        if not 0.0 < self.mlm_probability < 1.0:
            raise ConfigError(f"mlm_probability={self.mlm_probability}: must be in (0, 1)")
        if not 0.0 <= self.prefix_min_frac <= self.prefix_max_frac < 1.0:
            raise ConfigError("PrefixLM split needs 0 <= prefix_min_frac <= prefix_max_frac < 1")
        if not 0.0 < self.temp_min < self.temp_max:
            raise ConfigError("temp clamp needs 0 < temp_min < temp_max")


# ----------------------------------------------------------------------------- momentum
class MomentumMixin:
    """Keeps `<name>_m` twins of named sub-modules / parameters (official `model_pairs`)."""

    momentum_pairs: list[str]

    def init_momentum(self, names: list[str], momentum: float) -> None:
        import copy

        self.momentum_pairs = [n for n in names if getattr(self, n, None) is not None]
        self.momentum = momentum
        for name in self.momentum_pairs:
            twin = copy.deepcopy(getattr(self, name))  # official copy_params: identical at init
            for p in twin.parameters():
                p.requires_grad_(False)
            setattr(self, f"{name}_m", twin)

    def momentum_params(self):
        for name in self.momentum_pairs:
            yield from zip(getattr(self, name).parameters(), getattr(self, f"{name}_m").parameters())

    @torch.no_grad()
    def copy_params(self) -> None:
        for p, p_m in self.momentum_params():
            p_m.data.copy_(p.data)

    @torch.no_grad()
    def momentum_update(self) -> None:
        m = self.momentum
        for p, p_m in self.momentum_params():
            p_m.data.mul_(m).add_(p.data, alpha=1.0 - m)


# ----------------------------------------------------------------------------- ITC / ITM
def itc_targets(idx: torch.Tensor, idx_all: torch.Tensor) -> torch.Tensor:
    """Soft one-hot targets from image ids: (B,), (N,) -> (B, N) rows summing to 1."""
    pos = (idx.view(-1, 1) == idx_all.view(1, -1)).float()  # (B, N)
    return pos / pos.sum(dim=1, keepdim=True)


def itc_loss(sim_i2t: torch.Tensor, sim_t2i: torch.Tensor, targets_i2t: torch.Tensor,
             targets_t2i: torch.Tensor) -> torch.Tensor:
    """Mean of the two soft-target cross-entropies (ALBEF/mPLUG `loss_ita`)."""
    loss_i2t = -(F.log_softmax(sim_i2t, dim=1) * targets_i2t).sum(dim=1).mean()
    loss_t2i = -(F.log_softmax(sim_t2i, dim=1) * targets_t2i).sum(dim=1).mean()
    return (loss_i2t + loss_t2i) / 2


def sample_hard_negatives(sim: torch.Tensor, idx: torch.Tensor,
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """For each row, draw one column with p ~ softmax(sim) excluding same-idx columns.

    sim (B, B) over the in-batch pairs; returns (B,) column indices. A row whose every column
    shares its idx (all positives) falls back to a uniform draw over the other rows' columns,
    or to itself when the batch holds a single image (then no negative exists).
    """
    with torch.no_grad():
        same = idx.view(-1, 1) == idx.view(1, -1)  # (B, B)
        # +1e-5 keeps a row drawable when softmax underflows (small temp); then positives -> 0
        weights = F.softmax(sim.float(), dim=1) + 1e-5
        weights = weights.masked_fill(same, 0.0)
        empty = weights.sum(dim=1) <= 0
        if empty.any():
            weights[empty] = (~same[empty]).float()
            still = weights.sum(dim=1) <= 0
            weights[still] = 1.0
        return torch.multinomial(weights, 1, generator=generator).squeeze(1)


@torch.no_grad()
def enqueue(queue: torch.Tensor, ptr: torch.Tensor, feats: torch.Tensor) -> None:
    """Write feats (B, E) into columns [ptr, ptr+B) of queue (E, Q), wrapping around.

    The official code asserts Q % B == 0; wrapping makes any batch size (e.g. the last, smaller
    batch) safe. `ptr` is NOT advanced here (several queues share it); see `advance_ptr`.
    """
    size, b = queue.shape[1], feats.shape[0]
    if size == 0:  # queue_size 0: in-batch ITC only
        return
    if b > size:
        feats, b = feats[-size:], size
    cols = (int(ptr.item()) + torch.arange(b, device=queue.device)) % size
    queue[:, cols] = feats.T.to(queue.dtype)


@torch.no_grad()
def advance_ptr(ptr: torch.Tensor, batch: int, size: int) -> None:
    if size == 0:
        return
    ptr[0] = (int(ptr.item()) + min(batch, size)) % size


# ----------------------------------------------------------------------------- MLM
def mask_tokens(ids: torch.Tensor, attention_mask: torch.Tensor, vocab_size: int, mask_id: int,
                special_ids: tuple[int, ...], probability: float = 0.15,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: choose `probability` of the real, non-special tokens; of those 80% -> [MASK],
    10% -> a random token, 10% unchanged. Returns (input_ids, labels with -100 elsewhere)."""
    ids = ids.clone()
    labels = ids.clone()
    eligible = attention_mask.bool()
    for sid in special_ids:  # never [PAD]/[CLS]/[SEP]
        eligible &= ids != sid
    prob = torch.full(ids.shape, probability, device=ids.device)
    chosen = torch.bernoulli(prob, generator=generator).bool() & eligible
    labels[~chosen] = -100
    to_mask = torch.bernoulli(torch.full(ids.shape, 0.8, device=ids.device), generator=generator).bool() & chosen
    ids[to_mask] = mask_id
    to_rand = (torch.bernoulli(torch.full(ids.shape, 0.5, device=ids.device), generator=generator).bool()
               & chosen & ~to_mask)
    random_ids = torch.randint(vocab_size, ids.shape, device=ids.device, generator=generator)
    ids[to_rand] = random_ids[to_rand]
    return ids, labels


# ----------------------------------------------------------------------------- PrefixLM
def split_prefix(ids: torch.Tensor, mask: torch.Tensor, min_frac: float, max_frac: float,
                 pad_id: int, bos_id: int, generator: torch.Generator | None = None,
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split `[CLS] w1..wn [SEP]` into an encoder prefix `[CLS] w1..wk` and a decoder target
    `[CLS] wk+1..wn [SEP]` (paper 3.3, PrefixLM; the official split is not released).

    k is drawn uniformly per example from [floor(min_frac*n), floor(max_frac*n)], and at most
    n-1 so the target keeps at least one word. Returns (prefix_ids, prefix_mask, target_ids,
    target_mask), each right-padded.
    """
    b, length = ids.shape
    lengths = mask.sum(dim=1)  # includes [CLS] and [SEP]
    n_words = (lengths - 2).clamp(min=0)
    lo = (n_words.float() * min_frac).floor().long()
    hi = torch.minimum((n_words.float() * max_frac).floor().long(), (n_words - 1).clamp(min=0))
    hi = torch.maximum(hi, lo.clamp(max=hi))
    lo = torch.minimum(lo, hi)
    u = torch.rand(b, generator=generator, device=ids.device)
    k = lo + (u * (hi - lo + 1).float()).floor().long().clamp(max=(hi - lo))
    prefix_ids = torch.full((b, length), pad_id, dtype=ids.dtype, device=ids.device)
    target_ids = torch.full((b, length), pad_id, dtype=ids.dtype, device=ids.device)
    for i in range(b):
        ki, li = int(k[i]), int(lengths[i])
        prefix_ids[i, : ki + 1] = ids[i, : ki + 1]  # [CLS] w1..wk
        target_ids[i, 0] = bos_id
        rest = ids[i, ki + 1: li]  # wk+1 .. wn [SEP]
        target_ids[i, 1: 1 + rest.numel()] = rest
    prefix_mask = (torch.arange(length, device=ids.device)[None] <= k[:, None]).long()
    target_len = lengths - k
    target_mask = (torch.arange(length, device=ids.device)[None] < target_len[:, None]).long()
    width_p, width_t = int(prefix_mask.sum(1).max()), int(target_mask.sum(1).max())
    return prefix_ids[:, :width_p], prefix_mask[:, :width_p], target_ids[:, :width_t], target_mask[:, :width_t]


# ----------------------------------------------------------------------------- grounding
def box_to_tokens(box: torch.Tensor, coord_start: int, bins: int) -> torch.Tensor:
    """(B, 4) normalised (cx, cy, w, h) -> (B, 4) ids `coord_start + floor(clamp(c,0,1)*(bins-1))`."""
    return (box.clamp(0, 1) * (bins - 1)).floor().long() + coord_start


def tokens_to_box(ids: torch.Tensor, coord_start: int, bins: int) -> torch.Tensor:
    """Inverse of `box_to_tokens` (official: (id - id[unused340]) / 336)."""
    return (ids - coord_start).float().clamp(0, bins - 1) / (bins - 1)


def cxcywh_to_xyxy(box: torch.Tensor) -> torch.Tensor:
    cx, cy, w, h = box.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def generalized_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise-aligned GIoU of (N, 4) xyxy boxes -> (N,)."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt, rb = torch.maximum(a[:, :2], b[:, :2]), torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=1)
    union = area_a + area_b - inter
    iou = inter / union.clamp(min=1e-6)
    lt_c, rb_c = torch.minimum(a[:, :2], b[:, :2]), torch.maximum(a[:, 2:], b[:, 2:])
    hull = (rb_c - lt_c).clamp(min=0).prod(dim=1)
    return iou - (hull - union) / hull.clamp(min=1e-6)


def grounding_loss(logits: torch.Tensor, target_ids: torch.Tensor, gt_box: torch.Tensor,
                   coord_start: int, bins: int) -> torch.Tensor:
    """Official grounding loss (model_grounding_mplug.py l.140-167).

    logits (B, 4, V) predicting the 4 coordinate tokens, target_ids (B, 4), gt_box (B, 4) cxcywh.
    CE per token x clamp(L1(argmax box, gt), 0, 5) per coordinate x (1 - GIoU) per box, mean.
    The weights carry no gradient (they come from the argmax).
    """
    b = target_ids.shape[0]
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target_ids.reshape(-1),
                         reduction="none").view(b, 4)  # (B, 4)
    with torch.no_grad():
        pred = tokens_to_box(logits.argmax(dim=-1), coord_start, bins)  # (B, 4)
        l1 = (pred - gt_box).abs().clamp(0, 5)  # (B, 4)
        giou = generalized_iou(cxcywh_to_xyxy(pred), cxcywh_to_xyxy(gt_box))  # (B,)
    return (ce * l1 * (1 - giou)[:, None]).mean()
