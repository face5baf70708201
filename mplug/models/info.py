"""Parameter counts and the fusion schedule of a named model, built on the meta device (seconds).

`params_effective` counts the parameters that a forward pass of the task model uses (tied weights
once): vision tower (+ visn_fc/LN for large), text encoder, the fusion layers minus the
`crossattention` of connected layers (unused there), and the decoder (with its own embeddings and
the LM-head transform and bias). Task heads (ITC projections, ITM/classifier heads) and momentum
copies belong to the task models and are not counted.

The official README/report counts (347.4M base, 566.0M large) also include two tensors that a
forward pass never uses and that our model does not build: the CLIP `visual.proj` (768x512 base,
1024x768 large) and, for base, the `crossattention` of the connected fusion layer 3 (2.36M).
`official_convention` adds those back, so it is directly comparable.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mplug.models.config import MPLUGConfig
from mplug.models.fusion import CONNECTED, fusion_schedule
from mplug.task_registry import model_tasks

MODEL_TASKS = model_tasks()  # the heads (build_model's tasks) the task registry's tasks use
# parts of the backbone whose parameters each task's forward pass uses
_USED = {
    "pretrain": ("vision", "text", "fusion", "decoder"),
    "vqa": ("vision", "text", "fusion", "decoder"),
    "grounding": ("vision", "text", "fusion", "decoder"),
    "caption": ("vision", "decoder"),  # official caption: decoder over visual tokens only
    "retrieval": ("vision", "text", "fusion"),
    "nlvr2": ("vision", "text", "fusion"),
    "snli_ve": ("vision", "text", "fusion"),
}
# CLIP visual.proj output width (OpenAI): ViT-B/16 -> 512, ViT-L/14 -> 768
_CLIP_PROJ_OUT = {768: 512, 1024: 768}


def _unique_numel(params) -> int:
    seen, total = set(), 0
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def build_meta_backbone(cfg: MPLUGConfig, task: str = "vqa") -> nn.Module:
    from mplug.models.mplug import MPLUGBackbone

    with torch.device("meta"):
        return MPLUGBackbone(cfg, n_images=2 if task == "nlvr2" else 1,
                             with_decoder="decoder" in _USED[task])


def used_parameters(model: nn.Module, task: str = "vqa") -> list[nn.Parameter]:
    """The backbone parameters a forward pass of `task` uses (tied weights appear once)."""
    if task not in _USED:
        raise ValueError(f"unknown task {task!r}; use one of {MODEL_TASKS}")
    parts = _USED[task]
    mods: list[nn.Module] = []
    if "vision" in parts:
        mods.append(model.visual_encoder)
        mods += [getattr(model, n) for n in ("visn_fc", "visn_layer_norm") if hasattr(model, n)]
    if "text" in parts:
        mods.append(model.text_encoder)
    if "decoder" in parts and model.text_decoder is not None:
        mods.append(model.text_decoder)
    params = [p for m in mods for p in m.parameters()]
    if "fusion" in parts:
        for layer in model.fusion_encoder.encoder.layer:
            for name, p in layer.named_parameters():
                if layer.kind == CONNECTED and name.startswith(("crossattention.", "crossattention2.")):
                    continue
                params.append(p)
    seen: set[int] = set()
    return [p for p in params if not (id(p) in seen or seen.add(id(p)))]


def model_info(cfg: MPLUGConfig, task: str = "vqa") -> dict[str, Any]:
    """JSON-ready summary: params_total, params_effective, fusion schedule, config."""
    if task not in _USED:
        raise ValueError(f"unknown task {task!r}; use one of {MODEL_TASKS}")
    model = build_meta_backbone(cfg, task)
    total = _unique_numel(model.parameters())
    effective = _unique_numel(used_parameters(model, task))
    kinds = fusion_schedule(cfg)
    unused_cross = 0
    for layer in model.fusion_encoder.encoder.layer:
        if layer.kind == CONNECTED and "fusion" in _USED[task]:
            unused_cross += _unique_numel(layer.crossattention.parameters())
    proj_out = _CLIP_PROJ_OUT.get(cfg.vision.width, cfg.text.hidden)
    clip_proj = cfg.vision.width * proj_out if "vision" in _USED[task] else 0
    return {
        "name": cfg.name,
        "task": task,
        "params_total": total,
        "params_effective": effective,
        "params_official_convention": effective + unused_cross + clip_proj,
        "official_convention_note": ("params_effective + never-used tensors the official count "
                                     f"includes: CLIP visual.proj ({clip_proj}) and crossattention "
                                     f"of connected layers ({unused_cross})"),
        "fusion_schedule": kinds,
        "connected_layers": [i for i, k in enumerate(kinds) if k == CONNECTED],
        "tokens_per_image": cfg.vision.n_tokens,
        "config": cfg.to_dict(),
    }
