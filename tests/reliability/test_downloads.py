"""Item 5: whole-dataset downloads through `mplug data download` against a misbehaving server on
127.0.0.1 (tests/data/fixtures_download/fake_http.py). tests/data/test_download*.py cover the
single-file `download()` cases; here: several files per dataset, the CLI's message and exit code,
`download.json` (the rule's output) never written for an incomplete set, no partial file under a
final name, a SIGKILLed download process, and reruns that resume with a Range request.
"""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time

import pytest

from _helpers import PY, REPO, cli_env
from mplug.cli import main
from mplug.data import sources

FAST = ["--no-progress", "--timeout", "0.5", "--backoff", "0.01", "--retries", "2"]


def _source(monkeypatch, name, *specs):
    monkeypatch.setitem(sources.SOURCES, name, sources.Source(name, "direct", "test", "CC0", specs))


def _cli(name, dest, *extra):
    return main(["data", "download", name, "--dest", str(dest), *FAST, *extra])


def _final_files(root):
    """Files under a final name (not .part/.bad/.sha256 bookkeeping)."""
    return sorted(p.name for p in root.iterdir()
                  if p.is_file() and not p.name.endswith((".part", ".bad", ".sha256", ".lock")))


def test_dropped_file_fails_the_set_then_rerun_resumes_and_completes(server, tmp_path, monkeypatch,
                                                                      capsys):
    _source(monkeypatch, "twofiles", sources.FileSpec("a.bin", server.url("ok", "a.bin")),
            sources.FileSpec("b.bin", server.url("truncated", "b.bin")))
    assert _cli("twofiles", tmp_path) != 0
    err = capsys.readouterr().err
    assert "b.bin" in err and "gave up after 2 retries" in err and "rerun" in err
    assert "Traceback" not in err
    root = tmp_path / "twofiles"
    assert not (root / "download.json").exists()  # the rule's output: only for a complete set
    assert _final_files(root) == ["a.bin"]  # b.bin exists only as b.bin.part
    assert (root / "b.bin.part").stat().st_size == server.cut
    server.cut = len(server.payload)  # the link is fixed
    assert _cli("twofiles", tmp_path) == 0
    assert server.ranges("/truncated/b.bin")[-1] == f"bytes={len(server.payload) // 3}-"
    assert (root / "b.bin").read_bytes() == server.payload
    assert (root / "download.json").is_file() and not (root / "b.bin.part").exists()
    assert server.hits["/ok/a.bin"] == 1  # the complete file was verified, not fetched again


def test_wrong_checksum_is_quarantined_and_named(server, tmp_path, monkeypatch, capsys):
    _source(monkeypatch, "pinned", sources.FileSpec("c.bin", server.url("ok", "c.bin"),
                                                    sha256="0" * 64, checksum_source="test"))
    assert _cli("pinned", tmp_path) != 0
    err = capsys.readouterr().err
    assert "checksum mismatch" in err and "c.bin.bad" in err and "Traceback" not in err
    root = tmp_path / "pinned"
    assert _final_files(root) == [] and (root / "c.bin.bad").is_file()
    assert not (root / "download.json").exists()


def test_too_slow_server_retries_then_times_out(server, tmp_path, monkeypatch, capsys):
    _source(monkeypatch, "slow", sources.FileSpec("s.bin", server.url("slow", "s.bin")))
    assert _cli("slow", tmp_path) != 0
    err = capsys.readouterr().err
    assert "s.bin" in err and "gave up after 2 retries" in err and "Traceback" not in err
    assert server.hits["/slow/s.bin"] == 3  # the first try and 2 retries
    assert _final_files(tmp_path / "slow") == []


def test_404_in_a_set_names_the_url_and_writes_nothing_final(server, tmp_path, monkeypatch, capsys):
    _source(monkeypatch, "gone", sources.FileSpec("a.bin", server.url("ok", "a.bin")),
            sources.FileSpec("g.bin", server.url("missing", "g.bin")))
    assert _cli("gone", tmp_path) != 0
    err = capsys.readouterr().err
    assert "404" in err and "/missing/g.bin" in err and "Traceback" not in err
    assert server.hits["/missing/g.bin"] == 1  # a 404 is not retried
    assert not (tmp_path / "gone" / "download.json").exists()


_KILLED_CHILD = """
import sys
from mplug.cli import main
from mplug.data import sources
sources.SOURCES["killme"] = sources.Source("killme", "direct", "t", "CC0",
                                           (sources.FileSpec("k.bin", sys.argv[1]),))
sys.exit(main(["data", "download", "killme", "--dest", sys.argv[2], "--no-progress",
               "--timeout", "30"]))
"""


def test_sigkilled_download_leaves_only_a_part_and_rerun_resumes(server, tmp_path, monkeypatch):
    server.slow_s = 20  # the first response sends half the file, then stalls
    url = server.url("stall-once", "k.bin")
    proc = subprocess.Popen([PY, "-c", _KILLED_CHILD, url, str(tmp_path)], cwd=REPO, env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    part = tmp_path / "killme" / "k.bin.part"
    half = len(server.payload) // 2
    deadline = time.time() + 120
    while not (part.exists() and part.stat().st_size >= half):
        assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
        assert time.time() < deadline, "the download never got half the file"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    root = tmp_path / "killme"
    assert _final_files(root) == [] and not (root / "download.json").exists()
    server.slow_s = 0
    _source(monkeypatch, "killme", sources.FileSpec("k.bin", url))
    assert _cli("killme", tmp_path) == 0
    assert server.ranges("/stall-once/k.bin")[-1] == f"bytes={half}-"
    data = (root / "k.bin").read_bytes()
    assert hashlib.sha256(data).hexdigest() == hashlib.sha256(server.payload).hexdigest()
    assert (root / "k.bin.sha256").is_file() and (root / "download.json").is_file()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    """A proxy in the environment must not intercept 127.0.0.1."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
