"""The YAML train section (resolved by `mplug.config.train_settings`) -> typed settings.

Keys read (config/README.md explains each): epochs, max_steps, batch_size (GLOBAL), lr_text
(official lr1), lr_vision (lr2, the ViT), min_lr, warmup_lr, warmup_steps, warmup_epochs
(albef_epoch), weight_decay, optimizer (adamw), scheduler (cosine|linear|constant|albef_epoch),
grad_clip, precision (bf16|fp16|fp32|amp_bf16),
zero_stage, grad_checkpointing, image_res, max_text_len, num_workers, log_every, save_every,
objectives, queue_size, momentum, temp, embed_dim, alpha, distill, mlm_prob, rand_augment,
hflip, prompt, scst{reward,baseline,beam_size,min_length,max_length,length_penalty,grad_path,
use_cache}, grounding{bins,loss_weighting}, train_splits (VQA), eval_every + batch_size_eval
(keep-best evaluation; captioning only, other tasks log that it is not acted on), compile
(true|false|auto: torch.compile of the model; auto = CUDA only; default false), adamw_impl
(auto|foreach|for_loop|fused; mplug.train.optim.ADAMW_IMPLS). Read but not
acted on (logged): crop_scale (the data transforms fix the official 0.2/0.5 scales),
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
    "warmup_epochs", "train_splits", "compile", "adamw_impl",
}
NOT_ACTED_ON = ("crop_scale", "add_ocr", "add_object", "num_frames")
VQA_SPLITS = ("train", "val", "vg_qa")
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
    train_splits: tuple[str, ...] | None = None  # VQA: of VQA_SPLITS; None = the recipe default
    batch_size_eval: int = 64
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
        save_every=int(d.get("save_every", 0)), num_workers=int(d.get("num_workers", 0)),
        eval_every=int(d.get("eval_every") or 0))
    if loop.max_steps is not None:
        _int(d, "max_steps", where)
    optim = OptimConfig(
        lr=float(d["lr_text"]), lr_vit=float(d["lr_vision"]),
        weight_decay=float(d.get("weight_decay", 0.02)), warmup_lr=float(d.get("warmup_lr", 1e-6)),
        min_lr=float(d.get("min_lr", 1e-6)), warmup_steps=int(d.get("warmup_steps", 0)),
        warmup_epochs=d.get("warmup_epochs", 0), schedule=d.get("scheduler", "cosine"),
        adamw_impl=d.get("adamw_impl", "auto")).validate(where)
    clip = d.get("grad_clip", 1.0)
    engine = EngineConfig.from_dict({
        "zero_stage": d.get("zero_stage", 2), "precision": d.get("precision", "bf16"),
        "grad_clip": 0.0 if clip is None else float(clip), "grad_accum": int(d.get("grad_accum", 1)),
        "offload_optimizer": bool(d.get("offload_optimizer", False)),
        "compile": _compile_mode(d.get("compile", "off"))}, where)
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
        objectives=tuple(d.get("objectives") or ()), scst=_scst(d, where),
        train_splits=_train_splits(d, where), batch_size_eval=int(d.get("batch_size_eval", 64)),
        grounding=grounding, ignored={k: d[k] for k in NOT_ACTED_ON if k in d}, raw=dict(d))


def _compile_mode(value: Any) -> Any:
    """YAML 1.1 reads a bare `compile: on` / `off` as a boolean: take either spelling."""
    return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value


def _int(d: Mapping[str, Any], key: str, where: str) -> int:
    value = d.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{where}.{key}={value!r}: must be an integer >= 1")
    return value


def _scst(d: Mapping[str, Any], where: str) -> dict[str, Any] | None:
    from mplug.train.scst import ScstConfig

    if not d.get("scst"):
        return None
    ScstConfig.from_dict(d["scst"], f"{where}.scst")  # validate now, before the engine is built
    return dict(d["scst"])


def _train_splits(d: Mapping[str, Any], where: str) -> tuple[str, ...] | None:
    value = d.get("train_splits")
    if value is None:
        return None
    if (not isinstance(value, (list, tuple)) or not value
            or any(v not in VQA_SPLITS for v in value) or len(set(value)) != len(value)):
        raise ConfigError(f"{where}.train_splits={value!r}: a non-empty list of distinct splits "
                          f"from {', '.join(VQA_SPLITS)}")
    return tuple(value)
