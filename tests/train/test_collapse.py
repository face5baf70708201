"""ITC from random init must not collapse: issue 4's "every image has the same feature".

Measured (docs/model-differences.md, "ITC queue from scratch"): with the official queue the
from-scratch smoke/tiny encoders map every image to one vector (in-batch cosine 0.999, R@1 at
chance) because stale queue keys of a fast-moving encoder pull all features one way; in-batch ITC
(`queue_size: 0`) learns. These tests keep the in-batch path working and learning.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mplug.models import build_model
from mplug.models import heads as H

PAIRS = 64
STEPS = 120


def _offdiag_cos(x: torch.Tensor) -> float:
    x = F.normalize(x.float(), dim=-1)
    c = x @ x.T
    return c[~torch.eye(len(c), dtype=torch.bool)].mean().item()


@pytest.fixture(scope="module")
def pairs(world):
    """64 (image, caption) pairs of distinct synthetic images through the project's loader."""
    from mplug.data.collate import Collator
    from mplug.data.datasets import build_dataset
    from mplug.data.tokenizer import find_vocab, load_tokenizer

    tok = load_tokenizer(find_vocab(world, None))
    ds = build_dataset("pretrain", world, "train", tok, 32, False, dataset="pretrain_4m")
    seen, items = set(), []
    for i in range(len(ds)):
        ex = ds[i]
        if ex["image_idx"] not in seen:
            seen.add(ex["image_idx"])
            items.append(ex)
        if len(items) == PAIRS:
            break
    return Collator("pretrain", tok, max_text_len=30)(items), len(tok.vocab)


def _r1_and_cos(net, batch) -> tuple[float, float]:
    net.eval()
    with torch.no_grad():
        f = net.itc_features(batch["image"], batch["text_ids"], batch["text_mask"])
    net.train()
    sim = f["text_feat"] @ f["image_feat"].T  # (T, I)
    r1 = (sim.argmax(1) == torch.arange(len(sim))).float().mean().item()
    return r1, _offdiag_cos(f["image_feat"])


def test_queue_zero_is_plain_in_batch_clip(pairs):
    """queue_size 0 without distillation: loss_itc is the symmetric in-batch InfoNCE, and the
    (empty) queue stays empty."""
    batch, vocab = pairs
    torch.manual_seed(0)
    net = build_model("mplug_tiny", "retrieval", queue_size=0, distill=False, vocab_size=vocab)
    b = {k: v[:8] for k, v in batch.items() if torch.is_tensor(v)}
    ids, mask = b["text_ids"], b["text_mask"]
    net.eval()  # no dropout: the two computations see the same features
    v, vm, t = net.encode_pair(b["image"], ids, mask)
    out = net.contrastive_losses(b["image"], ids, v, vm, t, mask, b["image_idx"], alpha=0.0)
    fi = F.normalize(net.vision_proj(v[:, 0]), dim=-1)
    ft = F.normalize(net.text_proj(t[:, 0]), dim=-1)
    logits = fi @ ft.T / net.temp
    lab = torch.arange(8)
    want = (F.cross_entropy(logits, lab) + F.cross_entropy(logits.T, lab)) / 2
    torch.testing.assert_close(out["loss_itc"], want)
    assert net.image_queue.shape == (16, 0) and int(net.queue_ptr) == 0
    queue, ptr = torch.zeros(4, 0), torch.zeros(1, dtype=torch.long)
    H.enqueue(queue, ptr, torch.randn(3, 4))
    H.advance_ptr(ptr, 3, 0)
    assert int(ptr) == 0


def test_in_batch_itc_does_not_collapse(pairs):
    """120 ITC steps of the tiny model on 64 synthetic pairs: image features stay distinct and
    text->image R@1 on the training pairs clearly beats chance (1/64). With the official queue
    (queue_size 64, no distillation) the same run ends at cosine ~0.99 and chance R@1."""
    batch, vocab = pairs
    torch.manual_seed(0)
    net = build_model("mplug_tiny", "retrieval", queue_size=0, distill=False, vocab_size=vocab)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.02)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 10))
    gen = torch.Generator().manual_seed(0)
    r1_init, _ = _r1_and_cos(net, batch)
    for _ in range(STEPS):
        sel = torch.randperm(PAIRS, generator=gen)[:32]
        b = {k: v[sel] for k, v in batch.items() if torch.is_tensor(v)}
        ids, mask = b["text_ids"], b["text_mask"]
        v, vm, t = net.encode_pair(b["image"], ids, mask)
        loss = net.contrastive_losses(b["image"], ids, v, vm, t, mask, b["image_idx"], 0.0)["loss_itc"]
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
    r1, cos = _r1_and_cos(net, batch)
    print(f"R@1 init {r1_init:.3f} -> {r1:.3f} (chance {1 / PAIRS:.3f}); image cosine {cos:.4f}")
    assert cos < 0.9, f"image features collapsed: mean in-batch cosine {cos:.4f}"
    assert r1 >= 4 / PAIRS, f"ITC R@1 {r1:.3f} on the training pairs is near chance {1 / PAIRS:.3f}"
