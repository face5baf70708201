"""mPLUG model: configs, registry, backbone modules. See docs/architecture.md (model contract).

`build_model(cfg_or_name, task)` lives in mplug/models/tasks.py; it is re-exported lazily here so
that `import mplug.models` stays light.
"""
from __future__ import annotations

from typing import Any

from mplug.models.config import MPLUGConfig, TextConfig, VisionConfig, bert_unused_id
from mplug.models.registry import get_config, list_configs, register

__all__ = ["MPLUGConfig", "TextConfig", "VisionConfig", "bert_unused_id", "get_config",
           "list_configs", "register", "MPLUGBackbone", "build_model"]


def __getattr__(name: str) -> Any:
    if name == "MPLUGBackbone":
        from mplug.models.mplug import MPLUGBackbone

        return MPLUGBackbone
    if name == "build_model":
        from mplug.models.tasks import build_model

        return build_model
    raise AttributeError(f"module 'mplug.models' has no attribute {name!r}")
