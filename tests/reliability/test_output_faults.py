"""Issue 18, cases 9 and 10: bytes that are not UTF-8, full and read-only output disks, and
`mplug data synth` runs that were killed or meet files they did not write. In-process through
`mplug.cli.main` (the CLI's code path); disks refuse writes through `_helpers.disk_fault`.
"""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import time

import pytest

from _helpers import PY, REPO, TINY, cli_env, disk_fault, failed_without_traceback, snli_raw
from mplug.cli import main
from mplug.data import formats


# ------------------------------------------------------------------- bytes that are not UTF-8

def test_config_with_non_utf8_bytes_names_file_line_and_offset(world, tmp_path, capsys):
    text = (REPO / "config" / "smoke.yaml").read_bytes()
    at = text.index(b"run: smoke")
    path = tmp_path / "latin1.yaml"
    path.write_bytes(text[:at] + b"# r\xe9sum\xe9 of the run\n" + text[at:])  # a Latin-1 comment
    line = text[:at].count(b"\n") + 1
    rc = main(["train", "finetune", "snli_ve", "--config", str(path), "--model", "mplug_smoke",
               "--data", str(world), "--out", str(tmp_path / "run")])
    failed_without_traceback(rc, capsys, str(path), f"line {line}", f"byte offset {at + 3}", "not UTF-8", "0xe9")


def test_jsonl_with_non_utf8_bytes_names_file_line_and_offset(world_copy, tmp_path, capsys):
    root = world_copy("vqa")
    raw = (root / "val.jsonl").read_bytes().split(b"\n")
    raw[2] = raw[2].replace(b'"question":"', b'"question":"\xff', 1)
    (root / "val.jsonl").write_bytes(b"\n".join(raw))
    offset = len(raw[0]) + len(raw[1]) + 2 + raw[2].index(b"\xff")
    out = tmp_path / "out" / "m.json"
    rc = main(["evaluate", "vqa", "--data", str(root.parent), "--split", "val", "--out", str(out),
               "--model", TINY, "--limit", "4", "--beam", "1", "--max-length", "2"])
    failed_without_traceback(rc, capsys, "val.jsonl:3", f"byte offset {offset}", "not UTF-8")
    assert not out.exists()


def test_preprocess_input_with_non_utf8_bytes_names_file_line_and_offset(tmp_path, capsys):
    res = tmp_path / "resources"
    snli_raw(res)
    bad = res / "snli_ve" / "snli_ve_dev.jsonl"
    bad.write_bytes(b"\n" + bad.read_bytes().replace(b"hypothesis", b"hyp\xc3othesis"))
    rc = main(["data", "preprocess", "snli_ve", "--src", str(res), "--out", str(tmp_path / "data"),
               "--no-progress"])
    failed_without_traceback(rc, capsys, f"{bad}:2", "byte offset", "not UTF-8")
    assert not (tmp_path / "data" / "snli_ve" / "stats.json").exists()


# ------------------------------------------------------------ full and read-only output disks

@pytest.mark.parametrize("code", ["ENOSPC", "EROFS"])
def test_evaluate_checks_out_is_writable_before_evaluating(code, tiny_ckpt, world, tmp_path, monkeypatch,
                                                          capsys):
    import mplug.eval.run

    def evaluate(*args, **kw):
        raise AssertionError("evaluated before checking that --out can be written")

    monkeypatch.setattr(mplug.eval.run, "evaluate", evaluate)
    disk = tmp_path / "disk"
    disk_fault(monkeypatch, disk, getattr(errno, code))
    rc = main(["evaluate", "vqa", "--model", TINY, "--checkpoint", str(tiny_ckpt["vqa"]), "--data",
               str(world), "--split", "val", "--out", str(disk / "eval" / "m.json"), "--limit", "2"])
    failed_without_traceback(rc, capsys, str(disk / "eval"), code, "cannot write")
    assert rc == 74


@pytest.mark.parametrize("code", ["ENOSPC", "EROFS"])
def test_synth_on_a_full_or_read_only_disk(code, tmp_path, monkeypatch, capsys):
    """The disk refuses writes once synth is under way (from the `vqa` folder on): a named
    error, the staging folder removed, no world left half written."""
    out = tmp_path / "w"
    stage = tmp_path / f".w.synth-tmp-{os.getpid()}"
    disk_fault(monkeypatch, stage / "vqa", getattr(errno, code))
    rc = main(["data", "synth", "--out", str(out), "--quiet"])
    failed_without_traceback(rc, capsys, str(stage / "vqa"), code)
    assert rc == 74
    assert not out.exists() and not stage.exists()


# --------------------------------------------------------------------------------- synth runs

def test_killed_synth_staging_is_removed_by_the_rerun(tmp_path, capsys):
    out = tmp_path / "w"
    proc = subprocess.Popen([PY, "-m", "mplug.cli", "data", "synth", "--out", str(out), "--quiet"],
                            env=cli_env(), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stage = tmp_path / f".w.synth-tmp-{proc.pid}"
    deadline = time.time() + 120
    while not (stage / "vqa").exists():  # a few datasets written
        assert proc.poll() is None, "synth finished before it could be killed"
        assert time.time() < deadline
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert stage.is_dir() and not out.exists()
    assert main(["data", "synth", "--out", str(out), "--quiet"]) == 0
    assert not stage.exists(), "the killed run's staging folder is still there"
    assert (out / "manifest.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w"]


def test_synth_never_deletes_files_it_did_not_write(tmp_path, capsys):
    out = tmp_path / "w"
    assert main(["data", "synth", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    mine = [out / "notes.txt", out / "vqa" / "my_predictions.json"]
    for path in mine:
        path.write_text("the user's own work\n")
    rc = main(["data", "synth", "--out", str(out), "--quiet"])
    failed_without_traceback(rc, capsys, "notes.txt", "vqa/my_predictions.json", "did not write", "nothing was changed")
    assert all(p.read_text() == "the user's own work\n" for p in mine)
    assert formats.read_records(out / "vqa" / "val.jsonl", "vqa")  # the old world is whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w"]  # no staging folder left


# ------------------------------------------------------------------- what others may read

@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_atomic_writes_get_the_modes_the_umask_gives(tmp_path, umask):
    """Results on a shared cluster folder are readable by the group, as any file the user's
    umask allows (mkstemp alone gives 0600)."""
    import torch

    from mplug.models.loading import save_state_dict
    from mplug.utils.io import atomic_write_json

    old = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "metrics.json", {"a": 1})
        # safetensors creates its file anew, 0600 whatever the umask (found on trained weights)
        save_state_dict({"w": torch.zeros(2)}, tmp_path / "model.safetensors")
    finally:
        os.umask(old)
    for name in ("metrics.json", "model.safetensors"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name
