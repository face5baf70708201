"""Video frames: uniform sampling and reading frame folders or video files (PyAV).

Official (mPLUG dataset/video_dataset.py, decord): `np.arange(0, vlen, vlen / num_frm)` frame
indices, each frame resized to image_res x image_res. A video with fewer frames than asked
repeats frames (the same arithmetic); unreadable frames are replaced by the previous readable
one and counted (training), or, with `strict=True` (evaluation), make the video a BadVideo
naming the frame, since a silently substituted frame changes what is being scored.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".webm", ".mov")


class BadVideo(Exception):
    """No frame of this video can be read."""


def sample_indices(vlen: int, n: int) -> list[int]:
    """Uniform indices as official: `np.arange(0, vlen, vlen / n)`, exactly n of them."""
    import numpy as np

    if vlen <= 0:
        raise BadVideo("video has no frames")
    idx = np.arange(0, vlen, vlen / n).astype(int)[:n]
    return [min(int(i), vlen - 1) for i in idx]


def list_frames(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS)


def read_frames(paths: list[Path], n: int, strict: bool = False) -> tuple[list[Any], dict]:
    """Read n uniformly sampled frames (PIL RGB) of a frame list.

    Returns (frames, info) with info = {"vlen", "short": vlen < n, "bad_frames": count}.
    Raises BadVideo when no frame is readable, or (strict) when any sampled frame is not.
    """
    from mplug.data.images import open_rgb

    idx = sample_indices(len(paths), n)
    frames: list[Any] = []
    bad, cache = 0, {}
    for i in idx:
        if i not in cache:
            try:
                cache[i] = open_rgb(paths[i])
            except (OSError, ValueError) as err:
                if strict:
                    raise BadVideo(f"unreadable frame {paths[i]}: {err}") from None
                cache[i] = None
        img = cache[i]
        if img is None:
            bad += 1
            if frames:
                img = frames[-1]  # repeat the last good frame
        frames.append(img)
    good = [f for f in frames if f is not None]
    if not good:
        raise BadVideo(f"none of the {len(idx)} sampled frames could be read")
    frames = [f if f is not None else good[0] for f in frames]  # leading bad frames
    return frames, {"vlen": len(paths), "short": len(paths) < n, "bad_frames": bad}


def _frame_count(container, stream) -> int:
    """Frames in the stream: the container's count, else duration x rate (some AVIs/MP4s
    carry no count), else 0 (the caller then decodes sequentially)."""
    if stream.frames:
        return int(stream.frames)
    rate = stream.average_rate or stream.guessed_rate
    if rate and stream.duration and stream.time_base:
        return int(round(float(stream.duration * stream.time_base * rate)))
    if rate and container.duration:
        return int(round(container.duration / 1_000_000 * float(rate)))
    return 0


def _seek_frame(container, stream, index: int, rate) -> Any:
    """Decode frame `index` by seeking to the keyframe before it and decoding forward to its
    timestamp (only the GOP up to the frame is decoded, not the whole video)."""
    start = stream.start_time or 0
    tick = 1 / rate / stream.time_base  # one frame's duration in pts units (a Fraction)
    target = start + index * tick  # pts of frame `index`
    container.seek(int(target), stream=stream, backward=True, any_frame=False)
    last = None
    for frame in container.decode(stream):
        if frame.pts is None or frame.pts >= target - tick / 2:  # half a frame: pts rounding
            return frame
        last = frame
    return last  # past the end (a count rounded up): the last frame


def read_video_file(path: Path, n: int) -> tuple[list[Any], dict]:
    """Decode n uniformly sampled frames of a video file with PyAV (FFmpeg), seeking to each
    sampled frame instead of decoding the whole video (docs/benchmarks.md, `mplug bench video`).
    Returns PIL RGB frames and info as `read_frames`."""
    try:
        import av
    except ImportError as err:
        raise BadVideo(f"cannot decode {path}: PyAV is not installed ({err}); see requirements/lock.txt") from None
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise BadVideo(f"{path}: no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            vlen, rate = _frame_count(container, stream), stream.average_rate or stream.guessed_rate
            if vlen and rate:
                frames = [_seek_frame(container, stream, i, rate) for i in sample_indices(vlen, n)]
            else:  # no count or rate to seek by: decode in order, then sample
                frames = list(container.decode(stream))
                vlen = len(frames)
                frames = [frames[i] for i in sample_indices(vlen, n)]
            if any(f is None for f in frames):
                raise BadVideo(f"{path}: a sampled frame could not be decoded")
            images = [f.to_image() for f in frames]  # PIL RGB
    except BadVideo:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as err:
        raise BadVideo(f"cannot decode {path}: {err}") from None
    return images, {"vlen": vlen, "short": vlen < n, "bad_frames": 0}


def load_video(rec: dict, dataset_dir: Path, n: int, strict: bool = False) -> tuple[list[Any], dict]:
    """Frames of a normalised video record (`frames` list, or `video` folder / file);
    `strict`: an unreadable sampled frame is a BadVideo (see `read_frames`)."""
    from mplug.data.formats import resolve_path

    if "frames" in rec:
        return read_frames([resolve_path(dataset_dir, p) for p in rec["frames"]], n, strict)
    path = resolve_path(dataset_dir, rec["video"])
    if path.is_dir():
        return read_frames(list_frames(path), n, strict)
    if path.suffix.lower() in VIDEO_EXTS and path.is_file():
        return read_video_file(path, n)
    raise BadVideo(f"{path}: no such frame folder or video file")
