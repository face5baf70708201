"""Official mPLUG checkpoints (and CLIP + BERT initial weights) -> our state dicts.

Our module names mirror the official ones, so conversion is mostly a rename
(see docs/architecture.md, the official key lists in tests/models/fixtures/official-keys/ and the
official loaders' renaming, AliceMind mPLUG/vqa_mplug.py and grounding_mplug.py):

* pre-training wrappers: `text_encoder.bert.` -> `text_encoder.`, `fusion_encoder.fusion.` ->
  `fusion_encoder.`, and the pre-training MLM head `text_encoder.cls.` -> `mlm_head.`;
* the official CLIP holds the vision tower under `visual_encoder.visual.`; ours is
  `visual_encoder.` directly. The CLIP text tower (`visual_encoder.{transformer,token_embedding,
  ...}`) and `visual_encoder.visual.proj` are never used (skip_last_layer) and are dropped;
* the official fusion module builds 12 layers and runs only the last `fusion_layers` (6..11):
  those become our layers 0..5; layers 0..5 and `fusion_encoder.embeddings` are dropped;
* grounding buffers (`prefix_ids`, `target_ids`, `bbox_prob_mask`) are recomputed, not loaded;
* momentum copies (`*_m`) and queues are kept only when the target task model has them. When the
  target has them and the checkpoint does not, momentum weights are copied from the online ones
  (the official `copy_params`) and the queues are freshly initialised;
* the CLIP position embedding is resized to the target resolution (CLS row kept, grid bilinear,
  as the official fine-tuning scripts do).

Every target key must end up filled with the right shape; any other shape mismatch, and any
checkpoint key that matches no rule, is a `CheckpointError` naming the key.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping

from mplug.errors import CheckpointError

if TYPE_CHECKING:  # pragma: no cover
    import torch

# Top-level modules an mPLUG checkpoint may carry (with or without the momentum suffix `_m`).
KNOWN_MODULES = ("visual_encoder", "visn_fc", "visn_layer_norm", "text_encoder", "fusion_encoder",
                 "text_decoder", "vision_proj", "text_proj", "itm_head", "mlm_head", "temp")
QUEUE_KEYS = ("image_queue", "text_queue", "idx_queue", "queue_ptr")
GROUNDING_BUFFERS = ("prefix_ids", "target_ids", "bbox_prob_mask")
POS_EMBED_SUFFIX = "positional_embedding"
_LAYER_RE = re.compile(r"^encoder\.layer\.(\d+)\.(.*)$")


@dataclass
class ConversionReport:
    """What the converter did, key by key."""

    kept: int = 0
    renamed: list[tuple[str, str]] = field(default_factory=list)  # (official, ours)
    dropped: dict[str, list[str]] = field(default_factory=dict)  # reason -> official keys
    resized: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # key, old, new
    filled: dict[str, list[str]] = field(default_factory=dict)  # how -> our keys
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # key, ckpt, model

    def drop(self, reason: str, key: str) -> None:
        self.dropped.setdefault(reason, []).append(key)

    def fill(self, how: str, key: str) -> None:
        self.filled.setdefault(how, []).append(key)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def format(self, verbose: bool = False) -> str:
        n_dropped = sum(len(v) for v in self.dropped.values())
        lines = [f"kept {self.kept} tensors ({len(self.renamed)} renamed), dropped {n_dropped}, "
                 f"resized {len(self.resized)}, filled {sum(len(v) for v in self.filled.values())}"]
        for reason, keys in self.dropped.items():
            lines.append(f"  dropped {len(keys):5d}  {reason}")
        for how, keys in self.filled.items():
            lines.append(f"  filled  {len(keys):5d}  {how}")
            lines += [f"      {k}" for k in keys] if verbose else []
        for key, old, new in self.resized:
            lines.append(f"  resized {key}: {old} -> {new}")
        lines.append(f"missing: {len(self.missing)}")
        lines += [f"  missing     {k}" for k in self.missing]
        lines.append(f"unexpected: {len(self.unexpected)}")
        lines += [f"  unexpected  {k}" for k in self.unexpected]
        lines.append(f"shape-mismatched: {len(self.mismatched)}")
        lines += [f"  mismatched  {k}: checkpoint {a} vs model {b}" for k, a, b in self.mismatched]
        return "\n".join(lines)

    def raise_if_bad(self, source: str) -> None:
        problems = ([f"shape mismatch {k}: checkpoint {a} vs model {b}" for k, a, b in self.mismatched]
                    + [f"unknown key {k}" for k in self.unexpected]
                    + [f"missing key {k}" for k in self.missing])
        if problems:
            shown = "; ".join(problems[:20]) + (f"; ... and {len(problems) - 20} more"
                                                 if len(problems) > 20 else "")
            raise CheckpointError(f"{source}: checkpoint does not fit the model: {shown}")


# ----------------------------------------------------------------------------- renaming
def _split_top(key: str) -> tuple[str, str, str]:
    """'fusion_encoder_m.encoder.x' -> ('fusion_encoder', '_m', 'encoder.x')."""
    top, _, rest = key.partition(".")
    if top.endswith("_m") and top[:-2] in KNOWN_MODULES:
        return top[:-2], "_m", rest
    return top, "", rest


def rename_official_key(key: str, fusion_offset: int) -> tuple[str | None, str]:
    """Map one official key to ours. Returns (new_key, "") or (None, reason it is dropped)."""
    if key in GROUNDING_BUFFERS:
        return None, "grounding buffers (recomputed from the config)"
    base, mom, rest = _split_top(key)
    if base == "text_encoder":
        if rest.startswith("bert."):
            rest = rest[len("bert."):]
        elif rest.startswith("cls."):  # pre-training BertForMaskedLM head
            base, rest = "mlm_head", rest[len("cls."):]
    elif base == "fusion_encoder":
        if rest.startswith("fusion."):
            rest = rest[len("fusion."):]
        if rest.startswith("embeddings."):
            return None, "fusion_encoder.embeddings (never used)"
        match = _LAYER_RE.match(rest)
        if match:
            idx = int(match.group(1))
            if idx < fusion_offset:
                return None, f"fusion layers 0..{fusion_offset - 1} (never run: start_layer)"
            rest = f"encoder.layer.{idx - fusion_offset}.{match.group(2)}"
    elif base == "visual_encoder":
        if not rest.startswith("visual."):
            return None, "CLIP text tower inside visual_encoder (never used)"
        rest = rest[len("visual."):]
        if rest == "proj":
            return None, "visual_encoder.visual.proj (skip_last_layer: no projection)"
    return (f"{base}{mom}.{rest}" if rest else f"{base}{mom}"), ""


def fusion_layer_offset(state: Mapping[str, object], target_layers: int) -> int:
    """How many leading official fusion layers never run (12 - fusion_layers = 6 officially)."""
    indices = set()
    for key in state:
        base, _, rest = _split_top(key)
        if base == "fusion_encoder":
            rest = rest[len("fusion."):] if rest.startswith("fusion.") else rest
            match = _LAYER_RE.match(rest)
            if match:
                indices.add(int(match.group(1)))
    if not indices:
        return 0
    return max(0, max(indices) + 1 - target_layers)


# ----------------------------------------------------------------------------- tensors
def resize_pos_embed(pos: "torch.Tensor", n_tokens: int) -> "torch.Tensor":
    """(1+G*G, W) -> (n_tokens, W): keep the CLS row, interpolate the grid bilinearly as the
    official `models/vit.py:resize_pos_embed` does (via `mplug.models.vision.resize_pos_embed`)."""
    from mplug.models.vision import resize_pos_embed as vit_resize

    new_g = math.isqrt(n_tokens - 1)
    old_g = math.isqrt(pos.shape[0] - 1)
    if new_g * new_g != n_tokens - 1 or old_g * old_g != pos.shape[0] - 1:
        raise CheckpointError(f"position embedding with {pos.shape[0]} rows cannot be resized to "
                              f"{n_tokens}: both must be 1 + a square grid")
    return vit_resize(pos, new_g)


def fit_pos_embeds(state: dict, target: dict) -> list[str]:
    """Resize, in place, every 2-D ViT position embedding of `state` (online and momentum) whose
    row count differs from the same key of `target` (a model's state dict): a checkpoint trained
    at another resolution. Returns the keys resized."""
    resized = []
    for key, value in list(state.items()):
        if key.endswith("positional_embedding") and key in target and value.dim() == 2 \
                and value.shape[0] != target[key].shape[0]:
            state[key] = resize_pos_embed(value, target[key].shape[0])
            resized.append(key)
    return resized


def fresh_queue(key: str, ref: "torch.Tensor") -> "torch.Tensor":
    """A queue buffer as the official __init__ makes it (random normalised, idx -100, ptr 0)."""
    import torch
    import torch.nn.functional as F

    name = key.split(".")[-1]
    if name in ("image_queue", "text_queue"):
        return F.normalize(torch.randn(tuple(ref.shape)), dim=0).to(ref.dtype)
    if name == "idx_queue":
        return torch.full(tuple(ref.shape), -100, dtype=ref.dtype)
    return torch.zeros(tuple(ref.shape), dtype=ref.dtype)


def _is_queue(key: str) -> bool:
    return key in QUEUE_KEYS


def _online_key(key: str) -> str | None:
    base, mom, rest = _split_top(key)
    if not mom:
        return None
    return f"{base}.{rest}" if rest else base


def _drop_reason_for_absent(key: str, target: Mapping[str, object], task: str) -> str | None:
    """Why a renamed key the target does not have may be dropped (None: it is unexpected)."""
    base, mom, rest = _split_top(key)
    top = key.partition(".")[0]
    if rest.endswith("position_ids"):
        return "position_ids buffers (recomputed)"
    if key.endswith("cls.predictions.decoder.weight") or key.endswith("cls.predictions.decoder.bias"):
        return "tied LM-head aliases (decoder.weight = word embeddings, decoder.bias = bias)"
    if mom or _is_queue(key):
        return f"momentum copies and queues (not used by task {task!r})"
    if base in KNOWN_MODULES and not any(k == top or k.startswith(top + ".") for k in target):
        return f"modules not used by task {task!r}"
    return None


def strip_model_prefix(state: Mapping[str, "torch.Tensor"], source: str = "<checkpoint>",
                       ) -> Mapping[str, "torch.Tensor"]:
    """Strip the `model.` prefix that ModelScope's fine-tuned mPLUG checkpoints put on every key.

    No official key starts with `model.`, so the prefix is stripped only when every key has it;
    a mix of prefixed and unprefixed keys is a `CheckpointError` naming one key of each kind."""
    prefixed = [k for k in state if k.startswith("model.")]
    if not prefixed:
        return state
    plain = [k for k in state if not k.startswith("model.")]
    if plain:
        raise CheckpointError(f"{source}: mixes keys prefixed 'model.' (e.g. {prefixed[0]!r}) with unprefixed "
                              f"keys (e.g. {plain[0]!r}); expected all or none prefixed (ModelScope layout)")
    return {k[len("model."):]: v for k, v in state.items()}


def convert_official(state: Mapping[str, "torch.Tensor"], target: Mapping[str, "torch.Tensor"],
                     task: str = "?", source: str = "<checkpoint>",
                     ) -> tuple[dict[str, "torch.Tensor"], ConversionReport]:
    """Map an official state dict onto `target` (our model's state dict; meta tensors are fine).

    Returns the converted state (exactly the target's keys) and a report. Raises a
    `CheckpointError` naming the keys when the checkpoint does not fit. A flat state dict with
    every key prefixed `model.` (the ModelScope layout) is accepted as if unprefixed.
    """
    state = strip_model_prefix(state, source)
    report = ConversionReport()
    n_fusion = len({m.group(1) for k in target
                    if k.startswith("fusion_encoder.") and (m := _LAYER_RE.match(k[15:]))})
    offset = fusion_layer_offset(state, n_fusion)
    out: dict[str, "torch.Tensor"] = {}
    for key, tensor in state.items():
        new, reason = rename_official_key(key, offset)
        if new is None:
            report.drop(reason, key)
            continue
        if new not in target:
            reason = _drop_reason_for_absent(new, target, task)
            if reason is None:
                report.unexpected.append(key if new == key else f"{key} (as {new})")
            else:
                report.drop(reason, key)
            continue
        ref = target[new]
        if new.split(".")[-1] == POS_EMBED_SUFFIX and tensor.shape != ref.shape \
                and tensor.dim() == 2 and tensor.shape[1] == ref.shape[1]:
            old_shape = tuple(tensor.shape)
            tensor = resize_pos_embed(tensor, ref.shape[0])
            report.resized.append((new, old_shape, tuple(tensor.shape)))
        if tuple(tensor.shape) != tuple(ref.shape):
            report.mismatched.append((key if new == key else f"{key} (as {new})",
                                      tuple(tensor.shape), tuple(ref.shape)))
            continue
        out[new] = tensor.to(ref.dtype) if tensor.is_floating_point() and ref.is_floating_point() \
            else tensor
        report.kept += 1
        if new != key:
            report.renamed.append((key, new))
    _fill_missing(out, target, report)
    report.raise_if_bad(source)
    return out, report


def _fill_missing(out: dict, target: Mapping[str, "torch.Tensor"], report: ConversionReport) -> None:
    """Momentum copies from their online twin; queues fresh; anything else stays missing."""
    for key, ref in target.items():
        if key in out:
            continue
        online = _online_key(key)
        if online is not None and online in out:
            out[key] = out[online].clone()
            report.fill("momentum copy of the online weights (official copy_params)", key)
        elif _is_queue(key):
            out[key] = fresh_queue(key, ref)
            report.fill("fresh queue (random normalised / idx -100 / ptr 0)", key)
        else:
            report.missing.append(key)


# ----------------------------------------------------------------------------- CLIP + BERT init
def _bert_name(key: str) -> str:
    """Normalise HF BERT names: drop a `bert.` prefix, old `gamma/beta` LayerNorm names."""
    key = key[len("bert."):] if key.startswith("bert.") else key
    return key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")


def clip_bert_init_map(target: Mapping[str, "torch.Tensor"], text_layers: int,
                       ) -> Callable[[str], str | None]:
    """Return our_key -> source key ('clip:...' or 'bert:...') for the initial model, as the
    official code initialises it: text encoder = BERT layers 0..T-1; fusion layer i's
    self-attention/FFN = BERT layer T+i (cross-attention random); decoder = BERT layers 0..11
    plus the MLM head (cross-attention random); MLM head = BERT's."""
    def source(key: str) -> str | None:
        base, mom, rest = _split_top(key)
        if mom:
            return None  # momentum copies are filled from the online weights afterwards
        if base == "visual_encoder":
            return f"clip:visual.{rest}"
        if base == "text_encoder":
            return f"bert:{rest}"
        if base == "fusion_encoder":
            match = _LAYER_RE.match(rest)
            if match and not match.group(2).startswith("crossattention."):
                return f"bert:encoder.layer.{int(match.group(1)) + text_layers}.{match.group(2)}"
            return None
        if base == "text_decoder":
            if rest.startswith("bert.") and ".crossattention." not in rest:
                return f"bert:{rest[len('bert.'):]}"
            if rest.startswith("cls."):
                return f"bert:{rest}"
            return None
        if base == "mlm_head":
            return f"bert:cls.{rest}"
        return None
    return source


def init_from_clip_bert(model_state: Mapping[str, "torch.Tensor"], clip_state: Mapping[str, "torch.Tensor"],
                        bert_state: Mapping[str, "torch.Tensor"], text_layers: int,
                        ) -> tuple[dict[str, "torch.Tensor"], ConversionReport]:
    """Overwrite a freshly initialised model state with OpenAI CLIP and HF BERT weights.

    Keys with no pretrained source (cross-attention, projections, heads, visn_fc) keep the
    model's random init and are listed under `filled`. A pretrained tensor whose shape does not
    fit (other than the position embedding, which is resized) is an error naming the key.
    """
    report = ConversionReport()
    bert = {_bert_name(k): v for k, v in bert_state.items()}
    clip = dict(clip_state)
    source_of = clip_bert_init_map(model_state, text_layers)
    out = {k: v.clone() for k, v in model_state.items()}
    used: set[str] = set()
    for key, ref in model_state.items():
        src = source_of(key)
        pool, name = (clip, src[5:]) if src and src.startswith("clip:") else (bert, src[5:] if src else "")
        if not src or name not in pool:
            if _online_key(key) is None:
                report.fill("random init (no CLIP/BERT source)", key)
            continue
        tensor = pool[name]
        used.add(src)
        if key.endswith(POS_EMBED_SUFFIX) and tensor.shape != ref.shape and tensor.dim() == 2:
            old = tuple(tensor.shape)
            tensor = resize_pos_embed(tensor, ref.shape[0])
            report.resized.append((key, old, tuple(tensor.shape)))
        if tuple(tensor.shape) != tuple(ref.shape):
            report.mismatched.append((f"{key} (from {src})", tuple(tensor.shape), tuple(ref.shape)))
            continue
        out[key] = tensor.to(ref.dtype).clone()
        report.kept += 1
    for key in model_state:
        online = _online_key(key)
        if online is not None and online in out:
            out[key] = out[online].clone()
            report.fill("momentum copy of the online weights (official copy_params)", key)
    for name in clip:
        if f"clip:{name}" not in used:
            report.drop("CLIP weights not used (text tower, proj, logit_scale)", name)
    for name in bert:
        if f"bert:{name}" not in used:
            report.drop("BERT weights not used (pooler, NSP head, position_ids, ...)", name)
    report.raise_if_bad("CLIP/BERT init")
    return out, report


# ----------------------------------------------------------------------------- file-level API
CONVERT_TASKS = ("pretrain", "vqa", "caption", "retrieval", "grounding")


def _target_state(model_name: str, task: str, image_res: int | None, meta: bool) -> dict:
    """Our model's state dict for (config, task): on the meta device unless weights are needed."""
    import torch

    from mplug.models.registry import get_config
    from mplug.models.tasks import build_model

    overrides = {"image_res": image_res} if image_res else {}
    cfg = get_config(model_name, **overrides)
    if meta:
        with torch.device("meta"):
            return build_model(cfg, task).state_dict()
    return build_model(cfg, task).state_dict()


def _metadata(model_name: str, task: str, image_res: int | None, source: str) -> dict[str, str]:
    return {"format": "mplug-repro", "model": model_name, "task": task,
            "image_res": str(image_res or ""), "source": source}


def convert_checkpoint(in_path, out_path, model_name: str, task: str = "vqa",
                       image_res: int | None = None) -> ConversionReport:
    """Read an official checkpoint, convert it for (model_name, task), write safetensors."""
    from pathlib import Path

    from mplug.models.loading import load_state_dict_safe, save_state_dict

    if task not in CONVERT_TASKS:
        raise CheckpointError(f"--task {task!r}: use one of {', '.join(CONVERT_TASKS)}")
    state = load_state_dict_safe(in_path)
    target = _target_state(model_name, task, image_res, meta=True)
    out, report = convert_official(state, target, task=task, source=str(in_path))
    save_state_dict(out, out_path, _metadata(model_name, task, image_res, Path(in_path).name))
    return report


def _load_bert(path) -> dict:
    """HF bert-base-uncased: a directory (model.safetensors / pytorch_model.bin) or a file."""
    from pathlib import Path

    from mplug.models.loading import load_state_dict_safe

    path = Path(path)
    if path.is_dir():
        for name in ("model.safetensors", "pytorch_model.bin"):
            if (path / name).is_file():
                return load_state_dict_safe(path / name)
        raise CheckpointError(f"{path}: no model.safetensors or pytorch_model.bin in the BERT folder")
    return load_state_dict_safe(path)


def init_checkpoint(clip_path, bert_path, out_path, model_name: str, task: str = "pretrain",
                    image_res: int | None = None, seed: int = 0) -> ConversionReport:
    """Build the initial model (CLIP vision + BERT text/fusion/decoder), write safetensors."""
    import torch

    from mplug.models.loading import load_state_dict_safe, save_state_dict
    from mplug.models.registry import get_config

    torch.manual_seed(seed)  # the random parts (cross-attention, heads) are reproducible
    clip = load_state_dict_safe(clip_path)
    bert = _load_bert(bert_path)
    cfg = get_config(model_name, **({"image_res": image_res} if image_res else {}))
    model_state = _target_state(model_name, task, image_res, meta=False)
    out, report = init_from_clip_bert(model_state, clip, bert, text_layers=cfg.text_layers)
    save_state_dict(out, out_path, _metadata(model_name, task, image_res, "clip+bert"))
    return report
