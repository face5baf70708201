"""Shared fixtures for the model tests: tiny configs, few threads, fixed seeds."""
import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture
def tiny_cfg():
    from mplug.models import get_config

    return get_config("mplug_tiny")


@pytest.fixture
def backbone(tiny_cfg):
    from mplug.models.mplug import MPLUGBackbone

    torch.manual_seed(0)
    return MPLUGBackbone(tiny_cfg).eval()


@pytest.fixture(name="make_inputs")
def make_inputs_fixture():
    return make_inputs


def make_inputs(cfg, b=2, length=6, seed=0):
    """Random image, text ids and a padded text mask (last example padded after 4 tokens)."""
    g = torch.Generator().manual_seed(seed)
    r = cfg.vision.image_res
    image = torch.randn(b, 3, r, r, generator=g)
    ids = torch.randint(1000, cfg.text.vocab_size, (b, length), generator=g)
    ids[:, 0] = 101
    mask = torch.ones(b, length, dtype=torch.long)
    mask[-1, 4:] = 0
    ids[-1, 4:] = 0
    return image, ids, mask


@pytest.fixture
def decoder():
    """A tiny decoder with sharp (non-uniform) distributions; EOS (102) made moderately likely so
    that hypotheses end at different steps (test_generation*.py)."""
    from mplug.models import get_config
    from mplug.models.decoder import TextDecoder

    torch.manual_seed(0)
    dec = TextDecoder(get_config("mplug_tiny", vocab_size=200)).eval()
    with torch.no_grad():
        for p in dec.parameters():
            if p.dim() > 1:
                p.mul_(8)
        dec.cls.predictions.bias[102] += 2.0
    return dec


@pytest.fixture
def enc():
    """Encoder states (4, 7, 32) and their mask, the third example padded after 4 tokens."""
    g = torch.Generator().manual_seed(1)
    states = torch.randn(4, 7, 32, generator=g)
    mask = torch.ones(4, 7, dtype=torch.long)
    mask[2, 4:] = 0
    return states, mask
