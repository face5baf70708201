"""Item 3: bad data met by `mplug evaluate` (run in-process through `mplug.cli.main`, the code path
of the CLI without a new interpreter per case).

The evaluator's policy is to stop with an error naming the file (and line), never to skip: a
skipped test example would silently change the denominator of a published metric. So each case
checks: non-zero exit, a message naming the file (and line), no traceback, and no metrics JSON
or predictions left behind. The training-side policy (skip, count, replace) is covered by
tests/data/test_bad_input.py. A video with fewer frames than requested is valid (frames repeat,
as the official uniform sampler does) and must evaluate every question.
"""
from __future__ import annotations

import json

import pytest
import torch

from _helpers import TINY
from mplug.cli import main
from mplug.data import formats

torch.set_num_threads(1)
FAST = ["--model", TINY, "--batch-size", "4", "--beam", "1", "--max-length", "2"]


def _evaluate(task, data, split, out, *extra):
    return main(["evaluate", task, "--data", str(data), "--split", split, "--out", str(out), *extra])


def _lines(path):
    return path.read_text(encoding="utf-8").splitlines()


def _assert_failed_cleanly(rc, capsys, out, *needles):
    err = capsys.readouterr().err
    assert rc != 0, err
    assert "Traceback" not in err, err
    for needle in needles:
        assert needle in err, f"{needle!r} not in: {err[-1500:]}"
    assert not list(out.parent.glob(out.stem + "*")), "a partial result was left behind"
    return err


def _jpeg_bytes() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(buf, "JPEG")
    return buf.getvalue()


BREAKS = {
    "corrupt_jpeg": lambda p: p.write_bytes(_jpeg_bytes()[:300]),  # header ok, data cut
    "zero_byte": lambda p: p.write_bytes(b""),
    "missing": lambda p: p.unlink(),
}


@pytest.mark.parametrize("kind", sorted(BREAKS))
def test_bad_image_in_evaluation_is_a_named_error(kind, world_copy, tmp_path, capsys):
    root = world_copy("vqa")
    rec = formats.read_records(root / "val.jsonl", "vqa")[2]
    image = root / rec["image"]
    BREAKS[kind](image)
    out = tmp_path / "out" / "m.json"
    rc = _evaluate("vqa", root.parent, "val", out, *FAST, "--limit", "4")
    _assert_failed_cleanly(rc, capsys, out, image.name)


def test_malformed_jsonl_line_names_file_and_line(world_copy, tmp_path, capsys):
    root = world_copy("vqa")
    lines = _lines(root / "val.jsonl")
    lines[2] = lines[2][: len(lines[2]) // 2]  # a line cut mid-record
    (root / "val.jsonl").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out" / "m.json"
    rc = _evaluate("vqa", root.parent, "val", out, *FAST)
    _assert_failed_cleanly(rc, capsys, out, "val.jsonl:3", "invalid JSON")


def test_box_outside_the_image_names_file_and_line(world_copy, tmp_path, capsys):
    root = world_copy("refcoco")
    lines = _lines(root / "val.jsonl")
    rec = json.loads(lines[4])
    rec["box"] = [rec["width"] - 5.0, 10.0, 20.0, 20.0]  # extends 15 px past the right edge
    lines[4] = json.dumps(rec)
    (root / "val.jsonl").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out" / "m.json"
    rc = _evaluate("grounding", root.parent, "val", out, "--model", TINY, "--dataset", "refcoco")
    _assert_failed_cleanly(rc, capsys, out, "val.jsonl:5", "box", "past the image")


def _find(tree, key):
    """Every value stored under `key` anywhere in a nested dict/list."""
    if isinstance(tree, dict):
        return [v for k, v in tree.items() if k == key] + [x for v in tree.values() for x in _find(v, key)]
    if isinstance(tree, list):
        return [x for v in tree for x in _find(v, key)]
    return []


def test_unreadable_video_frame_is_an_error_or_reported(world_copy, tmp_path, capsys):
    """Either the evaluation stops naming the frame, or it substitutes the frame AND the metrics
    JSON says how many frames were substituted; never a silent substitution."""
    root = world_copy("msrvtt_qa")
    rec = formats.read_records(root / "test.jsonl", "video_qa")[0]
    frames = sorted((root / rec["video"]).iterdir())
    frames[0].write_bytes(b"not an image")
    out = tmp_path / "out" / "m.json"
    rc = _evaluate("video_qa_msrvtt", root.parent, "test", out, "--model", TINY, "--frames", "4",
                   "--limit", "2", "--k-test", "4")
    if rc != 0:
        _assert_failed_cleanly(rc, capsys, out, frames[0].name)
        return
    result = json.loads(out.read_text())
    counts = _find(result, "bad_frames")
    assert counts and sum(counts) >= 1, f"a frame was substituted silently: {result['metrics']}"


def test_video_with_fewer_frames_evaluates_every_question(world_copy, tmp_path, capsys):
    root = world_copy("msrvtt_qa")
    recs = formats.read_records(root / "test.jsonl", "video_qa")
    frames = sorted((root / recs[0]["video"]).iterdir())
    for f in frames[2:]:  # a truncated video: 2 frames where 4 are sampled
        f.unlink()
    out = tmp_path / "out" / "m.json"
    limit = 3
    rc = _evaluate("video_qa_msrvtt", root.parent, "test", out, "--model", TINY, "--frames", "4",
                   "--limit", str(limit), "--k-test", "4")
    assert rc == 0, capsys.readouterr().err[-2000:]
    result = json.loads(out.read_text())
    preds = json.loads(out.with_name("m.predictions.json").read_text())
    assert result["provenance"]["size"] == limit
    assert sorted(p["question_id"] for p in preds) == sorted(r["question_id"] for r in recs[:limit])


def test_training_skips_bad_images_and_reports_the_count(world_copy, tmp_path):
    """Training's policy is skip-and-count: the run finishes and summary.json says how many."""
    from _helpers import REPO, mplug

    root = world_copy("snli_ve")
    recs = formats.read_records(root / "train.jsonl", "snli_ve")
    images = sorted({r["image"] for r in recs})
    for i, rel in enumerate(images[::5]):  # a fifth of the images: corrupt, empty or gone
        BREAKS[sorted(BREAKS)[i % 3]](root / rel)
    out = tmp_path / "run"
    res = mplug("train", "finetune", "snli_ve", "--config", REPO / "config/smoke.yaml", "--model",
                "mplug_smoke", "--data", root.parent, "--out", out, "--max-steps", "3")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "skipping bad input" in res.stderr
    summary = json.loads((out / "summary.json").read_text())
    counts = [v for k in ("bad_images", "bad_inputs", "skipped_bad") for v in _find(summary, k)]
    assert counts and sum(counts) > 0, f"summary.json does not report skipped inputs: {summary.keys()}"
