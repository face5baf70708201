"""Cached ITM rerank (`RetrievalModel.itm_scores_cached`) equals the plain path."""
import pytest
import torch

from mplug.models import build_model

# tiny: 4 fusion layers. stride 3 official -> A A A C (a connected layer, as mplug_base);
# stride 6 -> A A A A (no visual change, as mplug_large: every layer cached); paper schedule
# stride 1 -> A C A C; eager attention is the reference implementation.
CASES = [dict(stride=3), dict(stride=6), dict(stride=6, visn_fc=True),
         dict(stride=1, schedule="paper"), dict(stride=3, attn_impl="eager")]


def _model(**over):
    torch.manual_seed(0)
    return build_model("mplug_tiny", "retrieval", **over).eval()


def _texts(model, p, seed=1):
    g = torch.Generator().manual_seed(seed)
    cfg = model.cfg
    ids = torch.randint(1000, cfg.text.vocab_size, (p, 7), generator=g)
    ids[:, 0] = cfg.bos_token_id
    mask = torch.ones_like(ids)
    for i in range(p):  # padded candidates of different lengths
        n = 3 + i % 5
        mask[i, n:] = 0
        ids[i, n:] = 0
    return model.itc_features(text_ids=ids, text_mask=mask)["text_embeds"], mask


def _images(model, n, seed=2):
    g = torch.Generator().manual_seed(seed)
    r = model.cfg.vision.image_res
    f = model.itc_features(image=torch.randn(n, 3, r, r, generator=g))
    return f["image_embeds"], f["image_mask"]


@pytest.mark.parametrize("over", CASES, ids=lambda o: "-".join(f"{k}{v}" for k, v in o.items()))
def test_one_image_many_texts(over):
    model = _model(**over)
    v, vm = _images(model, 1)
    t, tm = _texts(model, 9)
    plain = model.itm_scores(v.expand(9, -1, -1).clone(), t, tm, vm.expand(9, -1).clone())
    for chunk in (None, 4):
        fast = model.itm_scores_cached(v, t, tm, vm, chunk=chunk)
        assert fast.shape == (9,)
        torch.testing.assert_close(fast, plain, atol=1e-5, rtol=0)


@pytest.mark.parametrize("over", CASES[:2], ids=lambda o: f"stride{o['stride']}")
def test_pairs_with_image_index(over):
    model = _model(**over)
    v, vm = _images(model, 3)
    t, tm = _texts(model, 8)
    index = torch.tensor([2, 0, 0, 1, 2, 2, 1, 0])
    plain = model.itm_scores(v[index], t, tm, vm[index])
    fast = model.itm_scores_cached(v, t, tm, vm, image_index=index, chunk=3)
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=0)


def test_scores_differ_between_candidates():
    """Guards against a broadcast that would give every candidate the same score."""
    model = _model(stride=6)
    v, vm = _images(model, 1)
    t, tm = _texts(model, 6)
    fast = model.itm_scores_cached(v, t, tm, vm)
    assert fast.unique().numel() == 6


@pytest.mark.parametrize("stride,cached_layers", [(3, 3), (6, 4)])
def test_image_kv_projected_once(stride, cached_layers):
    model = _model(stride=stride)
    v, vm = _images(model, 1)
    t, tm = _texts(model, 8)
    calls = {i: [] for i in range(4)}
    hooks = [layer.crossattention.self.key.register_forward_hook(
        lambda m, a, o, i=i: calls[i].append(a[0].size(0)))
        for i, layer in enumerate(model.fusion_encoder.encoder.layer)]
    model.itm_scores_cached(v, t, tm, vm, chunk=2)
    for h in hooks:
        h.remove()
    for i in range(cached_layers):  # one projection of the one image, not per candidate/chunk
        assert calls[i] == [1], (i, calls)
    if stride == 3:  # after the connected layer the visual tokens depend on the text
        assert calls[3] == [] and sum(calls[i] == [] for i in range(4)) == 1


def test_bad_image_index():
    model = _model(stride=3)
    v, vm = _images(model, 2)
    t, tm = _texts(model, 5)
    with pytest.raises(ValueError, match="image_index"):
        model.itm_scores_cached(v, t, tm, vm)


def test_numpy_index_as_the_evaluator_passes_it():
    import numpy as np

    model = _model(stride=6)
    v, vm = _images(model, 2)
    t, tm = _texts(model, 5)
    ii = np.array([1, 1, 0, 1, 0])
    uniq, inv = np.unique(ii, return_inverse=True)
    plain = model.itm_scores(v[ii], t, tm, vm[ii])
    fast = model.itm_scores_cached(v[uniq], t, tm, vm[uniq], image_index=inv, chunk=2)
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=0)
    one = model.itm_scores_cached(v[:1], t, tm, vm[:1], image_index=np.zeros(5, dtype=int))
    torch.testing.assert_close(one, model.itm_scores(v[[0] * 5], t, tm, vm[[0] * 5]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("over", [dict(stride=6), dict(stride=3)], ids=["stride6", "stride3"])
def test_length_buckets_cut_padding_and_keep_scores(over):
    """Sorted by length, each bucket cut to its longest text: narrower fusion inputs, the
    same scores in the input order (also with several images)."""
    model = _model(**over)
    v, vm = _images(model, 2)
    t, tm = _texts(model, 9)  # real lengths 3..7, in no order
    widths = []
    hook = model.fusion_encoder.register_forward_pre_hook(lambda m, a: widths.append(a[2].size(1)))
    fast = model.itm_scores_cached(v[:1], t, tm, vm[:1], bucket=2)
    index = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1, 1])
    fast2 = model.itm_scores_cached(v, t, tm, vm, image_index=index, chunk=4, bucket=3)
    hook.remove()
    assert widths[:5] == [7, 6, 5, 4, 3] and widths[5:] == [7, 5, 4]
    plain = model.itm_scores(v[:1].expand(9, -1, -1).clone(), t, tm, vm[:1].expand(9, -1).clone())
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=0)
    torch.testing.assert_close(fast2, model.itm_scores(v[index], t, tm, vm[index]), atol=1e-5, rtol=0)
