"""Config dataclasses of the mPLUG model.

`MPLUGConfig` holds a `VisionConfig` (CLIP ViT), a `TextConfig` (BERT layer sizes, shared by the
text encoder, the fusion layers and the decoder) and the mPLUG-level choices (layer counts, the
skip-connection stride and schedule, the fusion network, ITC settings, grounding tokens).

Values default to the official `config_bert_stride3.json` / `configs/*.yaml` (base model).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from mplug.errors import ConfigError

SCHEDULES = ("official", "paper")
FUSION_TYPES = ("skip", "connected", "two_stream", "asymmetric")
ATTN_IMPLS = ("sdpa", "eager")

# bert-base-uncased vocab layout: [PAD]=0, [unused0..98]=1..99, [UNK]=100, [CLS]=101, [SEP]=102,
# [MASK]=103, then [unused99..993]=104..998. So [unusedK] = K+1 for K<=98 and K+5 for K>=99.


def bert_unused_id(k: int) -> int:
    """Token id of `[unusedK]` in the bert-base-uncased vocabulary."""
    if not 0 <= k <= 993:
        raise ConfigError(f"[unused{k}] does not exist in the BERT vocabulary (0..993)")
    return k + 1 if k <= 98 else k + 5


@dataclass
class VisionConfig:
    """CLIP ViT (OpenAI layout). `image_res` is the resolution the position embedding is built for."""

    width: int = 768
    layers: int = 12
    heads: int = 12
    patch: int = 16
    image_res: int = 384
    mlp_ratio: float = 4.0
    quick_gelu: bool = True  # OpenAI CLIP weights were trained with QuickGELU
    attn_dropout: float = 0.1  # official CLIP copy: nn.MultiheadAttention(dropout=0.1)
    ln_eps: float = 1e-5

    @property
    def grid(self) -> int:
        return self.image_res // self.patch

    @property
    def n_tokens(self) -> int:
        return 1 + self.grid * self.grid


@dataclass
class TextConfig:
    """BERT layer sizes (bert-base-uncased defaults)."""

    hidden: int = 768
    heads: int = 12
    intermediate: int = 3072
    vocab_size: int = 30522
    max_position: int = 512
    type_vocab: int = 2
    layer_norm_eps: float = 1e-12
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1
    pad_token_id: int = 0
    initializer_range: float = 0.02


@dataclass
class MPLUGConfig:
    """Whole-model config. See `mplug.models.registry` for the named instances."""

    name: str = "custom"
    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)
    text_layers: int = 6
    fusion_layers: int = 6
    decoder_layers: int = 12
    stride: int = 3
    schedule: str = "official"  # 'official' (released code) | 'paper' (Algorithm 1)
    fusion_type: str = "skip"  # 'skip' (mPLUG) | 'connected' | 'two_stream' | 'asymmetric'
    # visn_fc (Linear vision.width -> text.hidden) + LayerNorm + dropout. None = only when the
    # widths differ, which is the official `large` flag (ViT-L/14 1024 -> 768).
    visn_fc: bool | None = None
    embed_dim: int = 256
    queue_size: int = 65536
    momentum: float = 0.995
    temp: float = 0.07
    alpha: float = 0.4
    attn_impl: str = "sdpa"  # 'sdpa' (fused) | 'eager' (explicit softmax, the reference)
    grad_checkpointing: bool = False
    bos_token_id: int = 101  # [CLS]
    eos_token_id: int = 102  # [SEP]
    mask_token_id: int = 103  # [MASK]
    grounding_prefix_id: int = field(default_factory=lambda: bert_unused_id(339))  # 344
    grounding_coord_start: int = field(default_factory=lambda: bert_unused_id(340))  # 345
    grounding_bins: int = 337  # [unused340]..[unused676]

    def __post_init__(self) -> None:
        if isinstance(self.vision, dict):
            self.vision = _from_dict(VisionConfig, self.vision, "vision")
        if isinstance(self.text, dict):
            self.text = _from_dict(TextConfig, self.text, "text")
        self.validate()

    @property
    def use_visn_fc(self) -> bool:
        return self.vision.width != self.text.hidden if self.visn_fc is None else self.visn_fc

    def validate(self) -> None:
        v, t = self.vision, self.text
        checks = [
            (self.stride >= 1, f"stride={self.stride}: must be >= 1"),
            (self.schedule in SCHEDULES, f"schedule={self.schedule!r}: use one of {SCHEDULES}"),
            (self.fusion_type in FUSION_TYPES,
             f"fusion_type={self.fusion_type!r}: use one of {FUSION_TYPES}"),
            (self.attn_impl in ATTN_IMPLS, f"attn_impl={self.attn_impl!r}: use one of {ATTN_IMPLS}"),
            (self.text_layers >= 0, f"text_layers={self.text_layers}: must be >= 0"),
            (self.fusion_layers >= 0, f"fusion_layers={self.fusion_layers}: must be >= 0"),
            (self.decoder_layers >= 1, f"decoder_layers={self.decoder_layers}: must be >= 1"),
            (v.layers >= 1 and v.width >= 1 and v.heads >= 1, "vision sizes must be >= 1"),
            (v.width % v.heads == 0, f"vision.width={v.width} not divisible by heads={v.heads}"),
            # image_res need not be a multiple of the patch: CLIP's strided patch convolution
            # drops the remainder (ViT-B/16 at 504 px: a 31x31 grid, as the official code runs it)
            (v.patch >= 1 and v.image_res >= v.patch,
             f"vision.image_res={v.image_res} is smaller than one patch ({v.patch})"),
            (t.hidden % t.heads == 0, f"text.hidden={t.hidden} not divisible by heads={t.heads}"),
            (t.vocab_size > max(self.bos_token_id, self.eos_token_id, t.pad_token_id),
             f"text.vocab_size={t.vocab_size} is smaller than the special token ids"),
            (self.use_visn_fc or v.width == t.hidden,
             f"visn_fc=False needs vision.width ({v.width}) == text.hidden ({t.hidden})"),
            (self.grounding_bins >= 2, f"grounding_bins={self.grounding_bins}: must be >= 2"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(f"model config {self.name!r}: {msg}")

    # ----------------------------------------------------------------- (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MPLUGConfig":
        """Build from a (possibly partial) dict; an unknown key is a ConfigError naming it."""
        if not isinstance(data, dict):
            raise ConfigError(f"model config must be a mapping, got {type(data).__name__}")
        data = dict(data)
        vision = _from_dict(VisionConfig, data.pop("vision", {}) or {}, "vision")
        text = _from_dict(TextConfig, data.pop("text", {}) or {}, "text")
        top = _from_dict(cls, data, "", build=False)
        return cls(vision=vision, text=text, **top)

    def replace(self, **overrides: Any) -> "MPLUGConfig":
        """A copy with overrides. Keys: a top-level field (`stride`), `vision.X`/`text.X`, or a
        bare vision/text field name when it is unambiguous (`image_res`, `vocab_size`)."""
        d = self.to_dict()
        v_fields = {f.name for f in dataclasses.fields(VisionConfig)}
        t_fields = {f.name for f in dataclasses.fields(TextConfig)}
        top_fields = {f.name for f in dataclasses.fields(MPLUGConfig)} - {"vision", "text"}
        for key, value in overrides.items():
            if "." in key:
                part, sub = key.split(".", 1)
                if part not in ("vision", "text") or sub not in (v_fields if part == "vision" else t_fields):
                    raise ConfigError(f"unknown model config key {key!r}")
                d[part][sub] = value
            elif key in top_fields:
                d[key] = value
            elif key in v_fields and key in t_fields:
                raise ConfigError(f"model config key {key!r} is ambiguous: use vision.{key} or text.{key}")
            elif key in v_fields:
                d["vision"][key] = value
            elif key in t_fields:
                d["text"][key] = value
            else:
                raise ConfigError(
                    f"unknown model config key {key!r}; known: {sorted(top_fields)} and "
                    f"vision.{{{','.join(sorted(v_fields))}}}, text.{{{','.join(sorted(t_fields))}}}")
        return MPLUGConfig.from_dict(d)


def _from_dict(cls, data: dict[str, Any], where: str, build: bool = True):
    if not isinstance(data, dict):
        raise ConfigError(f"model config {where or 'top level'} must be a mapping")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(f"unknown model config key {prefix}{unknown[0]!r}; known keys: {sorted(known)}")
    return cls(**data) if build else dict(data)
