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

# generation keys -> EvalSettings field prefix of the task's decoding
GEN_PREFIX = {"vqa": "vqa", "caption": "caption", "nocaps": "caption", "video_caption": "video_caption"}
PROMPT_FIELD = {"caption": "caption_prompt", "nocaps": "nocaps_prompt",
                "video_caption": "video_caption_prompt"}
FRAMES_FIELD = {"video_retrieval": "frames_retrieval", "video_caption": "frames_caption",
                "video_qa_msrvtt": "frames_qa", "video_qa_msvd": "frames_qa"}
RETRIEVAL = ("retrieval_coco", "retrieval_flickr", "video_retrieval")
VIDEO_QA = ("video_qa_msrvtt", "video_qa_msvd")
DIRECT = ("batch_size", "limit", "image_res", "max_text_len", "rank_k")
# What the evaluator does, fixed per task: a config asking for something else is an error.
MODE = {**{t: "beam" for t in GEN_PREFIX}, "grounding": "greedy", **{t: "rank" for t in VIDEO_QA}}
SCORE = {"retrieval_coco": "itm", "retrieval_flickr": "itm", "video_retrieval": "itm_plus_itc"}
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
    when the evaluator does not act on it. Raises for a value the evaluator cannot honour."""
    if key in DIRECT:
        return key
    if key in ("beam_size", "min_length", "max_length") and task in GEN_PREFIX:
        return f"{GEN_PREFIX[task]}_{key.replace('_size', '')}"
    if key == "max_length" and task == "grounding":
        _require(value == GROUNDING_STEPS, where, value, f"grounding decodes exactly {GROUNDING_STEPS} "
                 "box tokens")
        return ""
    if key == "prompt" and task in PROMPT_FIELD:
        return PROMPT_FIELD[task]
    if key == "num_frames" and task in FRAMES_FIELD:
        return FRAMES_FIELD[task]
    if key == "k_test" and task in RETRIEVAL:
        return "k_test"
    if key == "k_test" and task in VIDEO_QA:
        return "rank_k"  # official video QA: the answer list's top-k by the decoder's first token
    if key == "mode" and task in MODE:
        _require(value == MODE[task], where, value, f"{task} evaluation decodes by {MODE[task]!r}")
        return ""
    if key == "score" and task in SCORE:
        _require(value == SCORE[task], where, value, f"{task} evaluation scores by {SCORE[task]!r}")
        return ""
    if key == "length_penalty" and task in GEN_PREFIX:
        _require(value == LENGTH_PENALTY, where, value, f"the decoders' length penalty is fixed at "
                 f"{LENGTH_PENALTY} (official GNMT penalty)")
        return ""
    return None


def _require(ok: bool, where: str, value: Any, what: str) -> None:
    if not ok:
        raise ConfigError(f"{where}={value!r} cannot be honoured: {what}")
