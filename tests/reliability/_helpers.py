"""Helpers of the reliability suite: run `mplug` as a user does, check user-facing errors.

(Not in conftest.py: several test folders have a conftest.py, so `from conftest import` would be
ambiguous.)
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable
TINY = "mplug_tiny"


def cli_env(**extra: str) -> dict:
    env = dict(os.environ)
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               MPLUG_LOG_LEVEL="INFO", PYTHONUNBUFFERED="1", **extra)
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)  # each subprocess is its own single-process job
    return env


def mplug(*args: str, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `mplug ARGS` like a user (python -m mplug.cli from this checkout)."""
    return subprocess.run([PY, "-m", "mplug.cli", *map(str, args)], env=cli_env(),
                          capture_output=True, text=True, timeout=timeout, cwd=cwd or REPO)


def start_mplug(*args: str, cwd: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen([PY, "-m", "mplug.cli", *map(str, args)], env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=cwd or REPO)


def assert_user_error(res: subprocess.CompletedProcess, *needles: str) -> str:
    """A non-zero exit with a message (no traceback) containing every needle; returns stderr."""
    err = res.stderr + res.stdout
    assert res.returncode != 0, f"expected a failure, got rc 0:\n{err[-2000:]}"
    assert "Traceback" not in err, f"a traceback instead of a message:\n{err[-3000:]}"
    for needle in needles:
        assert needle in err, f"{needle!r} not in the message:\n{err[-2000:]}"
    return err





def snli_raw(root: Path) -> None:
    """A tiny raw SNLI-VE layout under resources folder `root`: snli_ve/snli_ve_<split>.jsonl (one
    pair each, the official generator's format) and the flickr30k images they name."""
    import json

    from PIL import Image

    images = root / "flickr30k" / "flickr30k-images"
    images.mkdir(parents=True)
    (root / "snli_ve").mkdir()
    for n, split in enumerate(("train", "dev", "test")):
        Image.new("RGB", (32, 32), (40 * n, 90, 200)).save(images / f"{100 + n}.jpg")
        row = {"Flickr30K_ID": str(100 + n), "sentence2": f"a hypothesis {n}",
               "gold_label": "entailment", "pairID": f"{split}-0"}
        (root / "snli_ve" / f"snli_ve_{split}.jsonl").write_text(json.dumps(row) + "\n")


def failed_without_traceback(rc: int, capsys, *needles: str) -> str:
    """Assert a CLI call failed as a user's mistake should: non-zero, no traceback, and a
    stderr holding every needle (the file, key or value named). Returns stderr."""
    err = capsys.readouterr().err
    assert rc != 0, err[-2000:]
    assert "Traceback" not in err, err[-3000:]
    for needle in needles:
        assert needle in err, f"{needle!r} not in: {err[-2000:]}"
    return err


def disk_fault(monkeypatch, root: Path, code: int) -> None:
    """From now on (until monkeypatch undoes it) the disk under `root` refuses every write with
    errno `code` (EROFS: mounted read-only; ENOSPC: full), in this process. The fault sits at the
    system-call boundary Python code goes through (os.open, io.open, os.mkdir), so every writer
    of the library meets it where a real disk would refuse; reads and other folders still work."""
    import builtins
    import errno
    import io

    root = Path(root).resolve()
    real_open, real_os_open, real_mkdir = io.open, os.open, os.mkdir

    def under(p) -> bool:
        try:
            path = Path(os.path.abspath(os.fsdecode(p)))
        except TypeError:  # a file descriptor
            return False
        return path == root or root in path.parents

    def fail(p):
        raise OSError(code, os.strerror(code), os.fsdecode(p))

    def fault_open(file, mode="r", *args, **kw):
        if isinstance(file, (str, bytes, os.PathLike)) and under(file) and set(mode) & set("wax+"):
            fail(file)
        return real_open(file, mode, *args, **kw)

    def fault_os_open(path, flags, *args, **kw):
        if under(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            fail(path)
        return real_os_open(path, flags, *args, **kw)

    def fault_mkdir(path, *args, **kw):
        if under(path):
            if os.path.isdir(path):  # the kernel answers EEXIST before EROFS
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fsdecode(path))
            fail(path)
        return real_mkdir(path, *args, **kw)

    monkeypatch.setattr(builtins, "open", fault_open)
    monkeypatch.setattr(io, "open", fault_open)
    monkeypatch.setattr(os, "open", fault_os_open)
    monkeypatch.setattr(os, "mkdir", fault_mkdir)
