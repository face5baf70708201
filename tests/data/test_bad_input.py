"""Bad input: skipped and counted images, errors naming file:line, missing datasets."""
from __future__ import annotations

import json
import tarfile

import pytest

from mplug.data import formats
from mplug.data.datasets import build_dataset, build_loader
from mplug.data.collate import count_bad
from mplug.errors import DataError

RES = 32


def _break(root, name, split, idx):
    """Make record idx's image missing, zero-byte and corrupt respectively."""
    recs = formats.read_records(root / name / f"{split}.jsonl", formats.DATASETS[name].schema)
    paths = [root / name / recs[i]["image"] for i in idx]
    paths[0].unlink()
    paths[1].write_bytes(b"")
    paths[2].write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return recs


def test_bad_images_skipped_counted_and_replaced_deterministically(copy_dataset, tokenizer):
    root = copy_dataset("snli_ve")
    recs = _break(root, "snli_ve", "dev", [0, 3, 6])  # 3 hypotheses per image: indices 0..8
    ds = build_dataset("snli_ve", root, "dev", tokenizer, RES, False)
    ex = ds[0]
    assert ex["meta"]["pair_id"] == recs[9]["pair_id"] and ex["meta"]["skipped_bad"] == 9
    assert ds[0]["meta"]["pair_id"] == recs[9]["pair_id"]  # same replacement every time
    loader, ds = build_loader("snli_ve", root, "dev", tokenizer, RES, False, 8)
    total = sum(count_bad(b) for b in loader)  # a full epoch, no crash
    assert total == ds.bad_images == 9 + 8 + 7 + 6 + 5 + 4 + 3 + 2 + 1
    summary = ds.summary()
    assert summary["bad_images"] == total and any("zero-byte" in p for p in summary["bad_paths"])


def test_bad_video_frames_repeat_last_and_count(copy_dataset):
    root = copy_dataset("msvd_qa")
    rec = formats.read_records(root / "msvd_qa" / "test.jsonl", "video_qa")[0]
    frames = sorted((root / "msvd_qa" / rec["video"]).iterdir())
    frames[-1].write_bytes(b"garbage")
    ds = build_dataset("video_qa_msvd", root, "test", None, RES, False, num_frames=len(frames))
    ex = ds[0]
    assert ex["image"].shape[0] == len(frames) and ex["meta"]["bad_frames"] == 1
    assert (ex["image"][-1] == ex["image"][-2]).all()
    for f in frames:
        f.unlink()
    ex = ds[0]  # no readable frame: every question on that video is skipped and counted
    n_same = sum(r["video_id"] == rec["video_id"] for r in ds.records[:5])
    assert n_same >= 1 and ds.bad_images == n_same and ex["meta"]["skipped_bad"] == n_same
    assert ex["meta"]["video_id"] != rec["video_id"]


def test_malformed_line_names_file_and_line(copy_dataset):
    root = copy_dataset("vqa")
    path = root / "vqa" / "val.jsonl"
    lines = path.read_text().splitlines()
    rec = json.loads(lines[4])
    rec["answers"] = rec["answers"][:3]
    lines[4] = json.dumps(rec)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"val\.jsonl:5: field 'answers'"):
        build_dataset("vqa", root, "val", None, RES, False)
    lines[4] = "{not json"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"val\.jsonl:5: invalid JSON"):
        build_dataset("vqa", root, "val", None, RES, False)


def test_missing_dataset_split_and_manifest(tmp_path, copy_dataset):
    with pytest.raises(DataError, match=r"mplug data synth --out .*preprocess nlvr2"):
        build_dataset("nlvr2", tmp_path, "dev", None, RES, False)
    root = copy_dataset("nlvr2")
    with pytest.raises(DataError, match="split 'val' not found.*dev"):
        build_dataset("nlvr2", root, "val", None, RES, False)
    with pytest.raises(DataError, match="unknown task"):
        build_dataset("vqa2", root, "val", None, RES, False)


def test_corrupt_shard_sample_skipped_and_missing_shard(copy_dataset):
    root = copy_dataset("pretrain_4m", "pretrain_14m")
    shard = root / "pretrain_14m" / "shards" / "cc12m-00000.tar"
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    first_jpg = next(m.name for m, _ in members if m.name.endswith(".jpg"))
    with tarfile.open(shard, "w", format=tarfile.USTAR_FORMAT) as tar:
        for m, data in members:
            if m.name == first_jpg:
                data = b"broken"
                m.size = len(data)
            import io
            tar.addfile(m, io.BytesIO(data))
    ds = build_dataset("pretrain", root, "train", None, RES, True, dataset="pretrain_14m")
    assert len(list(ds)) == len(ds) - 1 and ds.bad_images == 1
    (root / "pretrain_14m" / "shards.txt").write_text("shards/nope.tar\n")
    with pytest.raises(DataError, match=r"shards\.txt:1: shard .*nope\.tar not found"):
        build_dataset("pretrain", root, "train", None, RES, True, dataset="pretrain_14m")
