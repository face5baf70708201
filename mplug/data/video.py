"""Video frames: uniform sampling and reading frame folders (or video files).

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
    from PIL import Image

    idx = sample_indices(len(paths), n)
    frames: list[Any] = []
    bad, cache = 0, {}
    for i in idx:
        if i not in cache:
            try:
                with Image.open(paths[i]) as im:
                    cache[i] = im.convert("RGB")
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


def read_video_file(path: Path, n: int) -> tuple[list[Any], dict]:
    """Decode a video file with torchvision.io (optional dependency on its video backend)."""
    from PIL import Image

    try:
        from torchvision.io import read_video
        video, _, _ = read_video(str(path), pts_unit="sec", output_format="THWC")  # (T, H, W, 3)
    except Exception as err:  # backend missing or file unreadable: both mean "bad video"
        raise BadVideo(f"cannot decode {path}: {err}") from None
    if video.shape[0] == 0:
        raise BadVideo(f"{path}: no frames decoded")
    idx = sample_indices(int(video.shape[0]), n)
    frames = [Image.fromarray(video[i].numpy()) for i in idx]
    return frames, {"vlen": int(video.shape[0]), "short": video.shape[0] < n, "bad_frames": 0}


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
