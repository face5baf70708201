"""Every task's loader yields a batch of the contract in docs/architecture.md."""
from __future__ import annotations

import pytest
import torch

from mplug.data.datasets import answer_weights, build_dataset, build_loader, load_answer_list
from mplug.data.transforms import box_to_original, resize_pad
from mplug.data.video import sample_indices

RES = 32
B = 4
# task, split, train, opts, expected keys besides image/meta, image dims after B
CASES = [
    ("pretrain", "train", True, {}, {"text_ids", "text_mask", "image_idx", "target_ids", "target_mask"}, 3),
    ("pretrain", "train", True, {"dataset": "pretrain_14m"},
     {"text_ids", "text_mask", "image_idx", "target_ids", "target_mask"}, 3),
    ("caption", "train", True, {}, {"target_ids", "target_mask"}, 3),
    ("caption", "test", False, {}, set(), 3),
    ("nocaps", "val", False, {}, set(), 3),
    ("vqa", "train", True, {}, {"text_ids", "text_mask", "answer_ids", "answer_mask",
                                 "answer_weight", "answer_index"}, 3),
    ("vqa", "val", False, {}, {"text_ids", "text_mask"}, 3),
    ("retrieval_coco", "train", True, {}, {"text_ids", "text_mask", "image_idx"}, 3),
    ("retrieval_flickr", "test", False, {}, {"image_idx"}, 3),
    ("grounding", "testA", False, {}, {"text_ids", "text_mask", "box"}, 3),
    ("grounding", "train", True, {"dataset": "refcoco+"}, {"text_ids", "text_mask", "box"}, 3),
    ("grounding", "val_u", False, {"dataset": "refcocog"}, {"text_ids", "text_mask", "box"}, 3),
    ("nlvr2", "train", True, {}, {"text_ids", "text_mask", "label"}, 4),
    ("snli_ve", "dev", False, {}, {"text_ids", "text_mask", "label"}, 3),
    ("video_retrieval", "test", False, {}, {"image_idx"}, 4),
    ("video_qa_msrvtt", "test", False, {"num_frames": 16}, {"text_ids", "text_mask"}, 4),
    ("video_qa_msvd", "test", False, {}, {"text_ids", "text_mask"}, 4),
    ("video_caption", "test", False, {}, set(), 4),
]


@pytest.mark.parametrize("task,split,train,opts,keys,ndim", CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[3].get('dataset', '')}" for c in CASES])
def test_batch_contract(synth_world, tokenizer, task, split, train, opts, keys, ndim):
    loader, ds = build_loader(task, synth_world[0], split, tokenizer, RES, train, B, **opts)
    batch = next(iter(loader))
    assert set(batch) == {"image", "meta"} | keys
    img = batch["image"]
    assert img.dtype == torch.float32 and img.shape[0] == B and img.shape[-2:] == (RES, RES)
    assert img.dim() == ndim + 1 and torch.isfinite(img).all()
    if task.startswith("video"):
        assert img.shape[1] == opts.get("num_frames", 8)
    if task == "nlvr2":
        assert img.shape[1] == 2
    for k in ("text", "target", "answer"):
        if f"{k}_ids" in batch:
            ids, mask = batch[f"{k}_ids"], batch[f"{k}_mask"]
            assert ids.dtype == torch.long and ids.shape == mask.shape
            assert (ids[:, 0] == 101).all() and (mask[:, 0] == 1).all()
            assert ((ids == 0) == (mask == 0)).all()  # padding exactly where the mask is 0
    if "target_ids" in batch:  # [CLS] text [SEP]
        ends = batch["target_mask"].sum(1) - 1
        assert (batch["target_ids"][torch.arange(B), ends] == 102).all()
    if "answer_ids" in batch:
        K = batch["answer_ids"].shape[0]
        assert batch["answer_weight"].shape == batch["answer_index"].shape == (K,)
        assert batch["answer_index"].max() < B
    if "box" in batch:
        assert batch["box"].shape == (B, 4) and (batch["box"] >= 0).all() and (batch["box"] <= 1).all()
    if "label" in batch:
        assert batch["label"].shape == (B,)
    assert len(batch["meta"]) == B and all(m["skipped_bad"] == 0 for m in batch["meta"])


def test_vqa_question_has_no_sep_by_default_and_option(synth_world, tokenizer):
    loader, _ = build_loader("vqa", synth_world[0], "val", tokenizer, RES, False, B)
    assert 102 not in next(iter(loader))["text_ids"].tolist()[0]
    loader, _ = build_loader("vqa", synth_world[0], "val", tokenizer, RES, False, B,
                             collate_opts={"text_sep": "hf"})
    b = next(iter(loader))
    assert (b["text_ids"][torch.arange(B), b["text_mask"].sum(1) - 1] == 102).all()


def test_answer_weights_official():
    names, w = answer_weights({"answers": ["yes"] * 7 + ["no"] * 3, "dataset": "vqa"})
    assert dict(zip(names, w)) == pytest.approx({"yes": 0.7, "no": 0.3})
    names, w = answer_weights({"answers": ["two"], "dataset": "vg"})
    assert w == [0.5]


def test_vqa_train_includes_vg_qa(synth_world):
    ds = build_dataset("vqa", synth_world[0], "train", None, RES, True)
    no_vg = build_dataset("vqa", synth_world[0], "train", None, RES, True, include_vg=False)
    assert len(ds) > len(no_vg) and load_answer_list("vqa", synth_world[0])[0]


def test_retrieval_eval_exposes_texts(synth_world, manifest=None):
    ds = build_dataset("retrieval_coco", synth_world[0], "test", None, RES, False)
    assert len(ds.texts) == 5 * len(ds) and ds.txt2img[7] == 1 and ds.img2txt[1] == [5, 6, 7, 8, 9]


def test_grounding_box_maps_back_to_pixels(synth_world):
    ds = build_dataset("grounding", synth_world[0], "val", None, RES, False)
    ex = ds[0]
    back = box_to_original(ex["box"].tolist(), ex["meta"]["pad"])
    assert back == pytest.approx(ex["meta"]["box_xywh"], abs=0.05)
    from PIL import Image

    img = Image.new("RGB", (100, 50))
    t, box, info = resize_pad(img, [50, 0, 50, 50], 64)  # wide image: padded top and bottom
    assert info["top"] == 16 and box.tolist() == pytest.approx([0.75, 0.5, 0.5, 0.5])


def test_flip_off_where_left_right_matters(synth_world):
    for task in ("grounding", "nlvr2"):
        ds = build_dataset(task, synth_world[0], "train", None, RES, True)
        names = [type(t).__name__ for t in getattr(ds.transform, "transforms", [])]
        assert "RandomHorizontalFlip" not in names
    ds = build_dataset("vqa", synth_world[0], "train", None, RES, True)
    assert "RandomHorizontalFlip" in [type(t).__name__ for t in ds.transform.transforms]


def test_uniform_frame_sampling_official():
    assert sample_indices(16, 8) == [0, 2, 4, 6, 8, 10, 12, 14]
    assert sample_indices(5, 8) == [0, 0, 1, 1, 2, 3, 3, 4]  # short video: frames repeat
    assert len(sample_indices(100, 16)) == 16


def test_pretrain_shards_counted(synth_world):
    ds = build_dataset("pretrain", synth_world[0], "train", None, RES, True, dataset="pretrain_14m")
    n_jsonl = synth_world[1]["datasets"]["pretrain_14m"]["splits"]["train"]["records"]
    assert len(ds) == n_jsonl + synth_world[1]["counts"]["pretrain_14m_extra"]
    items = list(ds)
    assert len(items) == len(ds)
    assert len({it["image_idx"] for it in items[n_jsonl:]}) == len(items) - n_jsonl


def test_eval_options_limit_and_strict(copy_dataset):
    """Evaluation's options: `limit` keeps the first N records (retrieval texts follow them);
    `strict` turns a bad image into a DataError instead of a replacement example."""
    from mplug.data.formats import read_records
    from mplug.errors import DataError

    root = copy_dataset("coco_retrieval", "snli_ve")
    ds = build_dataset("retrieval_coco", root, "test", None, RES, False, limit=2)
    assert len(ds) == 2 and ds.img2txt[-1][-1] == len(ds.texts) - 1 == 9
    rec = read_records(root / "snli_ve" / "dev.jsonl", "snli_ve")[0]
    (root / "snli_ve" / rec["image"]).write_bytes(b"")
    lenient = build_dataset("snli_ve", root, "dev", None, RES, False)  # premises repeat: >= 1
    assert lenient[0]["meta"]["skipped_bad"] >= 1 and lenient[0]["meta"]["pair_id"] != rec["pair_id"]
    strict = build_dataset("snli_ve", root, "dev", None, RES, False, strict=True)
    with pytest.raises(DataError, match="zero-byte"):
        strict[0]


def test_collator_encoders_match_batches(synth_world, tokenizer):
    """encode_text / encode_answers (used for eval galleries and answer lists) are the batch's."""
    from mplug.data.collate import Collator

    loader, ds = build_loader("vqa", synth_world[0], "train", tokenizer, RES, True, B,
                              include_vg=False)
    batch = next(iter(loader))
    col = Collator("vqa", tokenizer)
    ids, mask = col.encode_text(["what colour is the cube"])
    assert 102 not in ids[0].tolist()  # questions: [CLS] q, no [SEP]
    a_ids, _ = col.encode_answers(["red"])
    assert a_ids[0].tolist() == [101, *tokenizer.convert_tokens_to_ids(["red"]), 102]
    assert batch["answer_ids"].shape[1] <= col.max_answer_len
    r_ids, _ = Collator("retrieval_coco", tokenizer).encode_text(["a red cube"])
    assert r_ids[0, 0].item() == 101 and 102 not in r_ids[0].tolist()  # official: [CLS] caption
    g_ids, _ = Collator("grounding", tokenizer).encode_text(["a red cube"])
    assert g_ids[0, -1].item() == 102  # the official grounding dataset appends [SEP] itself


def test_strict_video_names_an_unreadable_frame(copy_dataset):
    """Training repeats the previous frame (counted in meta); evaluation (strict) stops."""
    from mplug.data.formats import read_records
    from mplug.errors import DataError

    root = copy_dataset("msrvtt_qa")
    rec = read_records(root / "msrvtt_qa" / "test.jsonl", "video_qa")[0]
    frame = sorted((root / "msrvtt_qa" / rec["video"]).iterdir())[2]
    frame.write_bytes(b"not an image")
    ex = build_dataset("video_qa_msrvtt", root, "test", None, RES, False)[0]
    assert ex["meta"]["bad_frames"] >= 1 and ex["meta"]["question_id"] == rec["question_id"]
    with pytest.raises(DataError, match=frame.name):
        build_dataset("video_qa_msrvtt", root, "test", None, RES, False, strict=True)[0]


def test_pretrain_stream_is_shuffled_per_epoch_and_reproducible(synth_world):
    """The streamed pretraining set (JSONL pairs + webdataset shards) is reshuffled every epoch,
    identically for the same (seed, epoch) -- what every rank and a resumed run rely on -- and
    every sample keeps its image_idx whatever the order."""
    import torch

    ds = build_dataset("pretrain", synth_world[0], "train", None, RES, True, dataset="pretrain_14m")

    def order(epoch, seed=0):
        ds.set_epoch(epoch, seed)
        torch.manual_seed(0)
        return [(it["meta"]["image_id"], it["text"], it["image_idx"]) for it in ds]

    e0, e0_again, e1 = order(0), order(0), order(1)
    assert e0 == e0_again
    assert e0 != e1 and sorted(e0) == sorted(e1)  # same samples, another order
    n_jsonl = synth_world[1]["datasets"]["pretrain_14m"]["splits"]["train"]["records"]
    assert [x[2] for x in e0[:n_jsonl]] != sorted(x[2] for x in e0[:n_jsonl])  # JSONL permuted
    shard = e0[n_jsonl:]
    assert [x[2] for x in shard] != sorted(x[2] for x in shard)  # shard samples mixed
    assert order(0, seed=1) != e0
    evaluation = build_dataset("pretrain", synth_world[0], "train", None, RES, False,
                               dataset="pretrain_14m")
    idx = [it["image_idx"] for it in evaluation]
    assert idx[n_jsonl:] == sorted(idx[n_jsonl:])  # not training: file order


def test_stream_augments_a_sample_as_it_leaves_the_shuffle_buffer(synth_world):
    """A run resumed mid-epoch replays the stream up to its step, then restores the RNG: the next
    sample's augmentation must come from the RNG at that point, not from when the sample entered
    the shuffle buffer (a CI run's resumed weights differed from the uninterrupted run's)."""
    import torch

    ds = build_dataset("pretrain", synth_world[0], "train", None, RES, True, dataset="pretrain_14m")
    n_jsonl = synth_world[1]["datasets"]["pretrain_14m"]["splits"]["train"]["records"]
    k = n_jsonl + 3  # a shard sample, drawn from a buffer that filled before it was yielded

    def kth_image(rng_seed_before: int) -> torch.Tensor:
        ds.set_epoch(0, 0)
        torch.manual_seed(rng_seed_before)  # what the steps before the k-th sample drew differs
        stream = iter(ds)
        for _ in range(k):
            next(stream)
        torch.manual_seed(123)  # the RNG as restored just before the k-th sample
        return next(stream)["image"]

    assert torch.equal(kth_image(1), kth_image(2))
