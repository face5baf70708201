"""Record schemas, validation errors, stats.json, the BERT-layout vocabulary and tokenizer."""
from __future__ import annotations

import pytest

from mplug.data import formats, vocab
from mplug.data.tokenizer import encode_texts, load_tokenizer
from mplug.errors import DataError

GOOD = {
    "vqa": {"question_id": 1, "image": "a.png", "question": "what?", "answers": ["x"] * 10,
            "answer_type": "other"},
    "grounding": {"ref_id": 3, "image": "a.png", "expression": "red one", "box": [1, 2, 10, 10],
                  "width": 64, "height": 64, "dataset": "refcoco", "split": "val"},
    "retrieval": {"image": "a.png", "image_id": 1, "captions": ["a", "b"], "text_ids": [0, 1]},
    "nlvr2": {"pair_id": "p", "image_left": "l.png", "image_right": "r.png", "statement": "s",
              "label": True},
}


@pytest.mark.parametrize("schema,change,field", [
    ("vqa", {"answers": ["x"] * 9}, "answers"),
    ("vqa", {"answer_type": "colour"}, "answer_type"),
    ("vqa", {"question": ""}, "question"),
    ("grounding", {"box": [60, 2, 10, 10]}, "box"),
    ("grounding", {"box": [1, 2, 0, 10]}, "box"),
    ("grounding", {"dataset": "refclef"}, "dataset"),
    ("retrieval", {"text_ids": [0]}, "text_ids"),
    ("nlvr2", {"label": "True"}, "label"),
])
def test_validation_names_the_bad_field(schema, change, field):
    assert formats.validate_record(GOOD[schema], schema) is None
    bad = formats.validate_record({**GOOD[schema], **change}, schema)
    assert bad is not None and bad[0] == field


def test_missing_required_field_and_vg_answers():
    rec = dict(GOOD["vqa"])
    del rec["image"]
    assert formats.validate_record(rec, "vqa") == ("image", "missing")
    assert formats.validate_record({**GOOD["vqa"], "answers": ["a"], "dataset": "vg"}, "vqa") is None


def test_write_read_roundtrip_and_error_line(tmp_path):
    path = tmp_path / "val.jsonl"
    assert formats.write_records(path, "vqa", [GOOD["vqa"], {**GOOD["vqa"], "question_id": 2}]) == 2
    assert [r["question_id"] for r in formats.read_records(path, "vqa")] == [1, 2]
    with pytest.raises(DataError, match="field 'answers'"):
        formats.write_records(path, "vqa", [{**GOOD["vqa"], "answers": 3}])
    assert len(formats.read_records(path, "vqa")) == 2  # the failed write left the file intact


def test_stats_roundtrip_and_validation(tmp_path):
    s = formats.make_stats("vqa", "synthetic", images_expected=10, images_obtained=8,
                           texts_expected=5, texts_obtained=5, splits={"train": 5})
    assert s["images_failed"] == 2
    formats.write_stats(tmp_path, s)
    assert formats.read_stats(tmp_path) == s
    (tmp_path / "stats.json").write_text('{"dataset": "x"}')
    with pytest.raises(DataError, match="source"):
        formats.read_stats(tmp_path)


def test_vocab_matches_bert_base_uncased_layout(synth_world):
    toks = (synth_world[0] / "vocab.txt").read_text().splitlines()
    for tok, i in vocab.SPECIAL_IDS.items():
        assert toks[i] == tok
    assert toks[1] == "[unused0]" and toks[99] == "[unused98]" and toks[104] == "[unused99]"
    assert toks[vocab.unused_id(339)] == "[unused339]" and vocab.unused_id(340) == 345
    assert toks[vocab.unused_id(676)] == "[unused676]" and vocab.unused_id(676) == 681
    assert toks[998] == "[unused993]" and len(toks) == len(set(toks))


def test_tokenizer_round_trip_and_special_ids(tokenizer):
    assert (tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.cls_token_id,
            tokenizer.sep_token_id, tokenizer.mask_token_id) == (0, 100, 101, 102, 103)
    assert tokenizer.convert_tokens_to_ids("[unused340]") == 345
    text = "there are two shapes : a big red circle and a small blue triangle"
    ids = tokenizer(text)["input_ids"]
    assert ids[0] == 101 and ids[-1] == 102
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    q_ids, q_mask = encode_texts(tokenizer, ["what colour is the circle?", "a"], 25, add_sep=False)
    assert q_ids[0, 0] == 101 and 102 not in q_ids[0].tolist() and q_mask[1].sum() == 2


def test_tokenizer_errors(tmp_path):
    with pytest.raises(DataError, match="mplug data synth"):
        load_tokenizer(tmp_path / "nope.txt")
    with pytest.raises(DataError, match="not found"):
        load_tokenizer(tmp_path)
    (tmp_path / "vocab.txt").write_text("hello\nworld\n")
    with pytest.raises(DataError, match="not a BERT vocabulary"):
        load_tokenizer(tmp_path)
