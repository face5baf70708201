"""Encoder-text tokenisation per task against ids written out from the official rule.

Official rule (models/tokenization_bert.py `build_inputs_with_special_tokens` on a single text):
`[CLS]`=101 + body truncated to max_length-1 tokens, no trailing [SEP] (questions, retrieval
captions); grounding appends [SEP] itself (`[CLS] query [SEP]`, body max_length-2); pre-training,
NLVR2 and SNLI-VE (no official code) keep ALBEF's `[CLS] text [SEP]`. Padding is [PAD]=0.
"""
from __future__ import annotations

import pytest

from mplug.data.collate import Collator

CLS, SEP, PAD = 101, 102, 0


def _words(tokenizer, n):
    """n whole-word vocabulary entries (one token each) and their ids."""
    words = [w for w in tokenizer.vocab if w.isalpha() and w.islower() and len(w) > 2][:n]
    ids = [tokenizer.vocab[w] for w in words]
    assert len(words) == n and all(tokenizer.tokenize(w) == [w] for w in words)
    return words, ids


@pytest.mark.parametrize("task,max_len,sep", [("retrieval", 30, False), ("video_retrieval", 30, False),
                                              ("vqa", 25, False), ("grounding", 20, True),
                                              ("pretrain", 30, True), ("nlvr2", 30, True),
                                              ("snli_ve", 30, True)])
def test_official_encoder_text_ids(tokenizer, task, max_len, sep):
    words, ids = _words(tokenizer, 35)
    short, long = " ".join(words[:3]), " ".join(words)  # long: 35 tokens > every max_length
    out, mask = Collator(task, tokenizer).encode_text([short, long])
    body = max_len - (2 if sep else 1)
    want_long = [CLS] + ids[:body] + ([SEP] if sep else [])
    want_short = [CLS] + ids[:3] + ([SEP] if sep else [])
    assert out.tolist() == [want_short + [PAD] * (len(want_long) - len(want_short)), want_long]
    assert mask.sum(1).tolist() == [len(want_short), len(want_long)]
    assert len(want_long) == max_len


@pytest.mark.parametrize("task,max_len", [("retrieval", 30), ("vqa", 25), ("grounding", 20)])
def test_hf_option_ends_every_text_with_sep(tokenizer, task, max_len):
    words, ids = _words(tokenizer, 35)
    out, _ = Collator(task, tokenizer, text_sep="hf").encode_text([" ".join(words[:3]), " ".join(words)])
    assert out.tolist()[0][:5] == [CLS] + ids[:3] + [SEP]
    assert out.tolist()[1] == [CLS] + ids[:max_len - 2] + [SEP]


def test_unknown_text_sep_rule_is_refused(tokenizer):
    with pytest.raises(ValueError, match="text_sep"):
        Collator("retrieval", tokenizer, text_sep="yes").encode_text(["a"])
