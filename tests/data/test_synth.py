"""The synthetic world: determinism, coverage of every task, honest baselines, speed."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from mplug.data import formats, synth, world
from mplug.errors import DataError
from mplug.utils.io import sha256_file


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_byte_identical_and_fast(synth_world, tmp_path):
    root, _ = synth_world
    t0 = time.perf_counter()
    synth.generate(tmp_path / "again", seed=0, scale="tiny", progress=False)
    assert time.perf_counter() - t0 < 60
    a, b = _hashes(root), _hashes(tmp_path / "again")
    assert len(a) > 1000 and a == b


def test_different_seed_differs(synth_world, tmp_path):
    root, _ = synth_world
    synth.generate(tmp_path / "s1", seed=1, scale="tiny", progress=False)
    a, b = _hashes(root), _hashes(tmp_path / "s1")
    assert a.keys() != b.keys() or a["vqa/train.jsonl"] != b["vqa/train.jsonl"]
    assert a["vocab.txt"] == b["vocab.txt"]  # the vocabulary depends on the grammar, not the seed


def test_manifest_covers_every_dataset_with_counts(synth_world):
    root, manifest = synth_world
    on_disk = json.loads((root / "manifest.json").read_text())
    assert "_elapsed_s" not in on_disk  # no timing in files: they must be byte-identical
    assert set(on_disk["datasets"]) == set(formats.DATASETS)
    for name, d in on_disk["datasets"].items():
        spec = formats.DATASETS[name]
        assert tuple(d["splits"]) == spec.splits
        texts = {}
        for split, info in d["splits"].items():
            recs = formats.read_records(root / info["file"], spec.schema)
            assert len(recs) == info["records"] > 0
            assert sha256_file(root / info["file"]) == info["sha256"]
            texts[split] = sum(len(r["captions"]) if "captions" in r else 1 for r in recs)
        stats = formats.read_stats(root / name)
        assert stats["splits"] == {k: v["records"] for k, v in d["splits"].items()}
        assert stats["split_texts"] == texts
        assert stats["images_obtained"] == d["images"] > 0
        assert "chance" in d and "baselines" in d


def test_every_record_points_at_existing_files(synth_world):
    root, manifest = synth_world
    for name, d in manifest["datasets"].items():
        for info in d["splits"].values():
            for rec in formats.read_records(root / info["file"], d["schema"]):
                for key in ("image", "image_left", "image_right", "video"):
                    if key in rec:
                        assert (root / name / rec[key]).exists(), (name, rec[key])
    shards = (root / "pretrain_14m" / "shards.txt").read_text().split()
    assert len(shards) == 2 and all((root / "pretrain_14m" / s).is_file() for s in shards)


def test_baselines_are_honest_and_ordered(synth_world):
    _, m = synth_world
    d = m["datasets"]
    vqa = d["vqa"]["baselines"]["val"]
    # an image-blind question prior beats uniform chance here; the check must know that
    assert d["vqa"]["chance"]["vqa_acc"] < vqa["majority_acc"] < vqa["blind_acc"] <= 100
    assert vqa["oracle_acc"] >= vqa["colour_only_acc"]
    for split in ("val", "test"):
        r = d["coco_retrieval"]
        assert r["baselines"][split]["colour_only_txt_r1"] > r["chance"][split]["txt_r1"]
    g = d["refcoco"]
    assert 0 < g["chance"]["val"]["acc@0.5"] < g["baselines"]["val"]["colour_only_acc@0.5"] <= 100
    assert d["snli_ve"]["baselines"]["dev"]["blind_acc"] > d["snli_ve"]["chance"]["acc"]
    assert set(d["nlvr2"]["baselines"]) == {"dev", "test_p"}


def test_nocaps_domains_and_held_out_combinations(synth_world):
    root, _ = synth_world
    held = [f"{c} {s}" for c, s in world.HELD_OUT]
    for split in ("train", "val", "test"):
        for rec in formats.read_records(root / "coco_caption" / f"{split}.jsonl", "caption"):
            assert not any(h in cap for cap in rec["captions"] for h in held)
    recs = formats.read_records(root / "nocaps" / "val.jsonl", "nocaps")
    assert {r["domain"] for r in recs} == {"in", "near", "out"}
    for r in recs:
        mentions = any(h in r["captions"][0] for h in held)
        assert mentions == (r["domain"] != "in") or r["domain"] == "near"


def test_vqa_has_ten_answers_types_and_vg(synth_world):
    root, _ = synth_world
    recs = formats.read_records(root / "vqa" / "train.jsonl", "vqa")
    assert all(len(r["answers"]) == 10 for r in recs)
    assert {r["answer_type"] for r in recs} == {"yes/no", "number", "other"}
    assert any(len(set(r["answers"])) > 1 for r in recs)  # annotator disagreement
    vg = formats.read_records(root / "vqa" / "vg_qa.jsonl", "vqa")
    assert vg and all(r["dataset"] == "vg" for r in vg)
    answers = formats.read_answer_list(root / "vqa" / "answer_list.json")
    assert {"yes", "no", "red", "circle", "2"} <= set(answers)


def test_all_text_tokenises_without_unk(synth_world, tokenizer):
    root, m = synth_world
    texts = []
    for d in m["datasets"].values():
        for info in d["splits"].values():
            for line in (root / info["file"]).read_text().splitlines()[:50]:
                rec = json.loads(line)
                for k in ("caption", "question", "expression", "statement", "hypothesis", "answer"):
                    if k in rec:
                        texts.append(rec[k])
                texts += rec.get("captions", []) + rec.get("answers", [])
    assert len(texts) > 500
    for t in texts:
        assert tokenizer.unk_token not in tokenizer.tokenize(t), t


def test_refuses_to_replace_a_foreign_folder(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "precious.txt").write_text("x")
    with pytest.raises(DataError, match="refusing"):
        synth.generate(tmp_path / "mine", progress=False)
    assert (tmp_path / "mine" / "precious.txt").exists()


def test_cli_synth_and_missing_manifest(tmp_path, capsys):
    from mplug.cli import main

    with pytest.raises(DataError, match="mplug data synth --out"):
        synth.read_manifest(tmp_path)
    assert main(["data", "synth", "--out", str(tmp_path / "w"), "--quiet"]) == 0
    assert "wrote 16 datasets" in capsys.readouterr().out
    assert synth.read_manifest(tmp_path / "w")["generator"] == synth.GENERATOR


def test_nlvr2_labels_balanced_so_majority_is_chance(synth_world):
    """A constant answer must not beat the 50% chance a learning check compares against."""
    root, m = synth_world
    d = m["datasets"]["nlvr2"]
    for split in ("train", "dev", "test_p"):
        labels = [r["label"] for r in formats.read_records(root / "nlvr2" / f"{split}.jsonl", "nlvr2")]
        assert abs(2 * sum(labels) - len(labels)) <= 1, (split, sum(labels), len(labels))
    for split in ("dev", "test_p"):
        assert d["baselines"][split]["majority_acc"] == d["chance"]["acc"] == 50.0
