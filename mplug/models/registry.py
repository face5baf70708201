"""Named model configs: `get_config(name, **overrides)`, `list_configs()`, `register(name, factory)`."""
from __future__ import annotations

from typing import Any, Callable

from mplug.errors import ConfigError
from mplug.models.config import MPLUGConfig, TextConfig, VisionConfig

_REGISTRY: dict[str, tuple[Callable[[], MPLUGConfig], str]] = {}


def register(name: str, factory: Callable[[], MPLUGConfig], description: str = "") -> None:
    """Add a named config. `factory()` must return a fresh MPLUGConfig each call."""
    if name in _REGISTRY:
        raise ConfigError(f"model config {name!r} is already registered")
    _REGISTRY[name] = (factory, description)


def list_configs() -> dict[str, str]:
    """name -> one-line description, in registration order."""
    return {name: desc for name, (_, desc) in _REGISTRY.items()}


def get_config(name: str, **overrides: Any) -> MPLUGConfig:
    """A fresh copy of the named config with overrides (see `MPLUGConfig.replace`)."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(_REGISTRY)}")
    cfg = _REGISTRY[name][0]()
    return cfg.replace(**overrides) if overrides else cfg


def _base() -> MPLUGConfig:
    # config_bert_stride3.json + vqa_mplug_base.yaml (image_res 384 for fine-tuning)
    return MPLUGConfig(name="mplug_base", vision=VisionConfig(768, 12, 12, 16, 384),
                       text=TextConfig(), stride=3)


def _large() -> MPLUGConfig:
    # config_bert.json + vqa_mplug_large.yaml: ViT-L/14 @336, visn_fc 1024->768, stride 6
    return MPLUGConfig(name="mplug_large", vision=VisionConfig(1024, 24, 16, 14, 336),
                       text=TextConfig(), stride=6, grad_checkpointing=False)


def _tiny() -> MPLUGConfig:
    # unit tests: < 1M params; 4 fusion layers with stride 3 -> relative layer 3 is connected.
    return MPLUGConfig(
        name="mplug_tiny",
        vision=VisionConfig(width=32, layers=2, heads=2, patch=8, image_res=32),
        text=TextConfig(hidden=32, heads=2, intermediate=64, vocab_size=1100, max_position=64),
        text_layers=2, fusion_layers=4, decoder_layers=2, stride=3, embed_dim=16, queue_size=64)


def _smoke() -> MPLUGConfig:
    # smoke DAG: learns the synthetic shapes world on CPU in minutes (docs/smoke-world.md).
    # 3 fusion layers with stride 2 -> relative layer 2 is connected.
    return MPLUGConfig(
        name="mplug_smoke",
        vision=VisionConfig(width=64, layers=2, heads=4, patch=8, image_res=64),
        text=TextConfig(hidden=64, heads=4, intermediate=256, vocab_size=1100, max_position=128),
        text_layers=2, fusion_layers=3, decoder_layers=2, stride=2, embed_dim=64, queue_size=1024)


# The paper run in miniature (`mplug miniature`): each paper architecture with its structure kept
# (patch size, position-embedding resolution, visn_fc or not, 6 fusion layers and the stride, the
# layer roles) and only sizes shrunk: widths, heads, ViT/text/decoder depths, vocabulary.
_MINI_TEXT = dict(hidden=32, heads=2, intermediate=128, vocab_size=1100)


def _base_mini() -> MPLUGConfig:
    return MPLUGConfig(name="mplug_base_mini", vision=VisionConfig(32, 2, 2, 16, 384),
                       text=TextConfig(**_MINI_TEXT), text_layers=2, fusion_layers=6,
                       decoder_layers=2, stride=3, embed_dim=16, queue_size=64)


def _large_mini() -> MPLUGConfig:
    return MPLUGConfig(name="mplug_large_mini", vision=VisionConfig(48, 4, 2, 14, 336),
                       text=TextConfig(**_MINI_TEXT), text_layers=2, fusion_layers=6,
                       decoder_layers=2, stride=6, embed_dim=16, queue_size=64,
                       grad_checkpointing=False)


# paper architecture -> its miniature (mplug.miniature, tests/workflow/test_miniature.py)
MINIATURE = {"mplug_base": "mplug_base_mini", "mplug_large": "mplug_large_mini"}

register("mplug_base", _base, "ViT-B/16 @384, 6 text / 6 fusion (stride 3) / 12 decoder layers")
register("mplug_large", _large, "ViT-L/14 @336 + visn_fc, 6 text / 6 fusion (stride 6) / 12 decoder")
register("mplug_tiny", _tiny, "unit-test model (< 1M params), 4 fusion layers stride 3")
register("mplug_smoke", _smoke, "smoke-DAG model (a few M params), 3 fusion layers stride 2")
register("mplug_base_mini", _base_mini, "mplug_base in miniature: width-32 ViT, patch 16 @384, 6 fusion (stride 3)")
register("mplug_large_mini", _large_mini,
         "mplug_large in miniature: width-48 ViT, patch 14 @336 + visn_fc, 6 fusion (stride 6)")
