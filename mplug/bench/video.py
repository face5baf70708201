"""`mplug bench video`: frames decoded per second by the loader's video decoder (PyAV, seeking
to each uniformly sampled frame; mplug/data/video.py) on generated H.264 .mp4 and XVID .avi
files of MSRVTT-like shape (default 320x240, 30 fps, 10 s), `num_frames` sampled per video.
The decoder was chosen with this measurement (docs/benchmarks.md)."""
from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mplug.bench.common import envelope, format_table, measure_interleaved
from mplug.errors import ConfigError


@dataclass
class VideoBenchOptions:
    width: int = 320
    height: int = 240
    fps: int = 30
    frames: int = 300  # video length in frames
    num_frames: int = 8  # sampled per video (the harness's default)
    videos: int = 4  # decodes per timed repeat
    repeats: int = 3
    threads: int | None = None  # unused (decoding threads are FFmpeg's); accepted for the CLI
    device: str = "cpu"

    @classmethod
    def quick(cls, **kw: Any) -> "VideoBenchOptions":
        base = dict(width=160, height=120, frames=90, videos=2)
        base.update({k: v for k, v in kw.items() if v is not None})
        return cls(**base)

    def validate(self) -> "VideoBenchOptions":
        for key in ("width", "height", "fps", "frames", "num_frames", "videos", "repeats"):
            if getattr(self, key) < 1:
                raise ConfigError(f"--{key.replace('_', '-')} {getattr(self, key)}: must be >= 1")
        return self


def run_video(opts: VideoBenchOptions) -> dict[str, Any]:
    from mplug.data.video import read_video_file
    from mplug.data.video_write import write_video

    opts.validate()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for ext, codec in ((".mp4", "h264"), (".avi", "mpeg4/xvid")):
            path = write_video(Path(tmp) / f"v{ext}", opts.frames, opts.width, opts.height, opts.fps)

            def decode(path: Path = path) -> None:
                for _ in range(opts.videos):
                    frames, _info = read_video_file(path, opts.num_frames)
                    assert len(frames) == opts.num_frames

            t = measure_interleaved({"decode": decode}, "cpu", warmup=1, repeats=opts.repeats)["decode"]
            decoded = opts.videos * opts.num_frames
            rows.append({"container": ext, "codec": codec, "frames_per_s": decoded / t.time_s,
                         "videos_per_s": opts.videos / t.time_s, **t.to_dict()})
    import av

    return envelope("video", rows, asdict(opts), device="cpu", decoder=f"pyav {av.__version__}")


def summary(result: dict[str, Any]) -> str:
    cols = [("container", "file", ""), ("codec", "codec", ""), ("frames_per_s", "frames/s", ".1f"),
            ("videos_per_s", "videos/s", ".1f")]
    s = result["settings"]
    head = (f"video decode ({result['decoder']}, {s['num_frames']} of {s['frames']} frames, "
            f"{s['width']}x{s['height']}) on {result['hardware_name']}")
    return head + "\n" + format_table(result["rows"], cols)
