"""What a task is, in one place: one frozen `TaskSpec` per task, registered with `register_task`.

Every layer reads this table instead of keeping its own map: run-config validation (which task a
`finetune:` / `evaluate:` job may name), the CLI's task choices, the model head it trains
(`mplug.models.build_model(arch, spec.model_task)`), the record schema and default dataset folder
(`mplug.data.formats`), the dataset class and the collate rule for its encoder text
(`mplug.data.datasets`, `mplug.data.collate`), the training step (`mplug.train`), and the
evaluation routine, decoding and settings fields (`mplug.eval.run`, `mplug.eval.job`). Adding a
task is one `register_task(TaskSpec(...))` here (plus its code, if its routine is new).

Things that live in higher modules (classes, routines) are named by strings and looked up there,
so this module imports nothing from mplug but its errors and sits below every layer.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

from mplug.errors import ConfigError

# The workflow's job kinds (the run config's sections) a task may appear in, as errors say them.
JOB_KINDS = {"pretrain": "pre-training", "finetune": "fine-tuning", "evaluate": "evaluation"}

_RECALL = ("txt_r1", "txt_r5", "txt_r10", "img_r1", "img_r5", "img_r10")
_CAPTION = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr", "SPICE")
_NOCAPS = tuple(f"{d}/{m}" for d in ("in-domain", "near-domain", "out-domain", "overall")
                for m in ("CIDEr", "SPICE"))


@dataclass(frozen=True)
class TaskSpec:
    """One task as the CLI and the run config name it (`vqa`, `retrieval_coco`, ...)."""

    name: str
    jobs: tuple[str, ...]          # job kinds it appears in (JOB_KINDS)
    model_task: str                # mplug.models.build_model's task: the head trained/evaluated
    schema: str                    # record schema of its JSONL (mplug.data.formats.SCHEMAS)
    dataset: str                   # default dataset folder under data/<run>/
    dataset_class: str             # the mplug.data.datasets class that reads it
    encoder_text: str = "text"     # collate: the encoder text's kind (its default max length)
    encoder_sep: bool = True       # collate: official code appends [SEP] to the encoder text
    train_step: str | None = None  # training step: "contrastive" (alpha ramp) or "plain"
    evaluator: str | None = None   # mplug.eval.run routine: _run_<evaluator>
    metrics: tuple[str, ...] = ()  # headline metric keys the evaluator writes
    decoding: str | None = None    # how evaluation decodes: "beam", "greedy" or "rank"
    gen_prefix: str | None = None  # EvalSettings prefix of its beam / min / max length fields
    prompt_field: str | None = None   # EvalSettings field of its decoding prompt
    frames_field: str | None = None   # EvalSettings field of its frames per video
    retrieval_score: str | None = None  # how retrieval ranks: "itm" or "itm_plus_itc"
    aliases: tuple[str, ...] = ()  # record-schema names the data layer also accepts for it
    tables: tuple[int, ...] = ()   # the paper's tables that report it (an `evaluate:` job's
                                   # `tables:` label names some of them)

    def __post_init__(self) -> None:
        bad = [k for k in self.jobs if k not in JOB_KINDS]
        if not self.jobs or bad:
            raise ConfigError(f"task {self.name!r}: job kinds {list(self.jobs)} must be some of "
                              f"{', '.join(JOB_KINDS)}")
        if ("evaluate" in self.jobs) != (self.evaluator is not None):
            raise ConfigError(f"task {self.name!r}: an evaluation routine exactly when it has "
                              "`evaluate` jobs")


_TASKS: dict[str, TaskSpec] = {}
_ALIASES: dict[str, str] = {}
TASKS: Mapping[str, TaskSpec] = MappingProxyType(_TASKS)  # name -> spec, registration order


def register_task(spec: TaskSpec) -> TaskSpec:
    """Add a task; a name (or alias) already taken is an error, never a silent replacement."""
    for name in (spec.name, *spec.aliases):
        if name in _TASKS or name in _ALIASES:
            raise ConfigError(f"task name {name!r} is already registered; each task has one spec")
    _TASKS[spec.name] = spec
    _ALIASES.update(dict.fromkeys(spec.aliases, spec.name))
    return spec


def task_names(job: str | None = None) -> tuple[str, ...]:
    """Registered task names (in registration order), only those with `job` jobs if given."""
    return tuple(n for n, s in _TASKS.items() if job is None or job in s.jobs)


def model_tasks() -> tuple[str, ...]:
    """The model heads the tasks train and evaluate (`build_model`'s task names), in order."""
    return tuple(dict.fromkeys(s.model_task for s in _TASKS.values()))


def find_task(name: str) -> TaskSpec | None:
    """The spec of a task name or alias, else None (for callers with their own error)."""
    return _TASKS.get(_ALIASES.get(name, name))


def get_task(name: str, job: str | None = None) -> TaskSpec:
    """The spec of `name` (an alias too), or a ConfigError listing the valid tasks."""
    spec = find_task(name)
    if spec is None or (job is not None and job not in spec.jobs):
        kind = f"{JOB_KINDS.get(job, job)} " if job else ""
        raise ConfigError(f"unknown {kind}task {name!r}; use one of {', '.join(task_names(job))}")
    return spec


def _register_all() -> None:
    fin = ("finetune", "evaluate")
    register_task(TaskSpec("pretrain", ("pretrain",), "pretrain", "pretrain", "pretrain_4m",
                           "PretrainDataset", train_step="contrastive", tables=(12,)))
    register_task(TaskSpec("vqa", fin, "vqa", "vqa", "vqa", "VQADataset", encoder_text="question",
                           encoder_sep=False, train_step="plain", evaluator="vqa",
                           metrics=("overall",), decoding="beam", gen_prefix="vqa", tables=(2,)))
    register_task(TaskSpec("caption", fin, "caption", "caption", "coco_caption", "CaptionDataset",
                           train_step="plain", evaluator="caption", metrics=_CAPTION,
                           decoding="beam", gen_prefix="caption", prompt_field="caption_prompt",
                           tables=(1,)))
    for name, folder, tables, aliases in (("retrieval_coco", "coco_retrieval", (3,), ("retrieval",)),
                                          ("retrieval_flickr", "flickr_retrieval", (3, 8), ())):
        register_task(TaskSpec(name, fin, "retrieval", "retrieval", folder, "RetrievalDataset",
                               encoder_sep=False, train_step="contrastive", evaluator="retrieval",
                               metrics=_RECALL, retrieval_score="itm", tables=tables,
                               aliases=aliases))
    register_task(TaskSpec("grounding", fin, "grounding", "grounding", "refcoco",
                           "GroundingDataset", encoder_text="expression", train_step="plain",
                           evaluator="grounding", metrics=("acc@0.5",), decoding="greedy",
                           tables=(4,)))
    for name, dataset_class in (("nlvr2", "NLVR2Dataset"), ("snli_ve", "SNLIVEDataset")):
        register_task(TaskSpec(name, fin, name, name, name, dataset_class, train_step="plain",
                               evaluator="classify", metrics=("accuracy",), tables=(5,)))
    _register_evaluation_only()


def _register_evaluation_only() -> None:
    """Tasks evaluated zero-shot only (section 5.4): no fine-tuning job trains them."""
    ev = ("evaluate",)
    register_task(TaskSpec("nocaps", ev, "caption", "nocaps", "nocaps", "NocapsDataset",
                           evaluator="caption", metrics=_NOCAPS, decoding="beam",
                           gen_prefix="caption", prompt_field="nocaps_prompt", tables=(1, 7)))
    register_task(TaskSpec("video_retrieval", ev, "retrieval", "video_retrieval",
                           "msrvtt_retrieval", "VideoRetrievalDataset", encoder_sep=False,
                           evaluator="retrieval", metrics=_RECALL, frames_field="frames_retrieval",
                           retrieval_score="itm_plus_itc", tables=(9,)))
    for name, folder, aliases in (("video_qa_msrvtt", "msrvtt_qa", ("video_qa",)),
                                  ("video_qa_msvd", "msvd_qa", ())):
        register_task(TaskSpec(name, ev, "vqa", "video_qa", folder, "VideoQADataset",
                               encoder_text="question", encoder_sep=False, evaluator="video_qa",
                               metrics=("accuracy",), decoding="rank", frames_field="frames_qa",
                               tables=(10,), aliases=aliases))
    register_task(TaskSpec("video_caption", ev, "caption", "video_caption", "vatex_caption",
                           "VideoCaptionDataset", evaluator="caption", metrics=_CAPTION,
                           decoding="beam", gen_prefix="video_caption",
                           prompt_field="video_caption_prompt", frames_field="frames_caption",
                           tables=(10,)))


_register_all()
