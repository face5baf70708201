"""The static KV cache (fixed shapes for CUDA-graph capture) and the compiled cached step give
the plain path's sequences."""
import pytest
import torch

import mplug.models.generation as generation
from mplug.models.generation import beam_search, greedy
from mplug.models.kv_cache import KVCache, StaticKVCache


def test_static_cache_holds_the_same_keys_and_masks_the_rest():
    g = torch.Generator().manual_seed(0)
    dyn, sta = KVCache(1, 6), StaticKVCache(1, 6)
    for t in (2, 1, 1):
        k, v = torch.randn(3, 2, t, 4, generator=g), torch.randn(3, 2, t, 4, generator=g)
        mask = sta.key_mask(t, torch.float32, "cpu")  # before the step, as the decoder asks
        kd, vd = dyn.update(0, k, v)
        ks, vs = sta.update(0, k, v)
        dyn.advance(t)
        sta.advance(t)
        n = dyn.length
        assert ks.shape == (3, 2, 6, 4) and torch.equal(ks[:, :, :n], kd) and torch.equal(vs[:, :, :n], vd)
        visible = mask[0, 0] == 0  # (t, 6): query i sees keys up to its own position
        assert visible.sum(1).tolist() == list(range(n - t + 1, n + 1))
        rows = torch.tensor([2, 0, 1])
        dyn.reorder(rows)
        before = sta.k[0].data_ptr()
        sta.reorder(rows)
        assert sta.k[0].data_ptr() == before  # same rows: same memory (graph addresses)
    assert int(sta.pos) == sta.length == 4


def test_static_cache_equals_plain(decoder, enc):
    """Beam search (images finishing early: fewer rows) and greedy with a prompt."""
    states, mask = enc
    kw = dict(beam_size=3, num_return=2, min_length=2, max_length=7)
    with torch.no_grad():
        ids_p, sc_p = beam_search(decoder, states, mask, use_cache=False, **kw)
        ids_s, sc_s = beam_search(decoder, states, mask, use_cache="static", **kw)
        g_p, _ = greedy(decoder, states, None, prompt_ids=torch.tensor([101, 17, 23]), max_length=6,
                        use_cache=False)
        g_s, _ = greedy(decoder, states, None, prompt_ids=torch.tensor([101, 17, 23]), max_length=6,
                        use_cache="static")
    assert torch.equal(ids_s, ids_p) and torch.equal(g_s, g_p)
    torch.testing.assert_close(sc_s, sc_p, atol=1e-5, rtol=1e-5)


def test_compiled_step_equals_plain(decoder, enc, monkeypatch):
    """use_cache="graph" on the CPU, compiled with the aot_eager backend (CUDA graphs need CUDA;
    inductor's C++ build takes a minute here): the compiled step, with its device-side position,
    decodes the plain path's sequences, and a second call reuses the compiled step. Greedy: the
    rows never change, so one graph (beam search compiles once per alive-row count)."""
    graphs = []

    def backend(gm, example_inputs):  # aot_eager, counting the graphs Dynamo hands it
        graphs.append(gm)
        return torch._dynamo.lookup_backend("aot_eager")(gm, example_inputs)

    monkeypatch.setattr(generation, "GRAPH_COMPILE", {"backend": backend, "dynamic": False})
    monkeypatch.setattr(generation, "_COMPILED", {})
    torch._dynamo.reset()
    states, mask = enc
    with torch.no_grad():
        g_p, s_p = greedy(decoder, states, mask, max_length=6, use_cache=False)
        for _ in range(2):
            g_s, s_s = greedy(decoder, states, mask, max_length=6, use_cache="graph")
            assert torch.equal(g_s, g_p)
            torch.testing.assert_close(s_s, s_p, atol=1e-5, rtol=1e-5)
    # ONE graph for every step of both calls: the position lives on the device, so no step
    # recompiles (a host integer would give one graph per step)
    assert len(graphs) == 1 and len(generation._COMPILED) == 1


def test_static_cache_needs_no_grad(decoder, enc):
    with pytest.raises(ValueError, match="no_grad"):
        beam_search(decoder, enc[0], enc[1], use_cache="static")
    with pytest.raises(ValueError, match="use_cache"):
        with torch.no_grad():
            beam_search(decoder, enc[0], enc[1], use_cache="sometimes")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs (mode='reduce-overhead') need a CUDA device")
def test_cuda_graph_step_equals_plain(decoder, enc):
    states, mask = (t.cuda() for t in enc)
    dec = decoder.cuda()
    kw = dict(beam_size=3, num_return=2, min_length=2, max_length=7)
    with torch.no_grad():
        ids_p, _ = beam_search(dec, states, mask, use_cache=False, **kw)
        ids_g, _ = beam_search(dec, states, mask, use_cache="graph", **kw)
    assert torch.equal(ids_g, ids_p)
