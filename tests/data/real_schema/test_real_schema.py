"""Every dataset `mplug data preprocess` handles, from raw files in the dataset's published schema
(raw_layouts.py), through the CLI and then the task's loader to one batch; and a raw file whose
schema differs (a field missing, a key renamed) stops with an error naming file, record and field."""
from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from raw_layouts import MSVD, build_resources, py2_pickle

from mplug.cli import main
from mplug.data import formats
from mplug.data.datasets import build_loader
from mplug.data.preprocess import PREPROCESS_SOURCES
from mplug.data.preprocess_image import _decode
from mplug.data.vocab import write_vocab

RES = 32


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    return build_resources(tmp_path_factory.mktemp("real") / "resources")


@pytest.fixture(scope="module")
def data(raw, tmp_path_factory) -> Path:
    """data/RUN/ with vocab.txt; datasets are preprocessed on first use (`_preprocessed`)."""
    out = tmp_path_factory.mktemp("data")
    write_vocab(out / "vocab.txt", [])  # letters and '##' pieces: every word tokenises
    return out


def _preprocess(raw: Path, out: Path, dataset: str, capsys) -> dict:
    if not (out / dataset / "stats.json").is_file():
        rc = main(["data", "preprocess", dataset, "--src", str(raw), "--out", str(out), "--no-progress"])
        assert rc == 0, capsys.readouterr().err[-2000:]
    return formats.read_stats(out / dataset)


def _records(out: Path, dataset: str, split: str) -> list[dict]:
    return formats.read_records(formats.split_path(out / dataset, split), formats.DATASETS[dataset].schema)


# dataset -> (task, split of the batch, train mode, loader opts, split counts after preprocessing)
CASES = {
    "coco_caption": ("caption", "test", False, {}, {"train": 2, "val": 1, "test": 1}),
    "coco_retrieval": ("retrieval_coco", "train", True, {}, {"train": 2, "val": 1, "test": 1}),
    "flickr_retrieval": ("retrieval_flickr", "test", False, {}, {"train": 2, "val": 1, "test": 1}),
    "nocaps": ("nocaps", "val", False, {}, {"val": 3}),
    "vqa": ("vqa", "train", True, {}, {"train": 5, "val": 1, "test": 3, "vg_qa": 2}),
    "refcoco": ("grounding", "testA", False, {}, {"train": 2, "val": 2, "testA": 2, "testB": 2}),
    "refcoco+": ("grounding", "testB", False, {"dataset": "refcoco+"}, {"train": 2, "val": 2, "testA": 2,
                                                                         "testB": 2}),
    "refcocog": ("grounding", "test_u", False, {"dataset": "refcocog"}, {"train": 2, "val_u": 2, "test_u": 2}),
    "nlvr2": ("nlvr2", "dev", False, {}, {"train": 1, "dev": 2, "test_p": 1}),
    "snli_ve": ("snli_ve", "test", False, {}, {"train": 3, "dev": 3, "test": 3}),
    "msrvtt_retrieval": ("video_retrieval", "test", False, {}, {"test": 2}),
    "msrvtt_qa": ("video_qa_msrvtt", "test", False, {}, {"test": 2}),
    "msvd_qa": ("video_qa_msvd", "test", False, {}, {"test": 2}),
    "vatex_caption": ("video_caption", "test", False, {}, {"test": 1}),
    "pretrain_4m": ("pretrain", "train", False, {"dataset": "pretrain_4m"}, {"train": 11}),
    "pretrain_14m": ("pretrain", "train", False, {"dataset": "pretrain_14m"}, {"train": 11}),
}


def _check_content(dataset: str, stats: dict, recs: dict, out: Path) -> None:
    """What the real schema must turn into (one or two facts per dataset)."""
    if dataset == "coco_caption":
        assert recs["train"][1]["image_id"] == 42 and recs["train"][1]["image"].endswith(
            "coco/val2014/COCO_val2014_000000000042.jpg")  # restval -> train, images from val2014
        assert recs["test"][0]["captions"][0] == "A man riding a horse on a beach 0."
    elif dataset in ("coco_retrieval", "flickr_retrieval"):
        assert recs["test"][0]["text_ids"] == [15, 16, 17, 18, 19]  # Karpathy sentids
    elif dataset == "nocaps":
        assert [r["domain"] for r in recs["val"]] == ["in", "near", "out"] and len(recs["val"][0]["captions"]) == 10
    elif dataset == "vqa":
        assert [r["question_id"] for r in recs["val"]] == [73000] and stats["val_split"] == "lxmert minival"
        assert [r["question_id"] for r in recs["test"]] == [1000, 1001, 14000] and stats["test_dev_questions"] == 2
        assert recs["train"][0]["answers"].count("horse") == 7 and recs["train"][0]["answer_type"] == "other"
        assert recs["vg_qa"][0]["answers"] == ["Green"] and recs["vg_qa"][1]["image"].endswith("VG_100K_2/2.jpg")
        assert formats.read_answer_list(out / "vqa" / "answer_list.json")[0] == "horse"
    elif dataset.startswith("refcoco"):
        first = next(iter(recs.values()))[1]
        assert first["expression"] == "LEFT MAN caf\u00e9 0"  # `raw`, decoded from Python 2 bytes
        assert first["box"] == [2.13, 3.0, 17.42, 8.37]  # bit-exact
        assert stats["boxes_clipped"] == (1 if dataset != "refcocog" else 0) and stats["boxes_dropped"] == 0
    elif dataset == "nlvr2":
        assert recs["train"][0]["image_left"].endswith("images/train/51/train-10171-0-img0.png")
        assert [r["label"] for r in recs["dev"]] == [False, True]
    elif dataset == "snli_ve":
        assert recs["test"][0]["image"].endswith("flickr30k-images/1009434119.jpg")
        assert [r["label"] for r in recs["test"]] == ["entailment", "contradiction", "neutral"]
    elif dataset == "msrvtt_retrieval":
        assert recs["test"][1]["captions"] == ["a man is talking, then singing"]  # a quoted CSV field
    elif dataset in ("msrvtt_qa", "msvd_qa"):
        assert stats["answers_in_list"] == 2
        if dataset == "msvd_qa":
            assert recs["test"][0]["video"].endswith(f"YouTubeClips/{MSVD[0]}.avi")
    elif dataset == "vatex_caption":
        assert stats["images_failed"] == 1 and stats["texts_failed"] == 10  # one video gone from YouTube
    else:  # pretraining
        comp = stats["components"]
        assert comp["coco"]["texts_obtained"] == 10 and comp["vg"]["texts_obtained"] == 1  # VG 2 is COCO 74
        assert comp["cc3m"]["images_expected"] == 4 and comp["cc3m"]["images_obtained"] == 3
        assert stats["shards"] == (2 if dataset == "pretrain_4m" else 3)  # sbu, cc3m (+ cc12m)


@pytest.mark.parametrize("dataset", sorted(CASES))
def test_real_schema_preprocess_then_one_batch(raw, data, dataset, capsys):
    assert set(CASES) == set(PREPROCESS_SOURCES)  # one case per dataset `mplug data preprocess` handles
    task, split, train, opts, counts = CASES[dataset]
    stats = _preprocess(raw, data, dataset, capsys)
    assert stats["splits"] == counts
    _check_content(dataset, stats, {s: _records(data, dataset, s) for s in counts}, data)
    from mplug.data.tokenizer import load_tokenizer

    tok = load_tokenizer(data / "vocab.txt")
    batch_size = 2
    loader, ds = build_loader(task, data, split, tok, RES, train, batch_size, strict=True, **opts)
    batches = list(loader) if task == "pretrain" else [next(iter(loader))]
    img = batches[0]["image"]
    assert img.shape[0] == min(batch_size, len(ds)) and img.shape[-2:] == (RES, RES) and torch.isfinite(img).all()
    if task.startswith("video"):
        assert img.shape[1] == 8 and ds.bad_images == 0  # 8 frames decoded from the real file
    if task == "pretrain":  # the JSONL pairs, then img2dataset's shard samples
        keys = [m["image_id"] for b in batches for m in b["meta"]]
        assert len(keys) == counts["train"] + 3 * stats["shards"] and "000000003" in keys


# ------------------------------------------------------------------- an unexpected schema

def _edit_json(path: Path, fn) -> None:
    obj = json.loads(path.read_text())
    fn(obj)
    path.write_text(json.dumps(obj))


def _edit_jsonl(path: Path, fn) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    fn(rows)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _edit_refs(path: Path, fn) -> None:
    refs = _decode(pickle.loads(path.read_bytes(), encoding="bytes"))
    fn(refs)
    path.write_bytes(py2_pickle(refs))


def _rename(obj: dict, old: str, new: str) -> None:
    obj[new] = obj.pop(old)


# dataset, raw file (under resources/), edit, expected message (file, record and field)
BREAKS = [
    ("coco_caption", "coco_karpathy/dataset_coco.json",
     lambda p: _edit_json(p, lambda o: o["images"][2].pop("sentences")),
     r"dataset_coco\.json: images\[2\]: key 'sentences' missing"),
    ("coco_retrieval", "coco_karpathy/dataset_coco.json",
     lambda p: _edit_json(p, lambda o: _rename(o["images"][1]["sentences"][3], "raw", "caption")),
     r"dataset_coco\.json: images\[1\]\.sentences\[3\]: key 'raw' missing"),
    ("flickr_retrieval", "flickr30k/dataset_flickr30k.json",
     lambda p: _edit_json(p, lambda o: _rename(o["images"][0], "filename", "file_name")),
     r"dataset_flickr30k\.json: images\[0\]: key 'filename' missing"),
    ("nocaps", "nocaps/nocaps_val_4500_captions.json",
     lambda p: _edit_json(p, lambda o: _rename(o["annotations"][4], "caption", "text")),
     r"nocaps_val_4500_captions\.json: annotations\[4\]: key 'caption' missing"),
    ("vqa", "vqa_v2/v2_OpenEnded_mscoco_test2015_questions.json",
     lambda p: _edit_json(p, lambda o: o["questions"][1].pop("image_id")),
     r"test2015_questions\.json: questions\[1\]: key 'image_id' missing"),
    ("vqa", "vqa_v2/v2_mscoco_val2014_annotations.json",
     lambda p: _edit_json(p, lambda o: _rename(o["annotations"][0]["answers"][3], "answer", "text")),
     r"val2014_annotations\.json: annotations\[0\]\.answers\[3\]: key 'answer' missing"),
    ("refcoco", "refcoco/refcoco/refs(unc).p",
     lambda p: _edit_refs(p, lambda refs: [s.pop("raw") and s.pop("sent") for s in refs[1]["sentences"][:1]]),
     r"refs\(unc\)\.p: ref 1\.sentences\[0\]: key 'raw' missing \(nor 'sent'\)"),
    ("refcoco+", "refcoco_plus/refcoco+/instances.json",
     lambda p: _edit_json(p, lambda o: o["annotations"][2].pop("bbox")),
     r"instances\.json: annotation 1719312: key 'bbox' missing"),
    ("refcocog", "refcocog/refcocog/refs(umd).p",
     lambda p: _edit_refs(p, lambda refs: refs[0].pop("ann_id")),
     r"refs\(umd\)\.p: ref 0: key 'ann_id' missing"),
    ("nlvr2", "nlvr2/dev.json",
     lambda p: _edit_jsonl(p, lambda rows: _rename(rows[1], "sentence", "statement")),
     r"dev\.json:2: key 'sentence' missing"),
    ("snli_ve", "albef_data/data/ve_dev.json",
     lambda p: _edit_json(p, lambda o: _rename(o[2], "sentence", "hypothesis")),
     r"ve_dev\.json: \[2\]: key 'sentence' missing"),
    ("msrvtt_retrieval", "msrvtt/msrvtt_data/MSRVTT_JSFUSION_test.csv",
     lambda p: p.write_text(p.read_text().replace("video_id", "vid", 1)),
     r"MSRVTT_JSFUSION_test\.csv:1: header lacks column\(s\) \['video_id'\]"),
    ("msrvtt_qa", "alpro_data/data/msrvtt_qa/txt/test.jsonl",
     lambda p: _edit_jsonl(p, lambda rows: rows[1].pop("answer")),
     r"msrvtt_qa/txt/test\.jsonl:2: key 'answer' missing"),
    ("msvd_qa", "alpro_data/data/msvd_qa/txt/test.jsonl",
     lambda p: _edit_jsonl(p, lambda rows: _rename(rows[0], "video_id", "video")),
     r"msvd_qa/txt/test\.jsonl:1: key 'video_id' missing"),
    ("vatex_caption", "vatex/vatex_public_test_english_v1.1.json",
     lambda p: _edit_json(p, lambda o: _rename(o[0], "enCap", "chCap")),
     r"vatex_public_test_english_v1\.1\.json: \[0\]: key 'enCap' missing"),
    ("pretrain_4m", "vg/region_descriptions.json",
     lambda p: _edit_json(p, lambda o: _rename(o[0]["regions"][1], "phrase", "text")),
     r"region_descriptions\.json: \[0\]\.regions\[1\]: key 'phrase' missing"),
    ("pretrain_14m", "vg/image_data.json",
     lambda p: _edit_json(p, lambda o: _rename(o[0], "image_id", "id")),
     r"image_data\.json: \[0\]: key 'image_id' missing"),
]


@pytest.mark.parametrize("dataset,file,edit,message", BREAKS, ids=[f"{b[0]}:{Path(b[1]).name}" for b in BREAKS])
def test_unexpected_schema_names_file_record_and_field(raw, tmp_path, capsys, dataset, file, edit, message):
    import re

    src = tmp_path / "resources"
    for source in PREPROCESS_SOURCES[dataset]:
        if (raw / source).exists():
            shutil.copytree(raw / source, src / source, symlinks=True)
    edit(src / file)
    rc = main(["data", "preprocess", dataset, "--src", str(src), "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc != 0 and re.search(message, err), err[-2000:]
    assert "Traceback" not in err and not (tmp_path / "out" / dataset / "stats.json").exists()


# ------------------------------------------------- preprocess -> `mplug evaluate` on a tiny model

@pytest.fixture(scope="module")
def checkpoints(data, tmp_path_factory):
    """A random-init mplug_tiny checkpoint per model task (saved and loaded as a trained one)."""
    from mplug.data.tokenizer import load_tokenizer
    from mplug.eval.run import EvalSettings, load_model
    from mplug.models.loading import save_state_dict

    folder, made = tmp_path_factory.mktemp("ckpt"), {}
    tok = load_tokenizer(data / "vocab.txt")

    def get(model_task: str) -> Path:
        if model_task not in made:
            torch.manual_seed(0)
            model = load_model(model_task, None, EvalSettings(model="mplug_tiny", device="cpu"), "cpu", tok)
            made[model_task] = folder / f"{model_task}.safetensors"
            save_state_dict(model.state_dict(), made[model_task])
        return made[model_task]
    return get


# task, dataset, split, metric keys the metrics JSON must hold (captioning of images is left out:
# its Java metrics cost seconds each and video_caption already runs them)
EVALS = [
    ("video_retrieval", "msrvtt_retrieval", "test", ("txt_r1", "img_r1", "r_mean")),
    ("video_qa_msrvtt", "msrvtt_qa", "test", ("accuracy",)),
    ("video_qa_msvd", "msvd_qa", "test", ("accuracy",)),
    ("video_caption", "vatex_caption", "test", ("CIDEr",)),
    ("vqa", "vqa", "test", ("overall", "submission_file")),
    ("retrieval_flickr", "flickr_retrieval", "test", ("txt_r1", "img_r1")),
    ("grounding", "refcoco", "testA", ("acc@0.5",)),
    ("nlvr2", "nlvr2", "dev", ("accuracy",)),
    ("snli_ve", "snli_ve", "test", ("accuracy",)),
]


@pytest.mark.parametrize("task,dataset,split,keys", EVALS, ids=[e[0] for e in EVALS])
def test_real_schema_preprocess_then_evaluate(raw, data, checkpoints, tmp_path, capsys, task, dataset, split, keys):
    from mplug.task_registry import get_task

    _preprocess(raw, data, dataset, capsys)
    out = tmp_path / task / split / "metrics.json"
    args = ["evaluate", task, "--checkpoint", str(checkpoints(get_task(task).model_task)), "--data", str(data),
            "--split", split, "--out", str(out), "--model", "mplug_tiny", "--device", "cpu", "--batch-size", "2",
            "--ci-resamples", "20"]
    rc = main(args + (["--frames", "4"] if task.startswith("video") else []))
    assert rc == 0, capsys.readouterr().err[-3000:]
    res = json.loads(out.read_text())
    assert res["task"] == task and res["split"] == split and set(keys) <= set(res["metrics"])
    assert res["provenance"]["size"] == len(_records(data, dataset, split))
    assert len(json.loads((out.parent / "metrics.predictions.json").read_text())) == res["provenance"]["size"]
    if task == "vqa":  # EvalAI: one file answering every test2015 question (test-dev is a subset)
        sub = json.loads(Path(res["metrics"]["submission_file"]).read_text())
        assert [s["question_id"] for s in sub] == [1000, 1001, 14000] and res["metrics"]["overall"] is None
