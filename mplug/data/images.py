"""Opening one image as RGB, the one way every loader does it (datasets, shards, video frames).

Two inputs PIL's `convert("RGB")` gets wrong or lets through:
- 16-bit grayscale (`I;16`, `I`): convert clips every value above 255 to white; here the
  16-bit range is scaled to 8 bits (v / 257), as an 8-bit export of the same image would be.
- decompression bombs: an image whose header declares more pixels than the limit raises
  `BadImage` (a ValueError, so every loader counts and skips it like a corrupt file) instead of
  PIL's DecompressionBombError, which is neither OSError nor ValueError. The limit is
  `MPLUG_MAX_IMAGE_PIXELS` (default PIL's 89,478,485, about 9459 x 9459; 0 = no limit); it also
  applies between the limit and twice the limit, where PIL would only warn.
"""
from __future__ import annotations

import os
import warnings
from typing import Any

DEFAULT_MAX_PIXELS = 89_478_485  # PIL.Image.MAX_IMAGE_PIXELS's default
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")


class BadImage(ValueError):
    """The file is an image PIL can read but we refuse (too many pixels)."""


def max_pixels() -> int | None:
    raw = os.environ.get("MPLUG_MAX_IMAGE_PIXELS", "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        raise BadImage(f"MPLUG_MAX_IMAGE_PIXELS={raw!r} is not an integer (0 = no limit)") from None
    return value if value > 0 else None


def open_rgb(source: Any) -> Any:
    """PIL RGB image of a path or file object (loaded, the file closed)."""
    from PIL import Image

    limit = max_pixels()
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        old = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = limit
        try:
            with Image.open(source) as im:
                return _to_rgb(im)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise BadImage(f"decompression bomb refused ({err}); raise MPLUG_MAX_IMAGE_PIXELS "
                           "if such images are intended") from None
        finally:
            Image.MAX_IMAGE_PIXELS = old


def _to_rgb(im: Any) -> Any:
    if im.mode in _SIXTEEN_BIT:
        import numpy as np
        from PIL import Image

        # (H, W) 16-bit -> 8-bit: 65535 maps to 255, not every value > 255 to white
        grey = np.asarray(im, dtype=np.uint32).clip(0, 65535)
        return Image.fromarray(((grey + 128) // 257).astype(np.uint8), "L").convert("RGB")
    return im.convert("RGB")
