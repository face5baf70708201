"""Entry points behind `mplug train pretrain` and `mplug train finetune`.

`train(kind, task, config, model, stage, data, out, init, resume)` resolves the stage's settings
from the run config (`mplug.config.train_settings`: `train`, then `overrides[arch]`, then `paper`
with `hparams: paper`), builds the task model (+ `--init` weights), the training data and the
recipe's step, and runs `loop.fit` (DeepSpeed). Outputs: see mplug/train/loop.py.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mplug.errors import CheckpointError, ConfigError
from mplug.task_registry import get_task
from mplug.train import recipes
from mplug.train.settings import parse_train_settings
from mplug.utils.logging import get_logger

log = get_logger("mplug.train")


def resolve_stage(cfg: dict, kind: str, task: str, stage: str | None) -> str:
    """The config entry to read: `--stage`, else the entry named like the task, else the only
    fine-tuning job with that task."""
    section = cfg.get(kind) or {}
    if stage:
        if stage not in section:
            raise ConfigError(f"--stage {stage}: not in the config's {kind} section "
                              f"(defined: {', '.join(section) or 'none'})")
        if kind == "finetune":
            job_task = section[stage].get("task")
            if job_task and job_task != task:
                raise ConfigError(f"--stage {stage} is a {job_task} job (finetune.{stage}.task), "
                                  f"not {task}")
        return stage
    if task in section:
        return task
    jobs = [name for name, job in section.items() if job.get("task") == task]
    if len(jobs) == 1:
        return jobs[0]
    raise ConfigError(f"pass --stage: the config's {kind} section has "
                      f"{'no job' if not jobs else 'several jobs'} for task {task} ({', '.join(jobs)})")


def train(kind: str, task: str, config: str | Path, model: str, stage: str | None, data: str | Path,
          out: str | Path, init: str | Path | None = None, resume: str | None = None,
          clip: str | Path | None = None, bert: str | Path | None = None,
          max_steps: int | None = None, tokenizer: str | Path | None = None,
          allow_partial_init: bool = False, seed: int | None = None) -> dict[str, Any]:
    """Train one pretraining stage (`kind='pretrain'`, task 'pretrain') or fine-tuning job;
    `seed` replaces the config's `seed` (a fine-tuning seed of evaluate.<job>.seeds).

    The SIGTERM/SIGUSR1/SIGALRM handler is installed first (a signal during start-up is a preemption,
    exit 75, not a kill), then the exclusive lock on `out` (one run per folder)."""
    from mplug.train.checkpoint import run_lock
    from mplug.train.distributed import detect
    from mplug.train.loop import _Preemption

    with _Preemption() as pre, run_lock(out, enabled=detect().is_main):
        return _train(kind, task, config, model, stage, data, out, init, resume, clip, bert,
                      max_steps, tokenizer, allow_partial_init, pre, seed)


def _train(kind, task, config, model, stage, data, out, init, resume, clip, bert, max_steps,
           tokenizer, allow_partial_init, preemption, seed=None) -> dict[str, Any]:
    import torch

    from mplug.config import load_config, model_settings, train_settings
    from mplug.data.tokenizer import find_vocab, load_tokenizer
    from mplug.models import build_model
    from mplug.train.loop import fit, set_seed
    from mplug.utils.provenance import config_hash

    t0 = time.perf_counter()
    if kind not in ("pretrain", "finetune"):
        raise ConfigError(f"kind must be pretrain or finetune, not {kind!r}")
    spec = get_task(task, kind)  # unknown: a ConfigError listing the kind's tasks
    cfg = load_config(config)
    if seed is not None:
        cfg = {**cfg, "seed": seed}
    _arm_time_limit(cfg)
    stage = resolve_stage(cfg, kind, task, stage)
    where = f"{kind}.{stage}.train"
    settings = parse_train_settings(train_settings(cfg, kind, stage, model), cfg["seed"], where)
    if max_steps:
        settings.loop.max_steps = max_steps
    msettings = model_settings(cfg, model)
    arch = msettings["arch"]
    model_task = spec.model_task
    recipes.check_objectives(model_task, settings, where)
    for key, value in settings.ignored.items():
        log.info("%s.%s=%r is not used by training (see mplug/train/settings.py)", where, key, value)

    data_dir = Path(data)
    tok = load_tokenizer(find_vocab(data_dir, tokenizer or cfg.get("tokenizer")))
    set_seed(int(cfg["seed"]))  # model init is a function of the seed
    over = recipes.model_overrides(settings, msettings, tok, arch)
    net = build_model(arch, model_task, **over)
    init_info: dict[str, Any] | None = None
    if init:
        init_info = recipes.load_init(net, init, allow_partial=allow_partial_init)
    elif kind == "pretrain":
        init_info = _scratch_init(net, cfg, model, clip, bert)
    elif kind == "finetune":
        log.warning("fine-tuning %s from random weights (no --init)", task)

    names = list((cfg.get(kind, {}).get(stage, {}) or {}).get("datasets") or [])
    dataset, collate, used = recipes.build_train_data(task, data_dir, names, settings, tok,
                                                      stage if kind == "pretrain" else None)
    if spec.train_step == "contrastive":
        step = recipes.contrastive_step(settings.alpha)
    elif task == "caption" and settings.scst:
        from mplug.eval.cider_reward import CiderReward

        from mplug.train.distributed import detect

        if settings.engine.zero_stage == 3 and detect().world_size > 1:
            raise ConfigError(f"{where}.zero_stage=3 with SCST on {detect().world_size} ranks: beam "
                              "search stops at a data-dependent step and ZeRO-3 gathers parameters "
                              "collectively in every forward, so the ranks would deadlock; use "
                              "zero_stage 2 (official)")
        step = recipes.scst_step(tok, CiderReward(recipes.caption_references(dataset)), settings.scst)
    else:
        step = recipes.plain_step
    evaluator = _evaluator(task, settings, data_dir, used, tok, where)
    run_info = {"kind": kind, "task": task, "stage": stage, "model": model, "arch": arch, "seed": cfg["seed"],
                "config": str(config), "config_hash": config_hash(cfg), "data": str(data_dir),
                "datasets": used, "examples": len(dataset), "init": init_info,
                "settings": settings.raw, "model_overrides": over,
                "scst": bool(settings.scst and task == "caption"),
                "eval_every": settings.loop.eval_every if evaluator else 0,
                "setup_seconds": round(time.perf_counter() - t0, 2)}
    log.info("%s %s (%s) on %s: %d examples, model %s", kind, stage, task, ", ".join(used),
             len(dataset), arch)
    del torch
    return fit(net, dataset, collate, settings.loop, settings.optim, settings.engine, out,
               resume=resume, step_fn=step, run_info=run_info, evaluator=evaluator,
               preemption=preemption)


def _arm_time_limit(cfg: dict) -> None:
    """Inside a SLURM job: SIGALRM `resources.cluster.signal_lead_s` before its time limit (on
    the main rank; the loop's preemption check spreads the flag to every rank)."""
    from mplug.train.distributed import detect
    from mplug.train.walltime import arm_before_time_limit

    if detect().is_main:
        arm_before_time_limit(((cfg.get("resources") or {}).get("cluster") or {}).get("signal_lead_s"))


def _evaluator(task: str, settings, data_dir: Path, used: list[str], tok, where: str):
    """Keep-best evaluation (`eval_every`): CIDEr on the caption folder's val split (official
    SCST `--eval_steps`); other tasks log that the key is not acted on."""
    if not settings.loop.eval_every:
        return None
    if task != "caption":
        log.info("%s.eval_every=%d is not acted on for %s (keep-best evaluation is implemented for "
                 "captioning); the last step's weights are the output", where,
                 settings.loop.eval_every, task)
        settings.loop.eval_every = 0
        return None
    from mplug.train.evaluation import CaptionEvaluator

    gen = {k: settings.scst[k] for k in ("beam_size", "min_length", "max_length")
           if settings.scst and k in settings.scst}
    folder = used[0] if used and used[0] != "(default)" else None
    return CaptionEvaluator(data_dir, folder, tok, settings.model_overrides["image_res"],
                            batch_size=settings.batch_size_eval, **gen)


def _scratch_init(net, cfg: dict, model: str, clip: str | None, bert: str | None) -> dict[str, Any]:
    """Pretraining without --init: CLIP-ViT + BERT-base from --clip/--bert, else the config's
    `pretrained.init`; random weights only when the config says `pretrained.init: random`."""
    from mplug.config import resource_source, scratch_init

    if not (clip or bert):
        paths = scratch_init(cfg, model)
        if paths is None:
            log.warning("pretraining %s from random weights (pretrained.init: random)", model)
            return {"random": True}
        clip, bert = paths["clip"], paths["bert"]
    for what, path in (("CLIP", clip), ("BERT", bert)):
        if not path or not Path(path).exists():
            source = resource_source(cfg, path) if path else None
            hint = f"run `mplug data download {source}`" if source else "pass both --clip and --bert"
            raise CheckpointError(f"{path or '(none)'}: the {what} weights pretraining starts from are "
                                  f"missing; {hint}, or set pretrained.init: random for random init")
    return _init_clip_bert(net, clip, bert)


def _init_clip_bert(net, clip: str | Path, bert: str | Path) -> dict[str, Any]:
    """Pretraining from scratch: CLIP-ViT + BERT-base weights (paper 5.1), via convert.py."""
    from mplug.models.convert import _load_bert, init_from_clip_bert
    from mplug.models.loading import load_state_dict_safe

    state, report = init_from_clip_bert(net.state_dict(), load_state_dict_safe(clip), _load_bert(bert),
                                        text_layers=net.cfg.text_layers)
    net.load_state_dict(state)
    log.info("init from CLIP %s + BERT %s: %d tensors kept", clip, bert, report.kept)
    return {"clip": str(clip), "bert": str(bert), "kept": report.kept}
