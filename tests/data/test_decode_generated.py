"""What the caption scorer sees: the official decoding strips only [CLS]/[SEP]/[PAD] and keeps
[UNK] (the official captioning scripts, e.g. mPLUG/caption_mplug.py); the HF convention skips every
special token and stays available."""
from pathlib import Path

import pytest

from mplug.data.tokenizer import decode_generated, load_tokenizer

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "dog", "on", "grass"]


@pytest.fixture()
def tok(tmp_path: Path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(WORDS) + "\n", encoding="utf-8")
    return load_tokenizer(vocab)


def test_official_decoding_keeps_unk_and_strips_cls_sep_pad(tok):
    ids = [[2, 5, 1, 7, 8, 3, 0, 0]]  # [CLS] a [UNK] on grass [SEP] [PAD] [PAD]
    assert decode_generated(tok, ids) == ["a [UNK] on grass"]
    assert decode_generated(tok, ids, keep_unk=False) == ["a on grass"]


def test_a_plain_caption_decodes_the_same_both_ways(tok):
    ids = [[2, 5, 6, 3, 0], [2, 6, 3, 0, 0]]
    assert decode_generated(tok, ids) == decode_generated(tok, ids, keep_unk=False) == ["a dog", "dog"]
