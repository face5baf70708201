"""Tiny synthetic batches following the batch contract (docs/architecture.md)."""
from __future__ import annotations

import torch

CLS, SEP, PAD = 101, 102, 0


def text(b: int, length: int, vocab: int, gen: torch.Generator, min_len: int = 3):
    """`[CLS] w.. [SEP]` right-padded to `length`, ordinary words from the top of the vocab."""
    low = 1000 if vocab > 1000 else 200
    ids = torch.zeros(b, length, dtype=torch.long)
    mask = torch.zeros(b, length, dtype=torch.long)
    for i in range(b):
        n = int(torch.randint(min_len, length - 1, (1,), generator=gen))
        ids[i, 0] = CLS
        ids[i, 1:n + 1] = torch.randint(low, vocab, (n,), generator=gen)
        ids[i, n + 1] = SEP
        mask[i, : n + 2] = 1
    return ids, mask


def make_batch(task: str, cfg, b: int = 4, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    res, vocab = cfg.vision.image_res, cfg.text.vocab_size
    image = torch.randn(b, 3, res, res, generator=gen)
    ids, mask = text(b, 8, vocab, gen)
    batch = {"image": image, "text_ids": ids, "text_mask": mask, "meta": [{} for _ in range(b)]}
    if task in ("pretrain", "retrieval"):
        batch["image_idx"] = torch.tensor([0, 0, 1, 2][:b] + list(range(3, b - 1)))[:b]
    if task in ("pretrain", "caption"):
        batch["target_ids"], batch["target_mask"] = text(b, 9, vocab, gen, min_len=4)
    if task == "caption":
        del batch["text_ids"], batch["text_mask"]
    if task == "vqa":
        batch["answer_ids"], batch["answer_mask"] = text(b + 2, 5, vocab, gen, min_len=1)
        batch["answer_index"] = torch.tensor([0, 0, 1, 2, 3, 3][: b + 2]).clamp(max=b - 1)
        batch["answer_weight"] = torch.tensor([0.7, 0.3, 1.0, 1.0, 0.5, 0.5][: b + 2])
    if task == "grounding":
        batch["box"] = torch.rand(b, 4, generator=gen) * 0.5 + 0.25
    if task == "nlvr2":
        batch["image"] = torch.randn(b, 2, 3, res, res, generator=gen)
        batch["label"] = torch.randint(0, 2, (b,), generator=gen)
    if task == "snli_ve":
        batch["label"] = torch.randint(0, 3, (b,), generator=gen)
    return batch
