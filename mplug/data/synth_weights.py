"""Weight files of the download sources, in their official formats, at a run's model sizes.

On the synthetic world (`data.source: synth`: CI, the miniature) nothing can be downloaded, yet the
paper's run starts from files: CLIP-ViT (`clip_vit_b16`, `clip_vit_l14`), BERT-base
(`bert_base_uncased`, also the tokenizer) and the released mPLUG checkpoints (`mplug_base`,
`mplug_large`, `mplug_large_v2`). `write_source` writes one source's files where `mplug data
download` would (`resources/<source>/<file>`, then `download.json` last), with random weights
shaped for the config's architectures, in the formats the real files have:

- CLIP: a `torch.save`d OpenAI state dict (`visual.*` plus the text tower the loaders drop);
- BERT: what `transformers` itself writes for `BertForPreTraining` (model.safetensors,
  config.json), the synthetic world's vocab.txt and a tokenizer_config.json;
- mPLUG: the official `{"model": state_dict}` layout (visual_encoder.visual.*, text_encoder.bert.*,
  the pre-training head under text_encoder.cls, 12 built fusion layers of which the first 6 never
  run, the CLIP text tower inside visual_encoder) - the names of tests/models/fixtures/official-keys/.

    mplug data synth-weights clip_vit_b16 --config config/miniature.yaml --dest resources/
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mplug.errors import ConfigError

CLIP_SOURCES = ("clip_vit_b16", "clip_vit_l14")
BERT_SOURCES = ("bert_base_uncased",)
MPLUG_SOURCES = ("mplug_base", "mplug_large", "mplug_large_v2")
WEIGHT_SOURCES = CLIP_SOURCES + BERT_SOURCES + MPLUG_SOURCES
DEAD_FUSION_LAYERS = 6  # official: 12 fusion layers built, layers 0..5 never run


def _in_source(cfg: dict, path: str, source: str) -> bool:
    rel = os.path.relpath(path, cfg["data"]["resources_dir"])
    return rel.split(os.sep, 1)[0] == source


def _archs_of(cfg: dict, source: str) -> list[tuple[str, str]]:
    """[(architecture, file path)] of the config that read a file of `source`."""
    from mplug.config import enabled_models

    init = cfg["pretrained"].get("init")
    out: list[tuple[str, str]] = []
    if source in CLIP_SOURCES and isinstance(init, dict):
        out = [(a, p) for a, p in init.get("clip", {}).items() if _in_source(cfg, p, source)]
    elif source in BERT_SOURCES:
        archs = sorted({m["arch"] for m in enabled_models(cfg).values()})
        out = [(a, os.path.join(cfg["data"]["resources_dir"], source)) for a in archs]
    elif source in MPLUG_SOURCES:
        models = enabled_models(cfg)
        for key, stages in (cfg["pretrained"].get("official") or {}).items():
            if key in models:
                out += [(models[key]["arch"], p) for p in stages.values() if _in_source(cfg, p, source)]
    if not out:
        raise ConfigError(f"no file of the run config is in {source}/: nothing to write "
                          f"(weight sources: {', '.join(WEIGHT_SOURCES)})")
    return sorted(set(out))


def write_source(cfg: dict, source: str, dest: str | os.PathLike, vocab: str | os.PathLike,
                 seed: int = 0) -> dict:
    """Write `dest/<source>/...` and its download.json; return the manifest."""
    import torch

    from mplug.utils.io import atomic_write_json

    if source not in WEIGHT_SOURCES:
        raise ConfigError(f"synth-weights {source!r}: use one of {', '.join(WEIGHT_SOURCES)}")
    pairs = _archs_of(cfg, source)
    root = Path(dest) / source
    root.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    if source in CLIP_SOURCES:
        files = [_write_clip(arch, root / Path(p).name) for arch, p in pairs]
    elif source in BERT_SOURCES:
        files = _write_bert([a for a, _ in pairs], root, Path(vocab))
    else:
        files = [_write_official(arch, root / Path(p).name) for arch, p in pairs]
    manifest = {"dataset": source, "kind": "synthetic-weights", "synthetic": True,
                "archs": sorted({a for a, _ in pairs}), "seed": seed,
                "files": [{"name": f.name, "bytes": f.stat().st_size} for f in files]}
    atomic_write_json(root / "download.json", manifest)
    return manifest


def _save_torch(obj: Any, path: Path) -> Path:
    import torch

    from mplug.utils.io import atomic_path

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return path


def _write_clip(arch: str, path: Path) -> Path:
    """OpenAI CLIP state dict: the ViT as `visual.*` (+ `visual.proj`) and a small text tower."""
    import torch

    from mplug.models.registry import get_config
    from mplug.models.vision import VisionTransformer

    vcfg = get_config(arch).vision
    state = {f"visual.{k}": v for k, v in VisionTransformer(vcfg).state_dict().items()}
    width = vcfg.width
    state.update({"visual.proj": torch.randn(width, 16) * width ** -0.5,
                  "positional_embedding": torch.randn(77, 16) * 0.01,
                  "token_embedding.weight": torch.randn(64, 16) * 0.02,
                  "ln_final.weight": torch.ones(16), "ln_final.bias": torch.zeros(16),
                  "text_projection": torch.randn(16, 16) * 0.25, "logit_scale": torch.tensor(4.6052)})
    return _save_torch(state, path)


def _write_bert(archs: list[str], root: Path, vocab: Path) -> list[Path]:
    """HF BertForPreTraining, written by transformers: enough layers for every architecture's text
    encoder + fusion layers (the official init) and decoder."""
    from transformers import BertConfig, BertForPreTraining

    from mplug.models.registry import get_config
    from mplug.utils.io import atomic_write_text

    cfgs = [get_config(a) for a in archs]
    text = cfgs[0].text
    if any(c.text != text for c in cfgs):
        raise ConfigError(f"architectures {', '.join(archs)} have different text sizes: one BERT "
                          "folder cannot initialise them all")
    if not vocab.is_file():
        raise ConfigError(f"{vocab}: no vocabulary to write into {root}/vocab.txt; run `mplug data synth`")
    words = vocab.read_text(encoding="utf-8")
    layers = max(max(c.text_layers + c.fusion_layers, c.decoder_layers) for c in cfgs)
    hf = BertConfig(vocab_size=max(text.vocab_size, len(words.splitlines())), hidden_size=text.hidden,
                    num_hidden_layers=layers, num_attention_heads=text.heads,
                    intermediate_size=text.intermediate, max_position_embeddings=text.max_position)
    BertForPreTraining(hf).save_pretrained(root, safe_serialization=True)
    atomic_write_text(root / "vocab.txt", words)
    atomic_write_text(root / "tokenizer_config.json",
                      json.dumps({"do_lower_case": True, "model_max_length": text.max_position}) + "\n")
    return [root / n for n in ("model.safetensors", "config.json", "vocab.txt", "tokenizer_config.json")]


def official_layout(state: dict) -> dict:
    """Our pre-training state dict -> the official mPLUG names (inverse of convert.py's renames)."""
    import torch

    from mplug.models.convert import _split_top

    out: dict[str, Any] = {}
    for key, value in state.items():
        base, mom, rest = _split_top(key)
        top = f"{base}{mom}"
        if base == "visual_encoder":
            out[f"{top}.visual.{rest}"] = value
        elif base == "text_encoder":
            out[f"{top}.bert.{rest}"] = value
        elif base == "mlm_head":
            out[f"text_encoder{mom}.cls.{rest}"] = value
        elif base == "fusion_encoder" and rest.startswith("encoder.layer."):
            idx, tail = rest[len("encoder.layer."):].split(".", 1)
            out[f"{top}.fusion.encoder.layer.{int(idx) + DEAD_FUSION_LAYERS}.{tail}"] = value
            if int(idx) < DEAD_FUSION_LAYERS:  # built but never run (start_layer)
                out[f"{top}.fusion.encoder.layer.{idx}.{tail}"] = torch.randn_like(value)
        elif base == "fusion_encoder":
            out[f"{top}.fusion.{rest}"] = value
        else:
            out[key] = value
    vis = next(v for k, v in state.items() if k.endswith("visual_encoder.class_embedding"))
    out["visual_encoder.visual.proj"] = torch.randn(vis.shape[0], 16)
    out["visual_encoder.token_embedding.weight"] = torch.randn(64, 16)
    return out


def _write_official(arch: str, path: Path) -> Path:
    from mplug.models.tasks import build_model

    state = build_model(arch, "pretrain").state_dict()
    return _save_torch({"model": official_layout(state)}, path)
