"""Model configs: registry, overrides, validation, BERT vocabulary layout."""
import pytest

from mplug.errors import ConfigError
from mplug.models import MPLUGConfig, bert_unused_id, get_config, list_configs


def test_registry_has_named_configs():
    assert {"mplug_base", "mplug_large", "mplug_tiny", "mplug_smoke"} <= set(list_configs())
    base, large = get_config("mplug_base"), get_config("mplug_large")
    assert (base.vision.width, base.vision.layers, base.vision.patch, base.stride) == (768, 12, 16, 3)
    assert (large.vision.width, large.vision.layers, large.vision.patch, large.stride) == (1024, 24, 14, 6)
    assert large.use_visn_fc and not base.use_visn_fc
    assert (base.vision.n_tokens, large.vision.n_tokens) == (577, 577)


def test_overrides_flat_and_dotted():
    cfg = get_config("mplug_base", stride=6, schedule="paper", image_res=256, vocab_size=1234)
    assert (cfg.stride, cfg.schedule, cfg.vision.image_res, cfg.text.vocab_size) == (6, "paper", 256, 1234)
    assert get_config("mplug_tiny", **{"text.heads": 4}).text.heads == 4
    assert get_config("mplug_base").stride == 3  # overrides never leak into the registry


@pytest.mark.parametrize("bad, word", [
    ({"stridee": 2}, "stridee"), ({"heads": 2}, "ambiguous"), ({"vision.nope": 1}, "vision.nope"),
    ({"stride": 0}, "stride=0"), ({"schedule": "x"}, "schedule"), ({"fusion_type": "x"}, "fusion_type"),
    ({"image_res": 4}, "patch"), ({"attn_impl": "flash"}, "attn_impl")])
def test_bad_overrides_raise_config_error_naming_key(bad, word):
    with pytest.raises(ConfigError, match=word):
        get_config("mplug_tiny", **bad)


def test_a_resolution_off_the_patch_grid_drops_the_remainder_as_clips_convolution():
    """hparams: paper fine-tunes VQA at 504 px, also for mplug_base (patch 16): 31x31 patches,
    the last 8 px unused, as the official CLIP code runs it."""
    import torch

    from mplug.models.vision import VisionTransformer

    cfg = get_config("mplug_base_mini", image_res=504).vision
    assert cfg.grid == 31
    assert VisionTransformer(cfg)(torch.randn(1, 3, 504, 504)).shape == (1, 1 + 31 * 31, cfg.width)


def test_from_dict_roundtrip_and_unknown_nested_key():
    cfg = get_config("mplug_smoke")
    assert MPLUGConfig.from_dict(cfg.to_dict()) == cfg
    d = cfg.to_dict()
    d["text"]["hiden"] = 3
    with pytest.raises(ConfigError, match="text.'hiden'"):
        MPLUGConfig.from_dict(d)
    with pytest.raises(ConfigError, match="unknown model"):
        get_config("mplug_huge")


def test_bert_unused_ids_follow_bert_base_uncased_layout():
    # [unused0..98] = 1..99, then [UNK] [CLS] [SEP] [MASK] = 100..103, [unused99] = 104
    assert bert_unused_id(0) == 1 and bert_unused_id(98) == 99 and bert_unused_id(99) == 104
    cfg = get_config("mplug_base")
    assert (cfg.grounding_prefix_id, cfg.grounding_coord_start) == (344, 345)
    assert cfg.grounding_coord_start + cfg.grounding_bins - 1 == bert_unused_id(676) == 681
