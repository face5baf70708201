"""Decoder and decoding: KV cache equivalence, beam search semantics, greedy, answer ranking."""
import pytest
import torch
import torch.nn.functional as F

from mplug.models.generation import beam_search, greedy, rank_answers

EOS = 102


def test_tied_lm_head_and_state_dict_keys(decoder):
    pred = decoder.cls.predictions
    assert pred.decoder.weight is decoder.bert.embeddings.word_embeddings.weight
    assert pred.decoder.bias is pred.bias
    keys = decoder.state_dict().keys()
    assert {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias", "cls.predictions.bias",
            "bert.embeddings.word_embeddings.weight"} <= set(keys)


def test_incremental_cache_equals_full_forward(decoder, enc):
    states, mask = enc
    ids = torch.randint(0, 200, (4, 6))
    with torch.no_grad():
        full = decoder(ids, None, states, mask).logits
        kv = decoder.project_cross_kv(states)
        past, steps = None, []
        for i in range(6):
            out = decoder(ids[:, i:i + 1], None, None, mask, past=past, use_cache=True, cross_kv=kv)
            past = out.past
            steps.append(out.logits)
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)


def test_loss_reductions(decoder, enc):
    states, mask = enc
    ids = torch.randint(0, 200, (4, 5))
    labels = ids.clone()
    labels[1, 3:] = -100
    out_none = decoder(ids, None, states, mask, labels=labels, reduction="none")
    logits = out_none.logits
    manual = torch.stack([
        F.cross_entropy(logits[b, :-1], labels[b, 1:], ignore_index=-100, reduction="sum")
        for b in range(4)])
    torch.testing.assert_close(out_none.loss, manual)
    out_mean = decoder(ids, None, states, mask, labels=labels)
    torch.testing.assert_close(out_mean.loss, manual.sum() / (labels[:, 1:] != -100).sum())


@pytest.mark.parametrize("beam, num_return", [(3, 1), (4, 2)])
def test_beam_cache_equals_recompute(decoder, enc, beam, num_return):
    states, mask = enc
    kw = dict(beam_size=beam, num_return=num_return, min_length=2, max_length=8)
    with torch.no_grad():
        ids_c, sc_c = beam_search(decoder, states, mask, use_cache=True, **kw)
        ids_r, sc_r = beam_search(decoder, states, mask, use_cache=False, **kw)
    assert torch.equal(ids_c, ids_r)
    torch.testing.assert_close(sc_c, sc_r, atol=1e-5, rtol=1e-5)
    assert ids_c.shape[:2] == (4, num_return)
    ends = [(row == EOS).nonzero() for row in ids_c[:, 0]]
    lengths = {int(e[0]) if len(e) else -1 for e in ends}
    assert len(lengths) > 1, "test should cover images finishing at different steps"


def test_beam_semantics(decoder, enc):
    states, mask = enc
    with torch.no_grad():
        ids, scores = beam_search(decoder, states, mask, beam_size=4, num_return=3, min_length=3,
                                  max_length=9)
    assert bool((ids[:, :, :3] != EOS).all()), "EOS before min_length"
    assert bool((scores[:, :-1] >= scores[:, 1:]).all()), "hypotheses not sorted by score"
    assert ids.size(-1) <= 9
    with torch.no_grad():  # EOS forbidden for all 3 steps: exactly 3 generated tokens, no [CLS]
        ids3, _ = beam_search(decoder, states, mask, beam_size=2, min_length=3, max_length=3)
    assert ids3.shape == (4, 1, 3) and bool((ids3 != EOS).all())


def test_beam_one_equals_greedy(decoder, enc):
    states, mask = enc
    with torch.no_grad():
        b_ids, b_sc = beam_search(decoder, states, mask, beam_size=1, min_length=1, max_length=8)
        g_ids, g_sc = greedy(decoder, states, mask, min_length=1, max_length=8)
        g_ids_nc, _ = greedy(decoder, states, mask, min_length=1, max_length=8, use_cache=False)
    width = max(b_ids.size(-1), g_ids.size(-1))
    assert torch.equal(F.pad(b_ids[:, 0], (0, width - b_ids.size(-1))),
                       F.pad(g_ids, (0, width - g_ids.size(-1))))
    assert torch.equal(g_ids, g_ids_nc)
    torch.testing.assert_close(b_sc[:, 0], g_sc, atol=1e-5, rtol=1e-5)


def test_cross_kv_projected_once_per_image(decoder, enc):
    states, mask = enc
    calls = []
    hook = decoder.layers[0].crossattention.self.key.register_forward_hook(
        lambda m, a, o: calls.append(a[0].size(0)))
    with torch.no_grad():
        beam_search(decoder, states, mask, beam_size=3, max_length=6, use_cache=True)
    hook.remove()
    assert calls == [4]  # one projection of the 4 images, not per beam or step


def test_prompt_and_logits_mask(decoder, enc):
    states, mask = enc
    prompt = torch.tensor([101, 17, 23])
    allowed = torch.full((200,), -10000.0)
    allowed[150:160] = 0
    with torch.no_grad():
        ids, _ = greedy(decoder, states, mask, prompt_ids=prompt, max_length=4, min_length=4,
                        logits_mask=allowed)
        ids_b, _ = beam_search(decoder, states, mask, prompt_ids=prompt, beam_size=2,
                               max_length=4, min_length=4, logits_mask=allowed)
    assert ids.shape == (4, 4) and bool(((ids >= 150) & (ids < 160)).all())
    assert bool(((ids_b >= 150) & (ids_b < 160)).all())


def test_rank_answers_matches_brute_force(decoder, enc):
    states, mask = enc
    answers = torch.tensor([[101, 5, 6, 102], [101, 7, 102, 0], [101, 8, 9, 102], [101, 5, 102, 0],
                            [101, 11, 102, 0]])
    amask = (answers != 0).long()
    with torch.no_grad():
        top, probs = rank_answers(decoder, states, mask, answers, amask, k=5)
        # brute force: log p(first) + sum_t log p(token_t) (official counts the first twice)
        want = torch.zeros(4, 5)
        for a in range(5):
            ids = answers[a].repeat(4, 1)
            logp = decoder(ids, amask[a].repeat(4, 1), states, mask).logits.log_softmax(-1)
            n = int(amask[a].sum())
            tok = sum(logp[:, t, ids[0, t + 1]] for t in range(n - 1))
            want[:, a] = logp[:, 0, ids[0, 1]] + tok
    want_p, want_idx = want.softmax(-1).topk(5, dim=1)
    assert torch.equal(top, want_idx)
    torch.testing.assert_close(probs, want_p, atol=1e-5, rtol=1e-4)
    with torch.no_grad():
        top2, _ = rank_answers(decoder, states, mask, answers, amask, k=2)
    assert top2.shape == (4, 2)


def test_beam_scores_are_differentiable_for_scst(decoder, enc):
    states, mask = enc
    states = states.clone().requires_grad_(True)
    _, scores = beam_search(decoder, states, mask, beam_size=3, num_return=3, min_length=2,
                            max_length=5)
    scores[torch.isfinite(scores)].sum().backward()
    assert states.grad is not None and bool(states.grad.abs().sum() > 0)
    assert decoder.cls.predictions.transform.dense.weight.grad is not None


def test_beam_scores_backprop_with_gradient_checkpointing(decoder, enc):
    """SCST with `grad_checkpointing: true` (the paper config): the cached decoding step runs
    without checkpointing (the cache grows in place, so a recomputation would see later keys);
    gradients equal those without checkpointing."""
    states, mask = enc
    grads = []
    for ckpt in (False, True):
        decoder.train()
        decoder.bert.encoder.grad_checkpointing = ckpt
        torch.manual_seed(0)  # the same dropout masks in both runs
        decoder.zero_grad()
        x = states.clone().requires_grad_(True)
        _, scores = beam_search(decoder, x, mask, beam_size=3, num_return=3, min_length=2, max_length=5)
        scores[torch.isfinite(scores)].sum().backward()
        grads.append(x.grad)
    decoder.bert.encoder.grad_checkpointing = False
    decoder.eval()
    torch.testing.assert_close(grads[1], grads[0])
