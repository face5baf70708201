"""The YAML train section (resolved by `mplug.config.train_settings`) -> typed settings.

Keys read (config/README.md explains each): epochs, max_steps, batch_size (GLOBAL), lr_text
(official lr1), lr_vision (lr2, the ViT), min_lr, warmup_lr, warmup_steps, weight_decay,
optimizer (adamw), scheduler (cosine|linear|constant), grad_clip, precision (bf16|fp16|fp32),
zero_stage, grad_checkpointing, image_res, max_text_len, num_workers, log_every, save_every,
objectives, queue_size, momentum, temp, embed_dim, alpha, distill, mlm_prob, rand_augment,
hflip, prompt, scst{reward,baseline,beam_size,min_length,max_length}, grounding{bins,
loss_weighting}. Read but not acted on (logged): batch_size_eval and eval_every (evaluation is
`mplug evaluate`), crop_scale (the data transforms fix the official 0.2/0.5 scales),
add_ocr/add_object (need OCR/object fields the loaders do not read), num_frames (no video training).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from mplug.errors import ConfigError
from mplug.train.deepspeed_config import EngineConfig
from mplug.train.loop import LoopConfig
from mplug.train.optim import OptimConfig

KNOWN_KEYS = {
    "epochs", "max_steps", "batch_size", "batch_size_eval", "lr_text", "lr_vision", "min_lr",
    "warmup_lr", "warmup_steps", "weight_decay", "optimizer", "scheduler", "grad_clip",
    "precision", "zero_stage", "grad_checkpointing", "image_res", "max_text_len", "num_workers",
    "log_every", "save_every", "eval_every", "objectives", "queue_size", "momentum", "temp",
    "embed_dim", "alpha", "distill", "mlm_prob", "crop_scale", "rand_augment", "hflip", "add_ocr",
    "add_object", "prompt", "scst", "grounding", "num_frames", "grad_accum", "offload_optimizer",
}
NOT_ACTED_ON = ("batch_size_eval", "eval_every", "crop_scale", "add_ocr", "add_object", "num_frames")
REQUIRED = ("epochs", "batch_size", "lr_text", "lr_vision", "image_res")


@dataclass
class TrainSettings:
    """Everything a stage's training reads, split by consumer."""

    loop: LoopConfig
    optim: OptimConfig
    engine: EngineConfig
    model_overrides: dict[str, Any] = field(default_factory=dict)  # build_model(**overrides)
    data_opts: dict[str, Any] = field(default_factory=dict)  # build_dataset(**opts)
    max_text_len: int | None = None
    alpha: float = 0.4
    objectives: tuple[str, ...] = ()
    scst: dict[str, Any] | None = None
    grounding: dict[str, Any] = field(default_factory=dict)
    ignored: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)


def parse_train_settings(d: Mapping[str, Any], seed: int, where: str = "train") -> TrainSettings:
    """Validate and split the resolved train dict. Unknown or missing keys name the key."""
    if not isinstance(d, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {type(d).__name__}")
    unknown = sorted(set(d) - KNOWN_KEYS)
    if unknown:
        raise ConfigError(f"unknown key {where}.{unknown[0]}; known keys: {', '.join(sorted(KNOWN_KEYS))}")
    missing = [k for k in REQUIRED if d.get(k) is None]
    if missing:
        raise ConfigError(f"{where}.{missing[0]} is required")
    if d.get("optimizer", "adamw") != "adamw":
        raise ConfigError(f"{where}.optimizer={d['optimizer']!r}: only adamw is implemented (official)")
    loop = LoopConfig(
        epochs=_int(d, "epochs", where), batch_size=_int(d, "batch_size", where),
        max_steps=d.get("max_steps"), seed=int(seed), log_every=int(d.get("log_every", 50)),
        save_every=int(d.get("save_every", 0)), num_workers=int(d.get("num_workers", 0)))
    if loop.max_steps is not None:
        _int(d, "max_steps", where)
    optim = OptimConfig(
        lr=float(d["lr_text"]), lr_vit=float(d["lr_vision"]),
        weight_decay=float(d.get("weight_decay", 0.02)), warmup_lr=float(d.get("warmup_lr", 1e-6)),
        min_lr=float(d.get("min_lr", 1e-6)), warmup_steps=int(d.get("warmup_steps", 0)),
        schedule=d.get("scheduler", "cosine")).validate(where)
    clip = d.get("grad_clip", 1.0)
    engine = EngineConfig.from_dict({
        "zero_stage": d.get("zero_stage", 2), "precision": d.get("precision", "bf16"),
        "grad_clip": 0.0 if clip is None else float(clip), "grad_accum": int(d.get("grad_accum", 1)),
        "offload_optimizer": bool(d.get("offload_optimizer", False))}, where)
    model_over: dict[str, Any] = {"image_res": _int(d, "image_res", where)}
    for key, target in (("queue_size", "queue_size"), ("momentum", "momentum"), ("temp", "temp"),
                        ("embed_dim", "embed_dim"), ("alpha", "alpha"), ("distill", "distill"),
                        ("mlm_prob", "mlm_probability"), ("grad_checkpointing", "grad_checkpointing")):
        if d.get(key) is not None:
            model_over[target] = d[key]
    grounding = dict(d.get("grounding") or {})
    if "bins" in grounding:
        model_over["grounding_bins"] = int(grounding["bins"])
    if grounding.get("loss_weighting", "official") != "official":
        raise ConfigError(f"{where}.grounding.loss_weighting={grounding['loss_weighting']!r}: only "
                          "'official' (CE x L1 x (1-GIoU)) is implemented by the grounding model")
    data_opts: dict[str, Any] = {"flip": bool(d.get("hflip", True)),
                                 "randaugment": d.get("rand_augment", {"n": 2, "m": 7}) is not None}
    if "prompt" in d:
        data_opts["prompt"] = d["prompt"]
    return TrainSettings(
        loop=loop, optim=optim, engine=engine, model_overrides=model_over, data_opts=data_opts,
        max_text_len=d.get("max_text_len"), alpha=float(d.get("alpha", 0.4)),
        objectives=tuple(d.get("objectives") or ()), scst=dict(d["scst"]) if d.get("scst") else None,
        grounding=grounding, ignored={k: d[k] for k in NOT_ACTED_ON if k in d}, raw=dict(d))


def _int(d: Mapping[str, Any], key: str, where: str) -> int:
    value = d.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{where}.{key}={value!r}: must be an integer >= 1")
    return value
