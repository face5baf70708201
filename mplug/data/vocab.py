"""A BERT-layout WordPiece vocabulary for the synthetic world.

The special and `[unused]` ids match bert-base-uncased exactly, so code that hard-codes ids
(decoding from [CLS]=101 until [SEP]=102, grounding coordinate tokens [unused340..676]) runs
unchanged on the synthetic world:

  0 [PAD] · 1..99 [unused0..98] · 100 [UNK] · 101 [CLS] · 102 [SEP] · 103 [MASK] ·
  104..998 [unused99..993] · then the world's words, single characters and '##' pieces.

So [unusedK] has id K+1 for K <= 98 and K+5 for K >= 99, as in bert-base-uncased.
"""
from __future__ import annotations

import os
import string

from mplug.utils.io import atomic_write_text

N_UNUSED = 994  # [unused0]..[unused993], as in bert-base-uncased
SPECIAL_IDS = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103}


def unused_id(k: int) -> int:
    """Id of [unusedK] in the bert-base-uncased layout."""
    if not 0 <= k < N_UNUSED:
        raise ValueError(f"[unused{k}] does not exist (0..{N_UNUSED - 1})")
    return k + 1 if k <= 98 else k + 5


def bert_layout_head() -> list[str]:
    """The first 999 tokens: specials and [unused] slots at their bert-base-uncased ids."""
    toks = ["[PAD]"] + [f"[unused{k}]" for k in range(99)]
    toks += ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    toks += [f"[unused{k}]" for k in range(99, N_UNUSED)]
    return toks


def build_vocab(words: list[str]) -> list[str]:
    """Head + punctuation, digits, letters and '##' letter pieces (so any lower-case word
    tokenises without [UNK]) + the given whole words, in a fixed order."""
    toks = bert_layout_head()
    seen = set(toks)
    chars = list(string.punctuation) + list(string.digits) + list(string.ascii_lowercase)
    pieces = [f"##{c}" for c in string.digits + string.ascii_lowercase]
    for t in chars + pieces + sorted(set(words)):
        if t not in seen:
            seen.add(t)
            toks.append(t)
    return toks


def write_vocab(path: str | os.PathLike, words: list[str]) -> list[str]:
    toks = build_vocab(words)
    atomic_write_text(path, "".join(t + "\n" for t in toks))
    return toks
