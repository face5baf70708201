"""Issue 18, cases 2, 3 and 10 (downloads): against the local server on 127.0.0.1
(tests/data/fixtures_download/fake_http.py), through `mplug data download` in-process.

- a server that ignores Range makes every try restart at byte 0: that is no progress, so the
  retries run out (a bounded number of requests), and attempts and total time are bounded even
  when every try brings new bytes;
- an HTML error page (200, text/html) or a size the source does not declare is refused before a
  byte is saved; no checksum is recorded from it, and the rerun after the fault is fixed works;
- a full disk while writing is reported as such (ENOSPC), not as a dropped connection;
- a 206 whose Content-Range starts elsewhere does not leave a .part that fails every rerun.
"""
from __future__ import annotations

import errno
import hashlib
import os

import pytest

from mplug.cli import main
from mplug.data import download, sources

FAST = ["--no-progress", "--timeout", "2", "--backoff", "0.01"]


def _source(monkeypatch, name, *specs):
    monkeypatch.setitem(sources.SOURCES, name, sources.Source(name, "direct", "test", "CC0", specs))


def _cli(name, dest, *extra):
    return main(["data", "download", name, "--dest", str(dest), *FAST, *extra])


def _err(capsys):
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return err


def test_server_ignoring_range_is_not_progress(server, tmp_path, monkeypatch, capsys):
    _source(monkeypatch, "norange", sources.FileSpec("n.bin", server.url("norange-drop", "n.bin")))
    assert _cli("norange", tmp_path, "--retries", "1") != 0
    err = _err(capsys)
    # the first try got the first half (progress); the one retry restarted at byte 0 (none)
    assert server.hits["/norange-drop/n.bin"] == 2, server.hits
    assert "gave up after 1 retries without progress" in err and "n.bin" in err, err
    assert not (tmp_path / "norange" / "download.json").exists()


def test_attempts_are_bounded_even_with_progress(server, tmp_path, monkeypatch, capsys):
    server.trickle = 1000  # every try brings 1000 new bytes, then the connection drops
    _source(monkeypatch, "trickle", sources.FileSpec("t.bin", server.url("trickle", "t.bin")))
    assert _cli("trickle", tmp_path, "--retries", "2", "--max-attempts", "4") != 0
    err = _err(capsys)
    assert server.hits["/trickle/t.bin"] == 4 and "gave up after 4 attempts" in err, err
    assert (tmp_path / "trickle" / "t.bin.part").stat().st_size == 4000  # kept for the rerun


def test_total_time_is_bounded(server, tmp_path, monkeypatch, capsys):
    _source(monkeypatch, "slowtrickle", sources.FileSpec("t.bin", server.url("trickle", "t.bin")))
    rc = main(["data", "download", "slowtrickle", "--dest", str(tmp_path), "--no-progress",
               "--backoff", "0.2", "--max-time", "0.5"])
    assert rc != 0
    err = _err(capsys)
    assert "gave up after 0.5 s" in err, err
    assert 2 <= server.hits["/trickle/t.bin"] <= 4, server.hits


def test_html_error_page_is_refused_and_never_hashed(server, tmp_path, monkeypatch, capsys):
    _source(monkeypatch, "htmlpage", sources.FileSpec("d.zip", server.url("html", "d.zip")))
    root = tmp_path / "htmlpage"
    assert _cli("htmlpage", tmp_path, "--retries", "1") != 0
    err = _err(capsys)
    assert "HTML page" in err and "text/html" in err and "d.zip" in err, err
    assert sorted(p.name for p in root.iterdir()) == [], "the page was saved or hashed"
    server.html = False  # the host is back: the same command now gets the real file
    assert _cli("htmlpage", tmp_path) == 0
    assert (root / "d.zip").read_bytes() == server.payload
    recorded = (root / "d.zip.sha256").read_text().split()[0]
    assert recorded == hashlib.sha256(server.payload).hexdigest()
    assert (root / "download.json").is_file()


def test_size_other_than_declared_is_refused_and_never_hashed(server, tmp_path, monkeypatch, capsys):
    n = len(server.payload)
    _source(monkeypatch, "sized", sources.FileSpec("s.bin", server.url("ok", "s.bin"), size=n + 1))
    root = tmp_path / "sized"
    assert _cli("sized", tmp_path) != 0
    err = _err(capsys)
    assert f"announces {n:,} bytes but the source declares {n + 1:,}" in err, err
    assert not list(root.glob("s.bin*")) and not (root / "download.json").exists()
    _source(monkeypatch, "sized", sources.FileSpec("s.bin", server.url("ok", "s.bin"), size=n))
    assert _cli("sized", tmp_path) == 0 and (root / "s.bin").read_bytes() == server.payload


class _FillsUp:
    """A file whose disk fills after `room` bytes: the rest of a write raises ENOSPC."""

    def __init__(self, fh, room: int):
        self.fh, self.room = fh, room

    def write(self, data: bytes) -> int:
        if len(data) > self.room:
            self.fh.write(data[: self.room])
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.fh.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()


def test_full_disk_is_reported_as_such_not_as_a_dropped_link(server, tmp_path, monkeypatch, capsys):
    real_open = open

    def full_open(path, mode="r", *args, **kw):
        fh = real_open(path, mode, *args, **kw)
        return _FillsUp(fh, 20_000) if str(path).endswith(".part") and mode[0] in "aw" else fh

    monkeypatch.setattr(download, "open", full_open, raising=False)
    _source(monkeypatch, "full", sources.FileSpec("f.bin", server.url("ok", "f.bin")))
    assert _cli("full", tmp_path, "--retries", "3") != 0
    err = _err(capsys)
    assert "No space left on device" in err and "ENOSPC" in err and "f.bin.part" in err, err
    assert "dropped" not in err
    assert server.hits["/ok/f.bin"] == 1  # retrying cannot free the disk
    assert (tmp_path / "full" / "f.bin.part").stat().st_size == 20_000  # kept for the rerun


def test_206_with_wrong_content_range_does_not_poison_the_part(server, tmp_path, monkeypatch, capsys):
    root = tmp_path / "badrange"
    root.mkdir()
    (root / "b.bin.part").write_bytes(server.payload[:1000])  # left by an earlier, killed run
    _source(monkeypatch, "badrange", sources.FileSpec("b.bin", server.url("badrange", "b.bin")))
    assert _cli("badrange", tmp_path, "--retries", "2") == 0, _err(capsys)
    assert (root / "b.bin").read_bytes() == server.payload and not (root / "b.bin.part").exists()
    assert server.ranges("/badrange/b.bin") == ["bytes=1000-", None]


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
