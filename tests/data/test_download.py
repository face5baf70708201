"""Downloads against a local misbehaving HTTP server: every failure has its own clear error and
never leaves a file that looks complete; a rerun resumes from the .part with a Range request."""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures_download"))
from fake_http import FakeServer  # noqa: E402

from mplug.data import download as dl  # noqa: E402
from mplug.errors import DownloadError  # noqa: E402

PAYLOAD = bytes(range(256)) * 400 + b"tail"  # ~100 KB, not a multiple of the chunk size
SHA = hashlib.sha256(PAYLOAD).hexdigest()
FAST = dict(backoff=0.01, max_backoff=0.02, timeout=0.3, progress=False)


@pytest.fixture()
def server():
    with FakeServer(PAYLOAD, slow_s=1.0, flaky_failures=2) as srv:
        yield srv


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_normal_download_records_sha_and_is_verified_on_rerun(server, tmp_path):
    dest = tmp_path / "f.bin"
    assert dl.download(server.url("ok"), dest, **FAST) == dest
    assert dest.read_bytes() == PAYLOAD
    assert dl.record_path(dest).read_text() == f"{SHA}  f.bin\n"
    assert _leftovers(tmp_path) == ["f.bin", "f.bin.sha256"]
    # a later run checks the existing file against the record and does not refetch
    n = len(server.requests)
    dl.download(server.url("ok"), dest, **FAST)
    assert len(server.requests) == n
    # a corrupted file on disk is quarantined and fetched again, then matches the record
    dest.write_bytes(b"x" + PAYLOAD[1:])
    dl.download(server.url("ok"), dest, **FAST)
    assert dest.read_bytes() == PAYLOAD and dl.bad_path(dest).exists()


def test_pinned_checksum_and_md5_accepted(server, tmp_path):
    dest = tmp_path / "f.bin"
    dl.download(server.url("ok"), dest, SHA, md5=hashlib.md5(PAYLOAD).hexdigest(), **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert not dl.record_path(dest).exists()  # pinned: nothing to record


def test_404_is_not_retried(server, tmp_path):
    dest = tmp_path / "f.bin"
    with pytest.raises(dl.NotFoundError, match=r"HTTP 404"):
        dl.download(server.url("missing"), dest, retries=3, **FAST)
    assert len(server.requests) == 1
    assert not dest.exists()


def test_wrong_checksum_quarantined_as_bad(server, tmp_path):
    dest = tmp_path / "f.bin"
    with pytest.raises(dl.ChecksumMismatchError, match="checksum mismatch") as err:
        dl.download(server.url("ok"), dest, "0" * 64, **FAST)
    assert str(dl.bad_path(dest)) in str(err.value)
    assert not dest.exists() and not dl.part_path(dest).exists()
    assert dl.bad_path(dest).read_bytes() == PAYLOAD


def test_wrong_md5_is_a_mismatch(server, tmp_path):
    dest = tmp_path / "f.bin"
    with pytest.raises(dl.ChecksumMismatchError, match="md5"):
        dl.download(server.url("ok"), dest, md5="0" * 32, **FAST)
    assert not dest.exists()


def test_recorded_checksum_is_enforced_on_a_later_download(server, tmp_path):
    dest = tmp_path / "f.bin"
    dl.record_path(dest).write_text("1" * 64 + "  f.bin\n")  # e.g. the host replaced the file
    with pytest.raises(dl.ChecksumMismatchError):
        dl.download(server.url("ok"), dest, **FAST)
    assert not dest.exists()


def test_dropped_connection_resumes_with_range(server, tmp_path):
    dest = tmp_path / "f.bin"
    dl.download(server.url("drop-once"), dest, **FAST)
    assert dest.read_bytes() == PAYLOAD
    ranges = server.ranges("drop-once")
    assert ranges[0] is None and ranges[1] == f"bytes={len(PAYLOAD) // 2}-"
    assert not dl.part_path(dest).exists()


def test_truncated_gives_up_with_bytes_got_then_rerun_resumes(server, tmp_path):
    dest = tmp_path / "f.bin"
    with pytest.raises(dl.IncompleteDownloadError) as err:
        dl.download(server.url("truncated"), dest, retries=2, **FAST)
    msg = str(err.value)
    assert server.url("truncated") in msg and f"{server.cut:,} bytes" in msg and "retries" in msg
    assert not dest.exists(), "a truncated download must not look complete"
    assert dl.part_path(dest).stat().st_size == server.cut
    assert len(server.requests) == 1 + 2  # first try (got bytes) + 2 retries without progress
    # the same file is now served properly: a rerun resumes from the .part with a Range request
    server.requests.clear()
    dl.download(server.url("ok"), dest, **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests[0][1] == f"bytes={server.cut}-"


def test_too_slow_server_times_out_after_retries(server, tmp_path):
    dest = tmp_path / "f.bin"
    with pytest.raises(dl.DownloadTimeoutError, match=r"no answer within 0.3 s.*2 retries"):
        dl.download(server.url("slow"), dest, retries=2, **FAST)
    assert len(server.ranges("slow")) == 3
    assert not dest.exists()


def test_stall_mid_body_times_out_then_resumes(server, tmp_path):
    dest = tmp_path / "f.bin"
    dl.download(server.url("stall-once"), dest, **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert server.ranges("stall-once")[1] == f"bytes={len(PAYLOAD) // 2}-"


def test_flaky_server_succeeds_after_backoff(server, tmp_path):
    dest = tmp_path / "f.bin"
    dl.download(server.url("flaky"), dest, retries=3, **FAST)
    assert dest.read_bytes() == PAYLOAD and len(server.ranges("flaky")) == 3


def test_flaky_server_beyond_retries_is_a_server_error(server, tmp_path):
    dest = tmp_path / "f.bin"
    with pytest.raises(dl.ServerError, match="HTTP 503"):
        dl.download(server.url("flaky"), dest, retries=1, **FAST)
    assert not dest.exists()


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    dest = tmp_path / "f.bin"
    dl.part_path(dest).write_bytes(b"garbage-from-an-old-run")
    dl.download(server.url("norange"), dest, SHA, **FAST)
    assert dest.read_bytes() == PAYLOAD


def test_complete_part_answered_416_is_finished(server, tmp_path):
    dest = tmp_path / "f.bin"
    dl.part_path(dest).write_bytes(PAYLOAD)  # killed between the last byte and the rename
    dl.download(server.url("ok"), dest, SHA, **FAST)
    assert dest.read_bytes() == PAYLOAD and server.requests[-1][1] == f"bytes={len(PAYLOAD)}-"


def test_all_errors_are_user_facing_download_errors():
    for cls in (dl.NotFoundError, dl.ChecksumMismatchError, dl.IncompleteDownloadError,
                dl.DownloadTimeoutError, dl.ServerError, dl.ForbiddenError, dl.RegistrationRequiredError):
        assert issubclass(cls, DownloadError)


def test_no_space_is_refused_before_fetching(server, tmp_path):
    with pytest.raises(DownloadError, match="more bytes"):
        dl.download(server.url("ok"), tmp_path / "f.bin", size=1 << 62, **FAST)
    assert server.requests == []


def test_bad_record_file_is_named(server, tmp_path):
    dest = tmp_path / "f.bin"
    dl.record_path(dest).write_text("not-a-hash\n")
    with pytest.raises(DownloadError, match=r"f\.bin\.sha256: not a sha256 record"):
        dl.download(server.url("ok"), dest, **FAST)


def test_part_file_never_named_like_the_target(server, tmp_path):
    # whatever happens, the only names that can exist are dest, .part, .bad, .sha256
    dest = tmp_path / "f.bin"
    for kind in ("truncated", "slow", "missing"):
        with pytest.raises(DownloadError):
            dl.download(server.url(kind), dest, retries=0, **FAST)
        assert not dest.exists()
    assert set(os.listdir(tmp_path)) <= {"f.bin.part"}
