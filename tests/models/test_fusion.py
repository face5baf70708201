"""Skip-connected fusion: schedules, where the visual tokens change, residual rules, fast paths."""
import pytest
import torch

from mplug.models import get_config
from mplug.models.fusion import FusionEncoder, fusion_schedule

A, C = "asymmetric", "connected"


def _connected(cfg):
    return [i for i, k in enumerate(fusion_schedule(cfg)) if k == C]


@pytest.mark.parametrize("schedule, stride, want", [
    ("official", 3, [3]), ("official", 6, []), ("official", 1, [1, 2, 3, 4, 5]),
    ("official", 2, [2, 4]), ("paper", 3, [3]), ("paper", 1, [1, 3, 5]), ("paper", 2, [2, 5]),
    ("paper", 6, []), ("paper", 5, [5])])
def test_schedule_which_layers_are_connected(schedule, stride, want):
    assert _connected(get_config("mplug_base", schedule=schedule, stride=stride)) == want


def test_ablation_schedules():
    base = get_config("mplug_base")
    assert fusion_schedule(base.replace(fusion_type="connected")) == [C] * 6
    assert fusion_schedule(base.replace(fusion_type="asymmetric")) == [A] * 6
    assert fusion_schedule(base.replace(fusion_type="two_stream")) == ["two_stream"] * 6


def _states(cfg, b=2, n=9, length=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    d = cfg.text.hidden
    v, t = torch.randn(b, n, d, generator=g), torch.randn(b, length, d, generator=g)
    t_mask = torch.ones(b, length, dtype=torch.long)
    t_mask[1, 3:] = 0
    return v, torch.ones(b, n, dtype=torch.long), t, t_mask


def _trace_visual(fusion, v, vm, t, tm):
    """Visual states entering the next layer after each layer (the residual rule applied)."""
    seen = []
    hooks = [layer.register_forward_hook(lambda mod, args, out: seen.append(out[0][0]))
             for layer in fusion.encoder.layer]
    try:
        fusion(v, vm, t, tm)
    finally:
        for h in hooks:
            h.remove()
    return seen


def test_visual_tokens_change_only_after_connected_layer():
    cfg = get_config("mplug_tiny")  # 4 layers, stride 3 -> layer 3 connected
    torch.manual_seed(0)
    fusion = FusionEncoder(cfg).eval()
    v, vm, t, tm = _states(cfg)
    with torch.no_grad():
        after = _trace_visual(fusion, v, vm, t, tm)
    for i in range(3):
        assert torch.equal(after[i], v), f"layer {i} changed the visual tokens"
    assert not torch.allclose(after[3], v)


def test_stride6_official_leaves_visual_tokens_untouched():
    cfg = get_config("mplug_tiny", fusion_layers=6, stride=6)
    fusion = FusionEncoder(cfg).eval()
    v, vm, t, tm = _states(cfg)
    v2, t2 = fusion(v, vm, t, tm)
    assert torch.equal(v2, v) and not torch.allclose(t2, t)


@pytest.mark.parametrize("schedule", ["official", "paper"])
def test_connected_layer_visual_update_rule(schedule):
    cfg = get_config("mplug_tiny", schedule=schedule, fusion_layers=4, stride=3)
    torch.manual_seed(0)
    fusion = FusionEncoder(cfg).eval()
    v, vm, t, tm = _states(cfg)
    with torch.no_grad():
        v2, t2 = fusion(v, vm, t, tm)
        # text after the three asymmetric layers, then the connected layer by hand (Eq. 4-5)
        layer = fusion.encoder.layer[3]
        t_in = t
        masks = [(1.0 - vm[:, None, None, :].float()) * -10000.0]
        t_add = (1.0 - tm[:, None, None, :].float()) * -10000.0
        for lyr in fusion.encoder.layer[:3]:
            _, t_in = lyr([v], masks, t_in, t_add)
        x = torch.cat([v, t_in], 1)
        x = layer.ffn(layer.attention(x, torch.cat([masks[0], t_add], -1))[0])
        v_new, t_new = x[:, : v.size(1)], x[:, v.size(1):]
    want_v = v + v_new if schedule == "official" else v_new
    torch.testing.assert_close(v2, want_v)
    torch.testing.assert_close(t2, t_new)


def test_ablation_variants_change_visual_as_expected():
    v_base = get_config("mplug_tiny")
    v, vm, t, tm = _states(v_base)
    for ftype, changes in (("asymmetric", False), ("connected", True), ("two_stream", True)):
        fusion = FusionEncoder(v_base.replace(fusion_type=ftype)).eval()
        with torch.no_grad():
            v2, t2 = fusion(v, vm, t, tm)
        assert v2.shape == v.shape and t2.shape == t.shape
        assert (not torch.equal(v2, v)) == changes, ftype
    two = FusionEncoder(v_base.replace(fusion_type="two_stream"))
    names = {n.split(".")[3] for n, _ in two.named_parameters()}
    assert {"vision_attention", "vision_crossattention", "vision_intermediate", "vision_output"} <= names


def test_precomputed_cross_kv_fast_path():
    cfg = get_config("mplug_tiny")
    fusion = FusionEncoder(cfg).eval()
    v, vm, t, tm = _states(cfg)
    with torch.no_grad():
        want = fusion(v, vm, t, tm)
        kv = fusion.project_cross_kv(v)
        assert len(kv) == 3  # layers before the connected one
        got = fusion(v, vm, t, tm, cross_kv=kv)
    torch.testing.assert_close(got[0], want[0])
    torch.testing.assert_close(got[1], want[1])
    with pytest.raises(ValueError, match="after the visual tokens changed"):
        fusion(v, vm, t, tm, cross_kv=kv + kv[:1])


def test_nlvr2_two_cross_attentions_merge_symmetrically():
    cfg = get_config("mplug_tiny")
    torch.manual_seed(0)
    fusion = FusionEncoder(cfg, n_images=2).eval()
    for layer in fusion.encoder.layer:
        layer.crossattention2.load_state_dict(layer.crossattention.state_dict())
    v1, vm, t, tm = _states(cfg, seed=1)
    v2 = _states(cfg, seed=2)[0]
    with torch.no_grad():
        (a1, a2), ta = fusion([v1, v2], vm, t, tm)
        (b1, b2), tb = fusion([v2, v1], vm, t, tm)
    # mean-merged identical cross-attentions: the text is invariant to the image order
    torch.testing.assert_close(ta, tb, atol=1e-5, rtol=1e-5)
    assert a1.shape == v1.shape and a2.shape == v2.shape
    assert "crossattention2" in dict(fusion.encoder.layer[0].named_children())
    with pytest.raises(ValueError, match="2 image"):
        fusion(v1, vm, t, tm)
