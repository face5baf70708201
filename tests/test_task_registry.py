"""The task registry (mplug/task_registry.py) is the one table every layer reads: config
validation, the CLI's task choices, the data layer (schema, folder, dataset class, encoder-text
rule), training and evaluation dispatch all follow it, and a task added there is known to all of
them at once. A name is registered once."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mplug import task_registry as reg
from mplug.errors import ConfigError, DataError
from mplug.task_registry import TASKS, TaskSpec, get_task, register_task, task_names

REPO = Path(__file__).resolve().parents[1]
RUN_CONFIGS = (REPO / "config" / "config.yaml", REPO / "config" / "smoke.yaml")


@pytest.fixture
def extra_task():
    """A task added by one `register_task` call (a VQA variant on its own folder), removed after."""
    spec = register_task(TaskSpec("vqa_extra", ("finetune", "evaluate"), "vqa", "vqa", "vqa_extra",
                                  "VQADataset", encoder_text="question", encoder_sep=False,
                                  train_step="plain", evaluator="vqa", metrics=("overall",),
                                  decoding="beam", gen_prefix="vqa"))
    yield spec
    del reg._TASKS[spec.name]


def _semantic_messages(cfg: dict) -> list[str]:
    from mplug.config import semantic_errors

    return [msg for _, msg in semantic_errors(cfg)]


def test_a_name_is_registered_once():
    with pytest.raises(ConfigError, match="'vqa' is already registered"):
        register_task(TaskSpec("vqa", ("evaluate",), "vqa", "vqa", "vqa", "VQADataset",
                               evaluator="vqa"))
    with pytest.raises(ConfigError, match="'retrieval' is already registered"):  # an alias too
        register_task(TaskSpec("retrieval_x", ("evaluate",), "retrieval", "retrieval",
                               "coco_retrieval", "RetrievalDataset", evaluator="retrieval",
                               aliases=("retrieval",)))
    assert "retrieval_x" not in TASKS and TASKS["vqa"].dataset == "vqa"


def test_unknown_task_names_the_key_and_lists_the_tasks():
    with pytest.raises(ConfigError, match="unknown fine-tuning task 'nocaps'; use one of vqa, "
                                          "caption, .*snli_ve$"):
        get_task("nocaps", "finetune")
    with pytest.raises(ConfigError, match="unknown task 'vqa2'; use one of pretrain, vqa"):
        get_task("vqa2")
    with pytest.raises(ConfigError, match="job kinds"):
        TaskSpec("x", ("zeroshot",), "vqa", "vqa", "vqa", "VQADataset")


def test_config_validation_lists_the_registry_tasks():
    cfg = yaml.safe_load(RUN_CONFIGS[1].read_text())
    cfg["finetune"]["vqa"]["task"] = "vqa2"
    cfg["evaluate"]["video_caption"]["task"] = "video_captions"
    msgs = _semantic_messages(cfg)
    assert f"unknown task 'vqa2'; fine-tuning tasks: {', '.join(task_names('finetune'))}" in msgs
    assert (f"unknown task 'video_captions'; evaluation tasks: {', '.join(task_names('evaluate'))}"
            in msgs)


def test_cli_task_choices_are_the_registry_tasks():
    from mplug.cli import build_command_parser

    def choices(verb: str, *path: str) -> tuple:
        parser = build_command_parser(verb)
        for name in path:  # into the sub-command
            parser = next(a for a in parser._actions if a.dest == "kind").choices[name]
        return tuple(next(a for a in parser._actions if a.dest == "task").choices)

    assert choices("evaluate") == task_names("evaluate")
    assert choices("train", "finetune") == task_names("finetune")


def test_every_layer_resolves_every_task():
    from mplug.data import formats
    from mplug.data.datasets import dataset_class
    from mplug.eval.run import EVALUATORS
    from mplug.models.tasks import TASK_CLASSES as MODEL_CLASSES

    for name, spec in TASKS.items():
        assert spec.model_task in MODEL_CLASSES, name
        assert formats.get_schema(name).task == spec.schema == dataset_class(name).schema, name
        assert formats.DATASETS[spec.dataset].schema == spec.schema, name
        assert spec.evaluator is None or spec.evaluator in EVALUATORS, name
    assert set(reg.model_tasks()) == set(MODEL_CLASSES)  # every head is some task's
    # no routine that no task uses
    assert set(EVALUATORS) == {s.evaluator for s in TASKS.values() if s.evaluator}
    assert formats.data_task("video_qa") is TASKS["video_qa_msrvtt"]  # record-schema aliases
    with pytest.raises(DataError, match="unknown task 'vqa2'; known: caption, "):
        formats.data_task("vqa2")


def test_metrics_are_the_names_the_scorers_write():
    from mplug.eval.caption_eval import CAPTION_METRICS, NOCAPS_DOMAINS
    from mplug.eval.retrieval_eval import recall_at_k

    recall = recall_at_k(*_perfect_retrieval())
    for spec in TASKS.values():
        if spec.evaluator == "retrieval":
            assert set(spec.metrics) <= set(recall), spec.name
    assert TASKS["caption"].metrics == TASKS["video_caption"].metrics == CAPTION_METRICS
    assert set(TASKS["nocaps"].metrics) == {f"{d}/{m}" for d in (*NOCAPS_DOMAINS, "overall")
                                            for m in ("CIDEr", "SPICE")}


def _perfect_retrieval():
    import numpy as np

    scores = np.eye(2)
    return scores, scores, [0, 1], [[0], [1]]


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=lambda p: p.name)
def test_evaluation_jobs_label_tables_that_report_their_task(path):
    cfg = yaml.safe_load(path.read_text())
    for job, entry in cfg["evaluate"].items():
        assert set(entry["tables"]) <= set(get_task(entry["task"]).tables), job


def test_eval_settings_fields_follow_the_spec():
    from mplug.eval.job import generation_settings, option_fields
    from mplug.eval.run import EvalSettings, eval_data_opts

    s = EvalSettings(frames_qa=12)
    assert eval_data_opts("video_qa_msvd", s)["num_frames"] == 12
    assert "num_frames" not in eval_data_opts("vqa", s)
    assert option_fields("frames") == {n: get_task(n).frames_field for n in task_names("evaluate")
                                       if get_task(n).frames_field}
    assert option_fields("bins") == {"grounding": "grounding_bins"}
    fields, _ = generation_settings("video_caption", {"beam_size": 3, "prompt": "a"}, "g")
    assert fields == {"video_caption_beam": 3, "video_caption_prompt": "a"}


def test_a_task_registered_once_is_known_to_every_layer(extra_task, tmp_path):
    from mplug.cli import build_command_parser
    from mplug.data.collate import Collator
    from mplug.data.datasets import dataset_class, resolve_dataset_dir

    cfg = yaml.safe_load(RUN_CONFIGS[1].read_text())
    cfg["finetune"]["vqa"]["task"] = cfg["evaluate"]["vqa"]["task"] = "vqa_extra"
    assert not [m for m in _semantic_messages(cfg) if "unknown task" in m]
    assert "vqa_extra" in next(a for a in build_command_parser("evaluate")._actions
                               if a.dest == "task").choices
    (tmp_path / "vqa_extra").mkdir()
    assert resolve_dataset_dir("vqa_extra", tmp_path) == tmp_path / "vqa_extra"
    assert dataset_class("vqa_extra").__name__ == "VQADataset"
    collate = Collator("vqa_extra", _tokenizer(tmp_path))
    ids, _ = collate.encode_text(["red cube"])
    assert ids.shape[1] == 3  # [CLS] red cube: a question keeps no [SEP], like vqa's
    assert collate.encode_text(["red cube"])[0].tolist() == Collator("vqa", collate.tokenizer) \
        .encode_text(["red cube"])[0].tolist()


def _tokenizer(tmp_path: Path):
    from mplug.data.tokenizer import load_tokenizer

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "red", "cube"]) + "\n")
    return load_tokenizer(vocab)
