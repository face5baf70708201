"""Item 6: unsafe, truncated and wrong-model checkpoints, through the user-facing commands.

A pickle that would run code must be refused (weights_only) by every command that reads a
checkpoint, with a message naming the file; the code must never run (a marker file proves it).
A truncated file is a CheckpointError naming it, not a traceback from deep inside torch. A
checkpoint for another model names the mismatched keys.
"""
from __future__ import annotations

import pytest

from _helpers import TINY, assert_user_error, mplug


def _evaluate(ckpt, world, out, *extra):
    return mplug("evaluate", "vqa", "--model", TINY, "--checkpoint", ckpt, "--data", world,
                 "--split", "val", "--out", out, "--limit", "2", "--beam", "1", "--max-length", "2",
                 *extra)


def test_convert_refuses_code_running_pickle(evil_ckpt, tmp_path):
    ckpt, marker = evil_ckpt
    out = tmp_path / "out.safetensors"
    res = mplug("convert", "--model", TINY, ckpt, out)
    assert_user_error(res, str(ckpt), "refused")
    assert not marker.exists(), "the pickle's code ran"
    assert not out.exists()


def test_evaluate_refuses_code_running_pickle(evil_ckpt, world, tmp_path):
    ckpt, marker = evil_ckpt
    out = tmp_path / "m.json"
    assert_user_error(_evaluate(ckpt, world, out), str(ckpt), "refused")
    assert not marker.exists(), "the pickle's code ran"
    assert not out.exists() and not list(tmp_path.glob("m.*"))


@pytest.mark.parametrize("kind", ["safetensors", "pth"])
def test_truncated_checkpoint_is_a_named_error(kind, tiny_ckpt, world, tmp_path):
    src = tiny_ckpt["vqa" if kind == "safetensors" else "vqa_pth"]
    cut = tmp_path / src.name
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    err = assert_user_error(_evaluate(cut, world, tmp_path / "m.json"), str(cut))
    assert "truncated" in err or "corrupt" in err
    assert not (tmp_path / "m.json").exists()


def test_truncated_checkpoint_through_convert(tiny_ckpt, tmp_path):
    src = tiny_ckpt["vqa_pth"]
    cut = tmp_path / "cut.pth"
    cut.write_bytes(src.read_bytes()[:1000])
    res = mplug("convert", "--model", TINY, cut, tmp_path / "o.safetensors")
    assert_user_error(res, str(cut))
    assert not (tmp_path / "o.safetensors").exists()


def test_wrong_model_checkpoint_names_mismatched_keys(tiny_ckpt, world, tmp_path):
    """mplug_tiny weights into the mplug_smoke model: the shapes differ; the message lists keys."""
    res = mplug("evaluate", "vqa", "--model", "mplug_smoke", "--checkpoint", tiny_ckpt["vqa"],
                "--data", world, "--split", "val", "--out", tmp_path / "m.json", "--limit", "2")
    err = assert_user_error(res, str(tiny_ckpt["vqa"]), "shape mismatch")
    assert "visual_encoder." in err and "checkpoint (" in err and "vs model (" in err
    assert not (tmp_path / "m.json").exists()


def test_checkpoint_missing_needed_weights_names_them(tiny_ckpt, world, tmp_path):
    """Weights inference needs are missing: named, never silently left at random init."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(tiny_ckpt["vqa"]))
    dropped = sorted(k for k in state if k.startswith("text_decoder."))[:3]
    assert dropped
    for k in dropped:
        del state[k]
    partial = tmp_path / "partial.safetensors"
    save_file(state, str(partial))
    err = assert_user_error(_evaluate(partial, world, tmp_path / "m.json"), str(partial), "missing")
    assert dropped[0] in err
