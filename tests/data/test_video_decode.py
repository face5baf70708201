"""The loader decodes real video files: H.264 .mp4 (MSRVTT, VATEX) and XVID .avi (MSVD),
generated with PyAV, uniformly sampled frames by seeking (mplug/data/video.py)."""
from __future__ import annotations

import numpy as np
import pytest

from mplug.data.video import BadVideo, load_video, read_video_file, sample_indices
from mplug.data.video_write import frame_pixels, write_video


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    return {ext: write_video(root / f"clip{ext}", frames=60, width=64, height=48) for ext in (".mp4", ".avi")}


@pytest.mark.parametrize("ext", [".mp4", ".avi"])
def test_decodes_the_sampled_frames(videos, ext):
    frames, info = read_video_file(videos[ext], 8)
    assert info == {"vlen": 60, "short": False, "bad_frames": 0}
    assert [f.size for f in frames] == [(64, 48)] * 8
    for frame, i in zip(frames, sample_indices(60, 8)):
        want = frame_pixels(i, 64, 48).astype(int)
        got = np.asarray(frame).astype(int)
        # the right frame (neighbours differ by 7 in red and 3 columns of green), up to codec noise
        assert abs(got[..., 0].mean() - want[..., 0].mean()) < 3.5, (ext, i)
        assert np.abs(got[..., 1] - want[..., 1]).mean() < 20, (ext, i)


def test_short_video_repeats_frames(tmp_path):
    path = write_video(tmp_path / "short.mp4", frames=3)
    frames, info = read_video_file(path, 8)
    assert len(frames) == 8 and info["short"] and info["vlen"] == 3


def test_record_with_video_file(videos):
    rec = {"video_id": "clip", "video": str(videos[".avi"])}
    frames, info = load_video(rec, videos[".avi"].parent, 4)
    assert len(frames) == 4 and info["vlen"] == 60


def test_corrupt_file_is_a_bad_video(tmp_path, videos):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(videos[".mp4"].read_bytes()[:200])
    with pytest.raises(BadVideo, match="bad.mp4"):
        read_video_file(bad, 8)
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"not a video at all" * 10)
    with pytest.raises(BadVideo, match="junk.avi"):
        read_video_file(junk, 8)


def test_bench_video_quick(tmp_path, capsys):
    from mplug.cli import main

    out = tmp_path / "video.json"
    assert main(["bench", "video", "--quick", "--repeats", "1", "--json", str(out)]) == 0
    import json

    rows = json.loads(out.read_text())["rows"]
    assert [r["container"] for r in rows] == [".mp4", ".avi"] and all(r["frames_per_s"] > 0 for r in rows)
    assert "frames/s" in capsys.readouterr().out
