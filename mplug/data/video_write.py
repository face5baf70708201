"""Write small real video files with PyAV, in the codecs the datasets ship: H.264 in .mp4
(MSRVTT, VATEX) and MPEG-4 part 2 tagged XVID in .avi (MSVD's YouTubeClips). Used by the decode
benchmark and the tests' video fixtures; each frame differs (a moving bar, a colour ramp) so a
wrong frame index is visible in the pixels."""
from __future__ import annotations

from pathlib import Path

CODECS = {".mp4": ("libx264", None), ".avi": ("mpeg4", "XVID")}


def frame_pixels(i: int, width: int, height: int):
    """(H, W, 3) uint8 frame i: red = 7*i mod 256 everywhere, a green bar from column 3*i."""
    import numpy as np

    a = np.zeros((height, width, 3), np.uint8)
    a[..., 0] = (7 * i) % 256
    a[:, (3 * i) % width:, 1] = 200
    return a


def write_video(path: Path, frames: int = 60, width: int = 64, height: int = 48, fps: int = 25) -> Path:
    """Encode `frames` frames to `path` (codec by suffix: CODECS); returns path."""
    import av

    path = Path(path)
    codec, tag = CODECS[path.suffix.lower()]
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate = 4_000_000  # near-lossless at these sizes: each frame stays recognisable
        if tag:
            stream.codec_context.codec_tag = tag
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(frame_pixels(i, width, height), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():  # flush the encoder's delayed frames
            out.mux(packet)
    return path
