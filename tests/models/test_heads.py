"""Pre-training objective pieces: queues, hard negatives, MLM masking, PrefixLM split, grounding."""
from __future__ import annotations

import pytest
import torch

from mplug.models import heads as H

torch.set_num_threads(1)


def test_itc_targets_rows_sum_to_one():
    t = H.itc_targets(torch.tensor([0, 0, 1]), torch.tensor([0, 0, 1, -100, 1]))
    assert torch.allclose(t.sum(1), torch.ones(3))
    assert torch.allclose(t[0], torch.tensor([0.5, 0.5, 0, 0, 0]))
    assert torch.allclose(t[2], torch.tensor([0, 0, 0.5, 0, 0.5]))


def test_itc_loss_matches_cross_entropy_for_hard_targets():
    sim = torch.randn(3, 5)
    targets = torch.zeros(3, 5)
    targets[torch.arange(3), torch.tensor([1, 0, 4])] = 1
    expected = torch.nn.functional.cross_entropy(sim, torch.tensor([1, 0, 4]))
    assert torch.allclose(H.itc_loss(sim, sim, targets, targets), expected)


def test_queue_update_wraps_around():
    q = torch.zeros(2, 5)
    ptr = torch.zeros(1, dtype=torch.long)
    for step in range(3):  # batches of 2 into a queue of 5: columns 0-1, 2-3, 4-0
        feats = torch.full((2, 2), float(step + 1))
        H.enqueue(q, ptr, feats)
        H.advance_ptr(ptr, 2, 5)
    assert q[0].tolist() == [3, 1, 2, 2, 3] and int(ptr) == 1
    idx_q = torch.full((1, 5), -100, dtype=torch.long)
    H.enqueue(idx_q, torch.tensor([4]), torch.tensor([[7], [8]]))
    assert idx_q.tolist() == [[8, -100, -100, -100, 7]]


def test_model_queue_pointer_and_contents_after_a_step():
    from mplug.models.tasks import build_model
    import sys
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from _task_batches import make_batch

    torch.manual_seed(0)
    model = build_model("mplug_tiny", "retrieval", queue_size=6, **{  # no dropout: re-computable
        "text.hidden_dropout": 0.0, "text.attention_dropout": 0.0, "vision.attn_dropout": 0.0})
    batch = make_batch("retrieval", model.cfg, b=4)
    model.train()
    model(batch)
    assert int(model.queue_ptr) == 4
    assert model.idx_queue[0, :4].tolist() == batch["image_idx"].tolist()
    assert (model.idx_queue[0, 4:] == -100).all()
    with torch.no_grad():  # the queue holds the momentum text features of this batch
        t = model.text_encoder_m(batch["text_ids"], batch["text_mask"])
        feat = torch.nn.functional.normalize(model.text_proj_m(t[:, 0]), dim=-1)
    assert torch.allclose(model.text_queue[:, :4].T, feat, atol=1e-5)
    model(batch)  # 4 more into 6 slots: wraps to columns 4, 5, 0, 1
    assert int(model.queue_ptr) == 2
    idx = batch["image_idx"].tolist()
    assert model.idx_queue[0].tolist() == idx[2:] + idx[2:] + idx[:2]


def test_hard_negatives_never_pick_a_positive():
    gen = torch.Generator().manual_seed(0)
    idx = torch.tensor([0, 0, 1, 2, 2, 3])
    sim = torch.randn(6, 6, generator=gen) * 20
    sim[idx.view(-1, 1) == idx.view(1, -1)] += 100  # positives are by far the most similar
    for _ in range(200):
        neg = H.sample_hard_negatives(sim, idx, generator=gen)
        assert (idx[neg] != idx).all()


def test_hard_negatives_follow_similarity():
    gen = torch.Generator().manual_seed(0)
    idx = torch.arange(3)
    sim = torch.tensor([[0.0, 5.0, -5.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    picks = torch.stack([H.sample_hard_negatives(sim, idx, generator=gen)[0] for _ in range(300)])
    assert (picks == 1).float().mean() > 0.95  # softmax(5 vs -5) ~ 1


def test_mlm_masking_proportions():
    gen = torch.Generator().manual_seed(0)
    b, length = 200, 40
    ids = torch.randint(1000, 1100, (b, length), generator=gen)
    ids[:, 0], ids[:, 30] = 101, 102
    ids[:, 31:] = 0
    mask = (ids != 0).long()
    new, labels = H.mask_tokens(ids, mask, 1100, 103, (0, 101, 102), 0.15, generator=gen)
    chosen = labels != -100
    eligible = mask.bool() & (ids != 101) & (ids != 102)
    assert not chosen[~eligible].any()  # never [PAD]/[CLS]/[SEP]
    assert torch.equal(labels[chosen], ids[chosen])
    frac = chosen.sum() / eligible.sum()
    assert 0.13 < frac < 0.17
    n = chosen.sum().float()
    masked = (new == 103) & chosen
    kept = (new == ids) & chosen
    assert 0.76 < masked.sum() / n < 0.84
    assert 0.07 < kept.sum() / n < 0.13  # 10% unchanged (+ random draws hitting the same id)
    assert torch.equal(new[~chosen], ids[~chosen])


def test_split_prefix_reassembles_the_caption():
    gen = torch.Generator().manual_seed(0)
    ids = torch.tensor([[101, 11, 12, 13, 14, 15, 102, 0], [101, 21, 22, 102, 0, 0, 0, 0]])
    mask = (ids != 0).long()
    for _ in range(20):
        p, pm, t, tm = H.split_prefix(ids, mask, 0.0, 0.5, 0, 101, generator=gen)
        for i in range(2):
            prefix = p[i][pm[i].bool()].tolist()
            target = t[i][tm[i].bool()].tolist()
            assert prefix[0] == 101 and target[0] == 101 and target[-1] == 102
            assert prefix + target[1:] == ids[i][mask[i].bool()].tolist()
            n_words = int(mask[i].sum()) - 2
            assert len(prefix) - 1 <= n_words // 2 and len(target) >= 3  # >= one word to predict


@pytest.mark.parametrize("bins,start", [(337, 345), (17, 345)])
def test_grounding_token_roundtrip(bins, start):
    box = torch.tensor([[0.0, 1.0, 0.5, 0.25], [0.123, 0.777, 1.5, -0.2]])
    ids = H.box_to_tokens(box, start, bins)
    assert ids.min() >= start and ids.max() <= start + bins - 1
    back = H.tokens_to_box(ids, start, bins)
    assert torch.all((box.clamp(0, 1) - back).abs() <= 1.0 / (bins - 1) + 1e-6)
    assert torch.equal(H.box_to_tokens(back, start, bins), ids)  # bin centres map to themselves
    if bins == 337:  # official: floor(c * 336) + id([unused340])
        assert ids[0].tolist() == [345, 345 + 336, 345 + 168, 345 + 84]


def test_grounding_loss_weights():
    bins, start, vocab = 11, 5, 20
    gt = torch.tensor([[0.5, 0.5, 0.2, 0.2]])
    target = H.box_to_tokens(gt, start, bins)
    perfect = torch.full((1, 4, vocab), -10.0)
    perfect[0, torch.arange(4), target[0]] = 10.0
    assert H.grounding_loss(perfect, target, gt, start, bins) < 1e-6  # L1 = 0 and GIoU = 1
    wrong = torch.full((1, 4, vocab), -10.0)
    wrong[0, torch.arange(4), target[0] + 3] = 10.0
    loss = H.grounding_loss(wrong, target, gt, start, bins)
    ce = torch.nn.functional.cross_entropy(wrong[0], target[0], reduction="none")
    pred = H.tokens_to_box(target + 3, start, bins)
    l1 = (pred - gt).abs().clamp(0, 5)
    giou = H.generalized_iou(H.cxcywh_to_xyxy(pred), H.cxcywh_to_xyxy(gt))
    assert torch.allclose(loss, (ce * l1[0] * (1 - giou)).mean())


def test_giou_known_values():
    a = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    b = torch.tensor([[0.0, 0.0, 1.0, 1.0], [2.0, 0.0, 3.0, 1.0]])
    g = H.generalized_iou(a, b)
    assert torch.allclose(g, torch.tensor([1.0, -1.0 / 3.0]))


def test_momentum_update_is_ema():
    class M(torch.nn.Module, H.MomentumMixin):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 2)
            self.init_momentum(["lin", "absent"], 0.9)

    m = M()
    assert m.momentum_pairs == ["lin"] and not m.lin_m.weight.requires_grad
    assert torch.equal(m.lin.weight, m.lin_m.weight)
    before = m.lin_m.weight.detach().clone()
    with torch.no_grad():
        m.lin.weight.add_(1.0)
    m.momentum_update()
    assert torch.allclose(m.lin_m.weight, 0.9 * before + 0.1 * m.lin.weight)
