"""An `evaluate:` job of a run config, resolved once: task, dataset, model and `EvalSettings`.

`resolve_job(cfg, job, model_key)` is the one place where a job's `generation:` block (after
`overrides[arch]` and, with `hparams: paper`, `paper:`; see `mplug.config.eval_settings`) meets the
evaluator. Each key is either acted on (mapped to an `EvalSettings` field), checked against what
the evaluator does (a value it cannot honour is a ConfigError naming the key), or reported as not
acted on (logged, and stored in the metrics' provenance), as training reports its unused keys.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mplug.errors import ConfigError
from mplug.task_registry import TaskSpec, get_task, task_names

DIRECT = ("batch_size", "limit", "image_res", "max_text_len", "rank_k")
LENGTH_PENALTY = 0.6  # the models' GNMT length penalty (mplug.models.generation)
GROUNDING_STEPS = 4   # cx, cy, w, h: one token each
NOT_ACTED_ON = {
    "add_ocr": "the VQA records carry no OCR tokens (the loaders do not read them)",
    "add_object": "the VQA records carry no object tags (the loaders do not read them)",
    "submission": "the EvalAI file is written whenever a VQA split has no answers",
}


@dataclass(frozen=True)
class EvalJob:
    """A resolved evaluation job: what `mplug evaluate --config C --model KEY --job JOB` runs."""

    name: str
    task: str
    dataset: str
    model_key: str
    arch: str
    settings: dict[str, Any]                       # EvalSettings fields
    not_acted_on: dict[str, str] = field(default_factory=dict)  # key -> why


def resolve_job(cfg: dict, job: str, model_key: str) -> EvalJob:
    """The job `job` of run config `cfg` for model `model_key` (both must be the config's keys)."""
    from mplug.config import eval_settings, model_settings

    model = model_settings(cfg, model_key)
    entry = cfg["evaluate"][job] if job in (cfg.get("evaluate") or {}) else None
    if entry is None:
        raise ConfigError(f"no evaluation job {job!r} in the run config; jobs: "
                          f"{', '.join(cfg.get('evaluate') or {}) or 'none'}")
    gen = eval_settings(cfg, job, model_key)
    settings, ignored = generation_settings(entry["task"], gen, f"evaluate.{job}.generation")
    settings.update(model=model["arch"], model_key=model_key, job=job, stride=model["stride"],
                    schedule=model["schedule"])
    return EvalJob(job, entry["task"], entry["dataset"], model_key, model["arch"], settings, ignored)


def generation_settings(task: str, gen: dict, where: str) -> tuple[dict[str, Any], dict[str, str]]:
    """(EvalSettings fields, {key: why not acted on}) of a resolved `generation:` block."""
    out: dict[str, Any] = {}
    ignored: dict[str, str] = {}
    for key, value in gen.items():
        if value is None:
            continue
        target = _target(task, key, value, f"{where}.{key}")
        if target is None:
            ignored[key] = NOT_ACTED_ON.get(key, f"not used by {task} evaluation")
        elif target:
            out[target] = value
    return out, ignored


def _target(task: str, key: str, value: Any, where: str) -> str | None:
    """The EvalSettings field `key` sets; '' when it only restates what the evaluator does; None
    when the evaluator does not act on it. Raises for a value the evaluator cannot honour.
    What the evaluator does per task (decoding, scoring, its fields) is the task's TaskSpec."""
    spec = get_task(task, "evaluate")
    if key in DIRECT:
        return key
    if key in ("beam_size", "min_length", "max_length") and spec.gen_prefix:
        return f"{spec.gen_prefix}_{key.replace('_size', '')}"
    if key == "max_length" and spec.evaluator == "grounding":
        _require(value == GROUNDING_STEPS, where, value, f"grounding decodes exactly {GROUNDING_STEPS} "
                 "box tokens")
        return ""
    if key == "prompt" and spec.prompt_field:
        return spec.prompt_field
    if key == "num_frames" and spec.frames_field:
        return spec.frames_field
    if key == "k_test" and spec.evaluator == "retrieval":
        return "k_test"
    if key == "k_test" and spec.evaluator == "video_qa":
        return "rank_k"  # official video QA: the answer list's top-k by the decoder's first token
    return _fixed(spec, key, value, where)


def _fixed(spec: TaskSpec, key: str, value: Any, where: str) -> str | None:
    """Keys that restate what the evaluator does, fixed per task: another value is an error."""
    if key == "mode" and spec.decoding:
        _require(value == spec.decoding, where, value, f"{spec.name} evaluation decodes by "
                 f"{spec.decoding!r}")
        return ""
    if key == "score" and spec.retrieval_score:
        _require(value == spec.retrieval_score, where, value, f"{spec.name} evaluation scores by "
                 f"{spec.retrieval_score!r}")
        return ""
    if key == "length_penalty" and spec.gen_prefix:
        _require(value == LENGTH_PENALTY, where, value, f"the decoders' length penalty is fixed at "
                 f"{LENGTH_PENALTY} (official GNMT penalty)")
        return ""
    return None


def option_fields(option: str) -> dict[str, str]:
    """Evaluation task -> the EvalSettings field a per-task command-line option sets: `prompt`,
    `frames` or `bins` (only the tasks whose evaluator has one)."""
    attr = {"prompt": "prompt_field", "frames": "frames_field"}.get(option)
    out = {}
    for name in task_names("evaluate"):
        spec = get_task(name)
        if attr and getattr(spec, attr):
            out[name] = getattr(spec, attr)
        elif option == "bins" and spec.evaluator == "grounding":
            out[name] = "grounding_bins"
    return out


def generation_prefixes() -> dict[str, str]:
    """Evaluation task -> EvalSettings prefix of its beam / min / max length (generation tasks)."""
    return {n: get_task(n).gen_prefix for n in task_names("evaluate") if get_task(n).gen_prefix}


def _require(ok: bool, where: str, value: Any, what: str) -> None:
    if not ok:
        raise ConfigError(f"{where}={value!r} cannot be honoured: {what}")
