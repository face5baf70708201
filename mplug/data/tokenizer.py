"""Load a BERT WordPiece tokenizer from a local file or directory (never from the hub).

Official mPLUG quirk: its tokenizer copy adds no trailing [SEP] to a single sequence, so an
encoder text is `[CLS] text` and targets carry `[SEP]` explicitly (`"answer [SEP]"` ->
`[CLS] answer [SEP]`). `encode_texts(..., add_sep=False)` reproduces that.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mplug.errors import DataError


def load_tokenizer(path_or_dir: str | os.PathLike) -> Any:
    """A transformers BertTokenizer from `vocab.txt` or a HF tokenizer directory (offline).

    transformers 5.x ignores `vocab_file=`; we pass `vocab=` or use from_pretrained(local_dir).
    """
    from transformers import BertTokenizer

    p = Path(path_or_dir)
    if p.is_dir():
        if (p / "tokenizer.json").is_file() or (p / "tokenizer_config.json").is_file():
            try:
                return BertTokenizer.from_pretrained(str(p), local_files_only=True)
            except (OSError, ValueError) as err:
                raise DataError(f"{p}: cannot load tokenizer: {err}") from None
        vocab = p / "vocab.txt"
    else:
        vocab = p
    if not vocab.is_file():
        raise DataError(f"{vocab}: tokenizer vocabulary not found. For the synthetic world run "
                        f"`mplug data synth --out DIR` (writes DIR/vocab.txt); for real runs put "
                        f"bert-base-uncased's vocab.txt (or a HF tokenizer directory) there")
    if vocab.stat().st_size == 0:
        raise DataError(f"{vocab}: empty vocabulary file")
    present = set(vocab.read_text(encoding="utf-8").split("\n"))
    missing = [t for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]") if t not in present]
    if missing:  # BertTokenizer would silently add them as new tokens at new ids
        raise DataError(f"{vocab}: not a BERT vocabulary (missing {', '.join(missing)})")
    return BertTokenizer(vocab=str(vocab), do_lower_case=True)


def encode_texts(tokenizer: Any, texts: list[str], max_len: int, add_sep: bool = True):
    """Tokenise a batch, pad to the longest, truncate to `max_len`.

    add_sep=True: `[CLS] text [SEP]` (HF convention; body max_len-2). add_sep=False: `[CLS] text`
    (the official tokenizer copy on a single text: VQA questions, retrieval captions; body
    max_len-1). Which one a task's encoder text gets is `Collator.text_sep`. Returns (ids, mask) as long tensors (B, L).
    """
    import torch

    rows = []
    for t in texts:
        ids = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(t))
        body = ids[: max_len - (2 if add_sep else 1)]
        rows.append([tokenizer.cls_token_id] + body + ([tokenizer.sep_token_id] if add_sep else []))
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)  # (B, L)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids, mask


# The official captioning/VQA scripts turn generated ids into text with the tokenizer's decode
# and then remove exactly these strings; every other token, [UNK] included, reaches the scorer.
OFFICIAL_STRIPPED = ("[CLS]", "[SEP]", "[PAD]")


def decode_generated(tokenizer: Any, rows: list[list[int]], keep_unk: bool = True) -> list[str]:
    """Generated id rows -> the strings a scorer sees. `keep_unk` (official) strips only
    OFFICIAL_STRIPPED, so an `[UNK]` stays in the text (and costs the n-gram matches an official
    evaluation loses); False skips every special token (the HF convention)."""
    if not keep_unk:
        return [t.strip() for t in tokenizer.batch_decode(rows, skip_special_tokens=True)]
    out = []
    for text in tokenizer.batch_decode(rows, skip_special_tokens=False):
        for special in OFFICIAL_STRIPPED:
            text = text.replace(special, " ")
        out.append(" ".join(text.split()))
    return out


def find_vocab(data_dir: str | os.PathLike, explicit: str | os.PathLike | None = None) -> Path:
    """The run's tokenizer: `explicit` (--tokenizer / config `tokenizer:`), else `vocab.txt` in
    the dataset folder or up to two parents (where `mplug data synth` writes it)."""
    if explicit:
        return Path(explicit)
    data_dir = Path(data_dir)
    for d in (data_dir, data_dir.parent, data_dir.parent.parent):
        if (d / "vocab.txt").is_file():
            return d / "vocab.txt"
    raise DataError(f"no vocab.txt in {data_dir} or its two parents; pass --tokenizer PATH or set "
                    "`tokenizer:` in the config (bert-base-uncased vocab.txt or a tokenizer folder), "
                    "or make the synthetic world with `mplug data synth`")


def model_vocab_size(tokenizer: Any, config_vocab_size: int) -> int:
    """The model's vocab_size for this tokenizer: THE single rule shared by training and evaluation.

    The named config's size, widened to `len(tokenizer)` when the tokenizer is larger (the
    synthetic world's vocabulary has more words than mplug_tiny/mplug_smoke's 1100 rows). A
    smaller tokenizer keeps the config's size so official 30522-row checkpoints still load.
    Train and eval must agree, or a checkpoint's embedding rows do not fit the evaluated model.
    """
    return max(int(config_vocab_size), len(tokenizer))


def vocab_overrides(tokenizer: Any, arch: str) -> dict[str, int]:
    """`build_model(arch, task, **vocab_overrides(tok, arch))`: {"vocab_size": n} when the
    tokenizer widens the named config `arch`, else {} (see `model_vocab_size`)."""
    from mplug.models import get_config

    base = get_config(arch).text.vocab_size
    n = model_vocab_size(tokenizer, base)
    return {"vocab_size": n} if n != base else {}
