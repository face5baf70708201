"""Whole-dataset downloads (`mplug data download`): extraction, registration, web-scale sets."""
from __future__ import annotations

import io
import json
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures_download"))
from fake_http import FakeServer  # noqa: E402

from mplug.cli import main  # noqa: E402
from mplug.data import archives, download as dl, sources, webshards  # noqa: E402
from mplug.errors import DataError, DownloadError  # noqa: E402

FAST = dict(backoff=0.01, timeout=0.5, progress=False)


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _tar(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture()
def server():
    with FakeServer(b"unused") as srv:
        yield srv


def _register(monkeypatch, src: sources.Source) -> None:
    monkeypatch.setitem(sources.SOURCES, src.name, src)


def test_direct_dataset_downloads_extracts_and_writes_manifest(server, tmp_path, monkeypatch):
    server.files["/files/ann.zip"] = _zip({"annotations/captions.json": b"{}", "annotations/x.json": b"[]"})
    server.files["/files/imgs.tar"] = _tar({"annotations/extra.txt": b"merged", "train/a.jpg": b"jpg"})
    server.files["/files/opt.json"] = b"optional"
    _register(monkeypatch, sources.Source("fake", "direct", "d", "CC0", (
        sources.FileSpec("ann.zip", f"{server.base}/files/ann.zip", extract=True),
        sources.FileSpec("imgs.tar", f"{server.base}/files/imgs.tar", extract=True),
        sources.FileSpec("opt.json", f"{server.base}/files/opt.json", optional=True))))
    manifest = dl.download_source("fake", tmp_path, **FAST)
    root = tmp_path / "fake"
    assert (root / "annotations/captions.json").read_bytes() == b"{}"
    assert (root / "annotations/extra.txt").read_bytes() == b"merged"  # two archives merge into one folder
    assert (root / "train/a.jpg").exists() and not (root / "opt.json").exists()
    assert json.loads((root / "download.json").read_text()) == manifest
    assert [f["name"] for f in manifest["files"]] == ["ann.zip", "imgs.tar"]
    assert all(len(f["sha256"]) == 64 and not f["pinned"] for f in manifest["files"])
    assert not list(root.glob(".*.extracting"))
    # rerun: nothing refetched, nothing re-extracted
    n = len(server.requests)
    (root / "train/a.jpg").write_bytes(b"user-edited")
    dl.download_source("fake", tmp_path, **FAST)
    assert len(server.requests) == n and (root / "train/a.jpg").read_bytes() == b"user-edited"


def test_interrupted_extraction_is_redone(tmp_path):
    arc = tmp_path / "a.zip"
    arc.write_bytes(_zip({"d/1.txt": b"one", "d/2.txt": b"two"}))
    (tmp_path / "d").mkdir()
    (tmp_path / "d/1.txt").write_bytes(b"half-written")  # left by a killed run: no marker
    assert not archives.is_extracted(arc)
    assert archives.extract(arc, progress=False) == ["d"]
    assert (tmp_path / "d/1.txt").read_bytes() == b"one" and archives.is_extracted(arc)


def test_unsafe_and_corrupt_archives_are_refused(tmp_path):
    evil = tmp_path / "evil.tar"
    evil.write_bytes(_tar({"../escape.txt": b"x"}))
    with pytest.raises(DataError, match="unsafe member"):
        archives.extract(evil, tmp_path / "out", progress=False)
    assert not (tmp_path / "escape.txt").exists()
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(DataError, match="junk.zip"):
        archives.extract(junk, progress=False)
    assert not archives.is_extracted(junk)


def _registration_source(server) -> sources.Source:
    server.files["/files/dev.json"] = b'{"sentence": "x"}\n'
    return sources.Source("fakereg", "registration", "d", "CC BY", (
        sources.FileSpec("dev.json", f"{server.base}/files/dev.json"),),
        manual=("images/dev",), instructions="Request at https://example.org/form.")


def test_registration_dataset_says_where_to_get_and_put_files(server, tmp_path, monkeypatch):
    _register(monkeypatch, _registration_source(server))
    with pytest.raises(dl.RegistrationRequiredError) as err:
        dl.download_source("fakereg", tmp_path, **FAST)
    msg = str(err.value)
    assert "https://example.org/form" in msg and str(tmp_path / "fakereg" / "images/dev") in msg
    assert (tmp_path / "fakereg/dev.json").exists()  # the public part was fetched anyway
    assert not (tmp_path / "fakereg/download.json").exists()  # not done
    (tmp_path / "fakereg/images/dev").mkdir(parents=True)
    with pytest.raises(dl.RegistrationRequiredError):  # an empty folder is not the images
        dl.download_source("fakereg", tmp_path, **FAST)
    (tmp_path / "fakereg/images/dev/dev-0-img0.png").write_bytes(b"png")
    assert dl.download_source("fakereg", tmp_path, **FAST)["manual"] == ["images/dev"]


def test_cli_download_and_list(server, tmp_path, monkeypatch, capsys):
    _register(monkeypatch, _registration_source(server))
    rc = main(["data", "download", "fakereg", "--dest", str(tmp_path), "--no-progress", "--timeout", "0.5"])
    assert rc == dl.RegistrationRequiredError.exit_code
    assert "cannot be downloaded automatically" in capsys.readouterr().err
    assert main(["data", "download", "--list"]) == 0
    out = capsys.readouterr().out
    assert "cc3m" in out and "webscale" in out and "registration" in out


def test_cli_404_is_an_error_not_a_traceback(server, tmp_path, monkeypatch, capsys):
    _register(monkeypatch, sources.Source("gone", "direct", "d", "CC0", (
        sources.FileSpec("x.json", f"{server.base}/files/nope.json"),)))
    assert main(["data", "download", "gone", "--dest", str(tmp_path), "--no-progress"]) != 0
    err = capsys.readouterr().err
    assert "HTTP 404" in err and "Traceback" not in err
    assert not (tmp_path / "gone/x.json").exists()


def _webscale_source(server, name="fakecc") -> sources.Source:
    server.files["/files/list.tsv"] = b"a dog\thttp://h/1.jpg\na cat\thttp://h/2.jpg\n"
    return sources.Source(name, "webscale", "d", "AS IS", (
        sources.FileSpec("list.tsv", f"{server.base}/files/list.tsv"),),
        webscale=sources.WebscaleSpec("list.tsv", "tsv", "url", "caption", header=("caption", "url")))


def test_webscale_builds_img2dataset_command_and_needs_the_tool(server, tmp_path, monkeypatch):
    src = _webscale_source(server)
    _register(monkeypatch, src)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # img2dataset must not be required here
    with pytest.raises(DownloadError, match=r"img2dataset is not installed.*envs/data.yaml.*--url_list"):
        dl.download_source("fakecc", tmp_path, **FAST)
    headered = tmp_path / "fakecc/list.with_header.tsv"
    assert headered.read_text().splitlines()[0] == "caption\turl"
    assert headered.read_text().splitlines()[1:] == ["a dog\thttp://h/1.jpg", "a cat\thttp://h/2.jpg"]
    manifest = dl.download_source("fakecc", tmp_path, images=False, **FAST)
    assert manifest["shards"] == str(tmp_path / "fakecc/shards")
    cmd = webshards.img2dataset_command(src, headered, tmp_path / "s", processes=4, threads=8)
    flags = dict(zip(cmd[1::2], cmd[2::2]))
    assert cmd[0] == "img2dataset" and flags["--output_format"] == "webdataset"
    assert flags["--input_format"] == "tsv" and flags["--url_col"] == "url" and flags["--caption_col"] == "caption"
    assert flags["--processes_count"] == "4" and flags["--incremental_mode"] == "incremental"


def test_webscale_runs_img2dataset_when_installed(server, tmp_path, monkeypatch):
    _register(monkeypatch, _webscale_source(server))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "img2dataset"  # a stand-in that records its argv
    fake.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path}/argv.txt\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    dl.download_source("fakecc", tmp_path, **FAST)
    argv = (tmp_path / "argv.txt").read_text()
    assert "--output_folder " + str(tmp_path / "fakecc/shards") in argv
    fake.write_text("#!/bin/sh\nexit 3\n")
    with pytest.raises(DownloadError, match="exited with code 3"):
        dl.download_source("fakecc", tmp_path, **FAST)


def test_fake_shards_are_read_and_counted(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "00000.tar").write_bytes(_tar({
        "000000000.jpg": b"\xff\xd8jpeg", "000000000.txt": b"a dog", "000000000.json": b'{"url": "u0"}',
        "000000001.jpg": b"\xff\xd8jpeg", "000000001.txt": b"a cat", "000000001.json": b'{"url": "u1"}'}))
    (shards / "00000_stats.json").write_text(json.dumps(
        {"count": 5, "successes": 2, "failed_to_download": 3, "failed_to_resize": 0}))
    samples = list(webshards.iter_shard_samples(shards))
    assert [(s.key, s.caption, s.meta["url"]) for s in samples] == [("000000000", "a dog", "u0"),
                                                                   ("000000001", "a cat", "u1")]
    assert webshards.img2dataset_stats(shards) == {"count": 5, "successes": 2, "failed_to_download": 3,
                                                   "failed_to_resize": 0}
    (shards / "00001.tar").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(DataError, match="00001.tar: corrupt shard"):
        list(webshards.iter_shard_samples(shards))
    with pytest.raises(DataError, match="no webdataset shards"):
        webshards.list_shards(tmp_path / "empty")


def test_listed_images_are_fetched_and_failures_counted(server, tmp_path, monkeypatch):
    ann = {"images": [{"id": 0, "file_name": "a.jpg", "coco_url": f"{server.base}/files/a.jpg"},
                      {"id": 1, "file_name": "b.jpg", "coco_url": f"{server.base}/files/gone.jpg"}]}
    server.files["/files/ann.json"] = json.dumps(ann).encode()
    server.files["/files/a.jpg"] = b"\xff\xd8image"
    _register(monkeypatch, sources.Source("fakenocaps", "direct", "d", "CC BY", (
        sources.FileSpec("ann.json", f"{server.base}/files/ann.json"),),
        listed_images=sources.ListedImages("ann.json", "coco_url", "file_name", "images/val")))
    manifest = dl.download_source("fakenocaps", tmp_path, retries=0, backoff=0.01, timeout=0.5, progress=False)
    got = manifest["listed_images"]
    assert (got["listed"], got["obtained"], got["failed"]) == (2, 1, 1) and "HTTP 404" in got["failures"][0]
    folder = tmp_path / "fakenocaps/images/val"
    assert sorted(p.name for p in folder.iterdir()) == ["a.jpg"]  # no .part, no .sha256 per image
    assert (folder / "a.jpg").read_bytes() == b"\xff\xd8image"
