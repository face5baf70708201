"""Disk a run needs, for `mplug plan`: its downloads and each training job's outputs.

- Downloads (resources/<source>/): measured (`du`) where the source is already downloaded
  (download.json present), else documented: the sum of the sizes mplug.data.sources records
  (FileSpec.size, third-party figures), an extracted archive once more (archives are kept beside
  their contents; a JPEG archive barely compresses, so its contents weigh about the archive), and
  for a web-scale source its paper image count x WEBSCALE_BYTES_PER_SAMPLE. Files without a
  documented size are counted, not guessed. The preprocessed data (data/<run>/) is JSONL pointing
  at those images: small beside them, and left out.
- A training job: `keep_checkpoints` resumable DeepSpeed checkpoints (checkpoint_bytes) plus its
  fp32 weights (model.safetensors; with keep-best evaluation also model_best / model_last).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

# img2dataset's dataset_examples/laion400m.md: 400M samples at --image_size 256 -> "10TB" of
# webdataset shards, i.e. ~25 kB per sample (JPEG quality 95 + caption + json); our web-scale
# downloads run img2dataset at image_size 256 (mplug.data.sources.WebscaleSpec)
WEBSCALE_BYTES_PER_SAMPLE = 25_000
KEEP_CHECKPOINTS = 2  # mplug.train.loop.LoopConfig.keep_checkpoints


def checkpoint_bytes(model: nn.Module, precision: str, zero_stage: int) -> int:
    """Bytes of one DeepSpeed checkpoint tag of `model` (summed over ranks), as DeepSpeed 0.x
    writes it: the module's floating state in the training precision (none under ZeRO-3, whose
    parameters live in the optimizer partitions) + per trained parameter the Adam moments (8 B)
    and, except plain fp32 without ZeRO, an fp32 master copy (4 B). Checked against real
    checkpoints in tests/train/test_checkpoint_size.py."""
    floats = sum(v.numel() for v in model.state_dict().values() if v.is_floating_point())
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    module = 0 if zero_stage == 3 else floats * (4 if precision == "fp32" else 2)
    per_trained = 8 if (zero_stage == 0 and precision == "fp32") else 12
    return module + trained * per_trained


def weights_bytes(model: nn.Module) -> int:
    """model.safetensors: every tensor of the state dict as exported (floats in fp32)."""
    return sum(v.numel() * (4 if v.is_floating_point() else v.element_size())
               for v in model.state_dict().values())


def job_model_config(cfg: dict, model_key: str, rule: str, job: dict):
    """(MPLUGConfig, model task) of a training job as its model runs it: the model entry's
    stride/schedule and the job's resolution (the plan's FLOP count and disk both read it)."""
    from mplug.models.registry import get_config
    from mplug.task_registry import get_task

    t, entry = job["train"], cfg["models"][model_key]
    over = {k: entry[k] for k in ("stride", "schedule") if entry.get(k) is not None}
    if t.get("image_res"):
        over["vision.image_res"] = t["image_res"]
    task = get_task("pretrain" if rule == "pretrain" else job["task"]).model_task
    return get_config(entry["arch"], **over), task


def meta_task_model(cfg: dict, model_key: str, rule: str, job: dict) -> nn.Module:
    """The job's task model, built on the meta device (no memory, seconds): its parameters,
    frozen parts and momentum copies are those training builds."""
    from mplug.models import build_model

    model_cfg, task = job_model_config(cfg, model_key, rule, job)
    with torch.device("meta"):
        return build_model(model_cfg, task)


def training_disk(model: nn.Module, train: dict) -> dict:
    """A training job's outputs: checkpoints kept at once + its weight files."""
    tag = checkpoint_bytes(model, train.get("precision", "bf16"), int(train.get("zero_stage", 2)))
    keep = KEEP_CHECKPOINTS if train.get("save_every") else 1  # 1: the preemption checkpoint
    copies = 3 if train.get("eval_every") else 1  # model, model_best, model_last
    return {"checkpoint_bytes": tag, "checkpoints_kept": keep,
            "weights_bytes": weights_bytes(model) * copies,
            "disk_bytes": tag * keep + weights_bytes(model) * copies}


def du(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def source_disk(name: str, resources_dir: Path) -> dict:
    """One source's bytes under resources/: measured when downloaded, else documented."""
    from mplug.data.sources import get_source

    folder = resources_dir / name
    if (folder / "download.json").is_file():
        return {"source": name, "bytes": du(folder), "basis": "measured", "undocumented_files": 0}
    src = get_source(name)
    files = [f for f in src.files if not f.optional]
    documented = sum(f.size * (2 if f.extract else 1) for f in files if f.size)
    missing = sum(f.size is None for f in files) + len(src.manual)
    basis = "documented"
    if src.webscale is not None:
        documented += src.paper_counts.get("images", 0) * WEBSCALE_BYTES_PER_SAMPLE
        basis = f"documented + images x {WEBSCALE_BYTES_PER_SAMPLE // 1000} kB (img2dataset, 256 px)"
    return {"source": name, "bytes": documented, "basis": basis, "undocumented_files": missing}


def weight_sources(cfg: dict) -> list[str]:
    """Sources of weights and vocabulary the run reads: the tokenizer, and the pretraining init
    (CLIP + BERT, a model's first stage) or the official checkpoints, as
    workflow/rules/common.smk asks for them (resource_inputs)."""
    from mplug import config as mcfg

    paths = [cfg["tokenizer"]] if cfg.get("tokenizer") else []
    models = mcfg.enabled_models(cfg)
    if cfg["pretrained"]["source"] == "official":
        official = cfg["pretrained"].get("official") or {}
        paths += [official[m][s] for m, e in models.items() for s in e.get("pretrain", [])
                  if s in official.get(m, {})]
    else:
        paths += [p for key, e in models.items() if e.get("pretrain")
                  for p in (mcfg.scratch_init(cfg, key) or {}).values()]
    return sorted({s for s in (mcfg.resource_source(cfg, p) for p in paths) if s})


def run_sources(cfg: dict) -> list[str]:
    """Every source a real-data run downloads: its datasets' `downloads` + weight_sources."""
    names = {n for d in cfg["data"]["datasets"].values() for n in d.get("downloads") or ()}
    return sorted(names | set(weight_sources(cfg)))


def download_disk(cfg: dict, root: Path = Path(".")) -> list[dict]:
    resources = root / cfg["data"]["resources_dir"]
    return [source_disk(name, resources) for name in run_sources(cfg)]
