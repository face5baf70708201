"""Cached decoding internals: the preallocated KV cache, shared (folded) cross-attention K/V,
and the cached beam search against the plain recompute path in the cases the fast path adds."""
import pytest
import torch

from mplug.models.bert import BertSelfAttention
from mplug.models.config import TextConfig
from mplug.models.generation import beam_search, greedy
from mplug.models.kv_cache import KVCache


def _reference_steps(steps):
    """Plain list cache: cat new tokens, index rows."""
    k = v = None
    outs = []
    for kind, a, b in steps:
        if kind == "add":
            k = a if k is None else torch.cat([k, a], 2)
            v = b if v is None else torch.cat([v, b], 2)
            outs.append((k.clone(), v.clone()))
        else:
            k, v = k[a], v[a]
    return outs


@pytest.mark.parametrize("inplace", [True, False])
def test_kv_cache_matches_cat_and_index(inplace):
    g = torch.Generator().manual_seed(0)
    rnd = lambda r, t: torch.randn(r, 2, t, 3, generator=g)  # noqa: E731
    steps = [("add", rnd(6, 3), rnd(6, 3)), ("reorder", torch.tensor([1, 1, 0, 5, 4, 2]), None),
             ("add", rnd(6, 1), rnd(6, 1)), ("reorder", torch.tensor([3, 0, 0, 2, 1, 1]), None),
             ("add", rnd(6, 1), rnd(6, 1)), ("reorder", torch.tensor([4, 5, 0]), None),  # rows drop
             ("add", rnd(3, 1), rnd(3, 1)), ("reorder", torch.tensor([2, 2, 1]), None),
             ("add", rnd(3, 2), rnd(3, 2))]
    cache = KVCache(n_layers=2, max_length=8, inplace=inplace)
    got = []
    for kind, a, b in steps:
        if kind == "add":
            # in place, the returned views are overwritten by later steps: keep copies
            out = [tuple(x.clone() for x in cache.update(layer, a + layer, b - layer))
                   for layer in range(2)]
            cache.advance(a.size(2))
            got.append(out)
        else:
            cache.reorder(a)
    want = _reference_steps(steps)
    assert len(got) == len(want) == 5
    for per_layer, (wk, wv) in zip(got, want):
        for layer, (k, v) in enumerate(per_layer):
            assert torch.equal(k, wk + layer) and torch.equal(v, wv - layer)
    assert cache.length == 8
    if inplace:
        with pytest.raises(ValueError, match="KV cache holds 8 tokens"):
            cache.update(0, rnd(3, 1), rnd(3, 1))


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
@pytest.mark.parametrize("per_row_mask", [False, True])
def test_shared_kv_folded_into_queries_equals_repeated_kv(impl, per_row_mask):
    """B K/V rows serving G query rows each = the K/V repeated per row (L=3 query tokens:
    a prompt longer than one token at the first step)."""
    torch.manual_seed(0)
    att = BertSelfAttention(TextConfig(hidden=32, heads=4, intermediate=64), impl=impl).eval()
    b, g, n = 3, 4, 7
    hidden = torch.randn(b * g, 3, 32)
    kv = att.project_kv(torch.randn(b, n, 32))
    keep = torch.ones(b, n)
    keep[1, 4:] = 0
    mask = (1.0 - keep[:, None, None, :]) * -10000.0  # (B, 1, 1, N)
    rep_mask = mask.repeat_interleave(g, 0)
    rep_kv = tuple(x.repeat_interleave(g, 0) for x in kv)
    want, _ = att(hidden, rep_mask, kv=rep_kv)
    got, _ = att(hidden, rep_mask if per_row_mask else mask, kv=kv)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="cannot share"):
        att(hidden[:-1], None, kv=kv)



def test_cached_beams_share_the_image_kv_without_copies(decoder, enc):
    """The cross-attention K/V handed to a layer has one row per alive image (not per beam),
    and while every image is alive it IS the once-projected tensor (no copy)."""
    states, mask = enc
    seen = []

    def hook(module, args, kwargs):
        seen.append((args[0].size(0), kwargs["kv"][0]))

    handle = decoder.layers[0].crossattention.register_forward_pre_hook(hook, with_kwargs=True)
    with torch.no_grad():
        projected = decoder.project_cross_kv(states)[0][0]
        beam_search(decoder, states, mask, beam_size=3, min_length=1, max_length=8)
    handle.remove()
    assert seen and all(rows == 3 * k.size(0) for rows, k in seen)
    assert torch.equal(seen[0][1], projected)
    assert any(k.size(0) < 4 for _, k in seen), "test should cover images finishing early"


def test_cached_equals_plain_with_prompt_and_without_mask(decoder, enc):
    states, _ = enc
    prompt = torch.tensor([101, 17, 23])
    kw = dict(beam_size=3, num_return=2, min_length=2, max_length=7, prompt_ids=prompt)
    with torch.no_grad():
        ids_c, sc_c = beam_search(decoder, states, None, use_cache=True, **kw)
        ids_p, sc_p = beam_search(decoder, states, None, use_cache=False, **kw)
        g_c, _ = greedy(decoder, states, None, prompt_ids=prompt, max_length=6)
        g_p, _ = greedy(decoder, states, None, prompt_ids=prompt, max_length=6, use_cache=False)
    assert torch.equal(ids_c, ids_p) and torch.equal(g_c, g_p)
    torch.testing.assert_close(sc_c, sc_p, atol=1e-5, rtol=1e-5)


def test_grad_mode_cache_gives_the_same_beams(decoder, enc):
    """With autograd on (SCST) the cache is functional (cat/index_select), in place otherwise:
    same sequences and scores."""
    states, mask = enc
    kw = dict(beam_size=3, num_return=2, min_length=2, max_length=7)
    with torch.no_grad():
        ids_n, sc_n = beam_search(decoder, states, mask, **kw)
    ids_g, sc_g = beam_search(decoder, states.clone().requires_grad_(True), mask, **kw)
    assert torch.equal(ids_n, ids_g)
    torch.testing.assert_close(sc_g.detach(), sc_n, atol=1e-6, rtol=1e-6)
