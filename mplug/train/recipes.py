"""Per-task training recipes: which model, which data, which step (the model head, dataset and
step kind of each task are its `mplug.task_registry.TaskSpec`: `model_task`, `dataset`, `train_step`).

| CLI task | model task | data (folders from the stage's `datasets`, else the default) | step |
|---|---|---|---|
| pretrain | pretrain | pretrain_14m / pretrain_4m, split train | ITC+ITM+MLM+PrefixLM, alpha ramp |
| vqa | vqa | vqa: train (+ vg_qa, weight 0.5) | weighted answer CE |
| caption | caption | coco_caption train (image, caption) pairs | CE; SCST when `scst` is set |
| retrieval_coco / _flickr | retrieval | coco_retrieval / flickr_retrieval train | ITC+ITM, alpha ramp |
| grounding | grounding | refcoco, refcoco+, refcocog (mixed) or one of them | coordinate-token loss |
| nlvr2 | nlvr2 | nlvr2 train | 2-way CE |
| snli_ve | snli_ve | snli_ve train | 3-way CE |

Alpha ramp (ALBEF/mPLUG pretraining and retrieval): in epoch 0 the distillation weight grows
linearly, `alpha * min(1, i / len(loader))`; later epochs use `alpha`.

VQA training data: the official scripts train on train + nominival + VG-QA + minival. Our data
folders hold train (train + nominival), val (minival) and vg_qa; `train.train_splits` picks them
(config/config.yaml: [train, val, vg_qa] as official). The default without the key,
VQA_TRAIN_SPLITS = (train, vg_qa), leaves val out because the smoke run evaluates on it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from mplug.errors import CheckpointError, ConfigError, DataError
from mplug.train.loop import StepContext
from mplug.train.settings import TrainSettings
from mplug.utils.logging import get_logger

log = get_logger("mplug.train.recipes")

PRETRAIN_STAGES = ("pretrain_14m", "pretrain_4m")
OBJECTIVES = {"pretrain": {"itc", "itm", "mlm", "prefix_lm"}, "retrieval": {"itc", "itm"}}
VQA_TRAIN_SPLITS = ("train", "vg_qa")


# ----------------------------------------------------------------------------- steps
def alpha_at(alpha: float, ctx: StepContext) -> float:
    """ALBEF's distillation warm-up over the first epoch."""
    if ctx.epoch > 0:
        return alpha
    return alpha * min(1.0, ctx.micro_in_epoch / max(1, ctx.micro_per_epoch))


def contrastive_step(alpha: float):
    def step(engine, batch, ctx):
        return engine(batch, alpha=alpha_at(alpha, ctx))
    return step


def plain_step(engine, batch, ctx):
    return engine(batch)


def scst_step(tokenizer, reward, scst: dict[str, Any]):
    """Self-critical sequence training step (official caption_mplug_scst.py): see
    mplug/train/scst.py (`grad_path: beam` backpropagates through beam search, as official)."""
    from mplug.train.scst import scst_step as _scst_step

    return _scst_step(tokenizer, reward, scst)


# ----------------------------------------------------------------------------- data
def dataset_folders(task: str, data_dir: Path, names: list[str], stage: str | None) -> list[str | None]:
    """The folders to train on: the stage's `datasets` that exist under `data_dir`; when none of
    them does (real-data configs list download sources, e.g. coco/vg/sbu), the task's folder."""
    existing = [n for n in names if (data_dir / n).is_dir()]
    if existing:
        missing = [n for n in names if n not in existing]
        if missing:
            log.warning("datasets %s not found under %s; training on %s", missing, data_dir, existing)
        return existing
    if task == "pretrain" and stage and (data_dir / stage).is_dir():
        return [stage]
    return [None]  # build_dataset's default folder for the task (it errors clearly if absent)


def train_splits(task: str, settings: TrainSettings) -> list[tuple[str, dict]]:
    """(split, extra build_dataset options) to train on. VQA's `vg_qa` rides on `train` through
    the dataset's include_vg (VG answers weigh vg_weight) or is read alone without `train`."""
    if task != "vqa":
        return [("train", {})]
    splits = settings.train_splits or VQA_TRAIN_SPLITS
    with_vg = "vg_qa" in splits
    out = [(s, {"include_vg": with_vg and s == "train"}) for s in splits if s != "vg_qa"]
    if with_vg and "train" not in splits:
        out.append(("vg_qa", {"include_vg": False}))
    return out


def build_train_data(task: str, data_dir: str | Path, names: list[str], settings: TrainSettings,
                     tokenizer: Any, stage: str | None):
    """(dataset, collate_fn, folder names) for training."""
    from torch.utils.data import ConcatDataset

    from mplug.data.collate import Collator
    from mplug.data.datasets import build_dataset

    data_dir = Path(data_dir)
    res = settings.model_overrides["image_res"]
    parts, used = [], []
    for folder in dataset_folders(task, data_dir, names, stage):
        opts = dict(settings.data_opts)
        if folder:
            opts["dataset"] = folder
        for split, extra in train_splits(task, settings):
            parts.append(build_dataset(task, data_dir, split, tokenizer, res, True,
                                       **opts, **extra))
        used.append(folder or "(default)")
    if not parts:
        raise DataError(f"{data_dir}: no training data for {task}")
    dataset = parts[0] if len(parts) == 1 else ConcatDataset(parts)
    collate_kw: dict[str, Any] = {}
    if settings.max_text_len:
        collate_kw["max_text_len"] = settings.max_text_len
        if task in ("caption",):
            collate_kw["max_target_len"] = settings.max_text_len
    return dataset, Collator(task, tokenizer, **collate_kw), used


def caption_references(dataset) -> dict:
    """image_id -> all reference captions, from the (concatenated) caption datasets."""
    from torch.utils.data import ConcatDataset

    parts = dataset.datasets if isinstance(dataset, ConcatDataset) else [dataset]
    refs: dict = {}
    for part in parts:
        for rec in part.records:
            refs[rec["image_id"]] = list(rec["captions"])
    return refs


# ----------------------------------------------------------------------------- model
def model_overrides(settings: TrainSettings, model_settings: dict, tokenizer: Any, arch: str) -> dict:
    """build_model overrides: the train section's, the model entry's stride/schedule, and the
    vocabulary rule shared with evaluation (`mplug.data.tokenizer.vocab_overrides`)."""
    from mplug.data.tokenizer import vocab_overrides

    over = dict(settings.model_overrides)
    for key in ("stride", "schedule"):
        if model_settings.get(key) is not None:
            over[key] = model_settings[key]
    over.update(vocab_overrides(tokenizer, arch))
    return over


def check_objectives(model_task: str, settings: TrainSettings, where: str) -> None:
    want = OBJECTIVES.get(model_task)
    if want is None or not settings.objectives:
        return
    if set(settings.objectives) != want:
        raise ConfigError(f"{where}.objectives={list(settings.objectives)}: the {model_task} model "
                          f"optimises {sorted(want)} jointly; a subset is not implemented")


BACKBONE = ("visual_encoder", "text_encoder", "fusion_encoder")


def load_init(model, path: str | Path, allow_partial: bool = False) -> dict[str, Any]:
    """Load a starting checkpoint (safetensors or torch, weights_only) into a task model.

    Kept: every key whose name and shape match. Resized: the ViT position embedding when the
    resolution differs (bilinear, as the official loaders). Fresh: task heads the checkpoint does
    not have, queues of another size; momentum copies missing from the checkpoint are copied
    from the loaded online weights (official copy_params). Any other shape mismatch is an error.
    The backbone (BACKBONE, less NLVR2's second cross-attention, which starts as the first) must
    be covered entirely unless `allow_partial`: a checkpoint matching a few tensors would
    otherwise train from scratch while the run reports an init.
    """
    import torch

    from mplug.models.convert import fit_pos_embeds
    from mplug.models.loading import compare_state, load_state_dict_safe

    state = load_state_dict_safe(path)
    target = model.state_dict()
    resized = fit_pos_embeds(state, target)
    report = compare_state(target, state)
    fresh = []
    for key, _, shape in report.mismatched:
        if key.split(".")[-1] in ("image_queue", "text_queue", "idx_queue"):
            del state[key]
            fresh.append(key)
        else:
            raise CheckpointError(f"{path}: {key} has shape {tuple(state[key].shape)} but the model "
                                  f"needs {tuple(shape)}; was it trained with another model config?")
    usable = {k: v for k, v in state.items() if k in target}
    missing = [k for k in target if k not in usable]
    backbone = _backbone_coverage(target, usable)
    missing_bb = [k for k in missing if k.split(".")[0] in BACKBONE and ".crossattention2." not in k]
    if missing_bb and usable and not allow_partial:
        raise CheckpointError(
            f"{path}: covers only part of the model's backbone ("
            + ", ".join(f"{m} {a}/{b}" for m, (a, b) in backbone.items())
            + f" tensors matched); missing e.g. {', '.join(missing_bb[:3])}. Is it a checkpoint of "
            "this model? Pass --allow-partial-init to train from it anyway")
    model.load_state_dict(usable, strict=False)
    momentum_missing = [k for k in missing if k.split(".")[0].endswith("_m")]
    if momentum_missing and hasattr(model, "copy_params"):
        model.copy_params()
    if hasattr(model, "init_crossattention2") and any(".crossattention2." in k for k in missing):
        model.init_crossattention2()  # NLVR2: second cross-attention starts as the first (BLIP)
    online_missing = [k for k in missing if not k.split(".")[0].endswith("_m")]
    if len(usable) == 0:
        raise CheckpointError(f"{path}: no key matches the model; is it an mPLUG checkpoint?")
    info = {"path": str(path), "loaded": len(usable), "unused": len(report.unexpected),
            "fresh": sorted(set(online_missing + fresh)), "resized": resized,
            "momentum_copied": len(momentum_missing),
            "backbone": {m: f"{a}/{b}" for m, (a, b) in backbone.items()}, "partial": bool(missing_bb)}
    log.log(30 if missing_bb else 20,
            "init from %s: %d tensors loaded (backbone %s), %d unused, %d fresh (%s), %d momentum "
            "copied%s", path, info["loaded"], ", ".join(f"{m} {v}" for m, v in info["backbone"].items()),
            info["unused"], len(info["fresh"]), ", ".join(sorted({k.split(".")[0] for k in info["fresh"]})) or "-",
            info["momentum_copied"], f", resized {resized}" if resized else "")
    del torch
    return info


def _backbone_coverage(target: dict, usable: dict) -> dict[str, tuple[int, int]]:
    """module -> (tensors loaded, tensors the model has) for each backbone module."""
    out = {}
    for module in BACKBONE:
        keys = [k for k in target if k.split(".")[0] == module and ".crossattention2." not in k]
        out[module] = (sum(k in usable for k in keys), len(keys))
    return out
