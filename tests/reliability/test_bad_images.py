"""Issue 18, cases 5, 6 and 10 (preprocess): images PIL reads wrongly or lets through.

- A decompression bomb (a header declaring 400 M pixels) is a bad image like any corrupt one:
  training counts and skips it, evaluation names it; the limit is MPLUG_MAX_IMAGE_PIXELS.
- A 16-bit grayscale PNG (`I;16`) is scaled to 8 bits, not clipped to white.
- preprocess decodes each image: a JPEG cut mid-scan passes PIL's verify() but is counted
  corrupt and its record dropped.
"""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from _helpers import TINY
from mplug.cli import main
from mplug.data import formats
from mplug.data.datasets import build_dataset


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _bomb_png(side: int = 20_000) -> bytes:
    """A valid PNG header for a side x side 1-bit image (400 M pixels), a few hundred bytes."""
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
            + _chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _chunk(b"IEND", b""))


def _grey16(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((32, 32), value, np.uint16)).save(buf, "PNG")
    return buf.getvalue()


def _snli(world_copy):
    root = world_copy("snli_ve")
    recs = formats.read_records(root / "train.jsonl", "snli_ve")
    return root, recs


def test_decompression_bomb_is_counted_and_skipped_in_training(world_copy):
    root, recs = _snli(world_copy)
    (root / recs[0]["image"]).write_bytes(_bomb_png())
    ds = build_dataset("snli_ve", root.parent, "train", image_res=32, train=True)
    same = sum(1 for r in recs if r["image"] == recs[0]["image"])  # records sharing the image
    ex = ds[0]  # replaced by the next example with another image, deterministically
    assert ex["meta"]["skipped_bad"] == same and ds.bad_images == same
    assert ex["meta"]["image_id"] != recs[0]["image_id"] if "image_id" in ex["meta"] else True
    assert all("decompression bomb" in p and recs[0]["image"].split("/")[-1] in p for p in ds.bad_paths)


def test_decompression_bomb_in_evaluation_is_a_named_error(world_copy, tmp_path, capsys):
    root = world_copy("vqa")
    rec = formats.read_records(root / "val.jsonl", "vqa")[1]
    (root / rec["image"]).write_bytes(_bomb_png())
    out = tmp_path / "out" / "m.json"
    rc = main(["evaluate", "vqa", "--data", str(root.parent), "--split", "val", "--out", str(out),
               "--model", TINY, "--batch-size", "4", "--beam", "1", "--max-length", "2", "--limit", "4"])
    err = capsys.readouterr().err
    assert rc != 0 and "Traceback" not in err, err
    assert "decompression bomb" in err and rec["image"].split("/")[-1] in err, err
    assert not out.exists()


def test_pixel_limit_is_configurable(world_copy, monkeypatch):
    root, recs = _snli(world_copy)
    monkeypatch.setenv("MPLUG_MAX_IMAGE_PIXELS", "100")  # every world image (>= 32x32) is over it
    ds = build_dataset("snli_ve", root.parent, "train", image_res=32, train=False)
    with pytest.raises(Exception, match="decompression bomb"):
        ds.load_image(recs[0]["image"])
    monkeypatch.setenv("MPLUG_MAX_IMAGE_PIXELS", "0")  # 0 = no limit
    assert ds.load_image(recs[0]["image"]).mode == "RGB"


@pytest.mark.parametrize("value", [0, 32768, 65535])
def test_16_bit_grayscale_is_scaled_not_white(value, world_copy):
    root, recs = _snli(world_copy)
    (root / recs[0]["image"]).write_bytes(_grey16(value))
    ds = build_dataset("snli_ve", root.parent, "train", image_res=32, train=False)
    img = ds.load_image(recs[0]["image"])
    assert img.mode == "RGB"
    want = round(value / 257)
    assert all(abs(c - want) <= 1 for c in img.getpixel((5, 5))), (img.getpixel((5, 5)), want)
    assert ds.bad_images == 0


def test_preprocess_decodes_images_truncated_jpeg_is_corrupt(tmp_path):
    from mplug.data.preprocess_common import MediaChecker

    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)).save(buf, "JPEG", quality=95)
    data = buf.getvalue()
    good, cut = tmp_path / "good.jpg", tmp_path / "cut.jpg"
    good.write_bytes(data)
    cut.write_bytes(data[: len(data) * 2 // 3])  # header intact, the scan cut off
    with Image.open(cut) as im:
        im.verify()  # what preprocess relied on: it passes
    checker = MediaChecker("verify")
    assert checker.ok(good) and not checker.ok(cut)
    assert checker.failures["corrupt"] == 1 and checker.obtained == 1
