"""Collate functions: examples -> the batch dict of docs/architecture.md ("Batch contract").

Keys: image, text_ids/text_mask, image_idx, target_ids/target_mask, answer_ids/answer_mask,
answer_weight/answer_index, box, label, meta. Masks are 1 on real tokens.

Tokenisation of encoder texts (`text_sep`). The official tokenizer copy
(models/tokenization_bert.py, `build_inputs_with_special_tokens`) encodes a single text as
`[CLS] text` with no trailing [SEP], and the official scripts that feed it a single encoder text
get exactly that: VQA / video-QA questions (max 25) and retrieval captions, image and video (max
30), so the body keeps max_length-1 tokens. Grounding's official dataset appends [SEP] to the
query itself (`[CLS] query [SEP]`, max 20). Pre-training, NLVR2 and SNLI-VE code was never
released: their texts keep `[CLS] text [SEP]`, the convention of ALBEF, which mPLUG's
pre-training follows. `text_sep="official"` (default) applies this per-task rule;
`text_sep="hf"` puts [SEP] after every encoder text (the HF convention). Targets and answers,
which the official code writes with an explicit [SEP], are always `[CLS] text [SEP]`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from mplug.data.formats import data_task
from mplug.data.tokenizer import encode_texts

# official max lengths: questions 25 (no OCR), captions/retrieval 30, grounding 20,
# caption targets 25 (--max_input_length 25), answers 10 (generation max_length)
DEFAULT_MAX_LEN = {"text": 30, "question": 25, "expression": 20, "target": 25, "answer": 10}
TEXT_SEP_RULES = ("official", "hf")


@dataclass
class Collator:
    """Picklable collate function for a task (works with DataLoader worker processes)."""

    task: str
    tokenizer: Any
    text_sep: str = "official"  # "official": no [SEP] where the official scripts add none; "hf": always
    max_text_len: int | None = None
    max_target_len: int = DEFAULT_MAX_LEN["target"]
    max_answer_len: int = DEFAULT_MAX_LEN["answer"]

    def __call__(self, examples: list[dict]) -> dict:
        if self.tokenizer is None:
            raise ValueError("Collator needs a tokenizer (mplug.data.tokenizer.load_tokenizer)")
        batch: dict[str, Any] = {"image": _stack_images([e["image"] for e in examples])}
        if "text" in examples[0]:
            batch["text_ids"], batch["text_mask"] = self.encode_text([e["text"] for e in examples])
        if "image_idx" in examples[0]:
            batch["image_idx"] = torch.tensor([e["image_idx"] for e in examples], dtype=torch.long)
        if self.task == "pretrain":  # PrefixLM target: the caption itself
            batch["target_ids"], batch["target_mask"] = encode_texts(
                self.tokenizer, [e["text"] for e in examples], self.max_target_len)
        if "target" in examples[0]:
            batch["target_ids"], batch["target_mask"] = encode_texts(
                self.tokenizer, [e["target"] for e in examples], self.max_target_len)
        if "answers" in examples[0]:
            answers, weights, index = [], [], []
            for row, e in enumerate(examples):
                answers += e["answers"]
                weights += e["weights"]
                index += [row] * len(e["answers"])
            batch["answer_ids"], batch["answer_mask"] = self.encode_answers(answers)  # (K, T)
            batch["answer_weight"] = torch.tensor(weights, dtype=torch.float)  # (K,)
            batch["answer_index"] = torch.tensor(index, dtype=torch.long)      # (K,) -> row
        if "box" in examples[0]:
            batch["box"] = torch.stack([e["box"] for e in examples]).float()  # (B, 4) cxcywh
        if "label" in examples[0]:
            batch["label"] = torch.tensor([e["label"] for e in examples], dtype=torch.long)
        batch["meta"] = [e["meta"] for e in examples]
        return batch

    def encode_text(self, texts: list[str]):
        """The encoder text of this task, as in a batch's `text_ids`/`text_mask` (B, L).

        Also what retrieval evaluation encodes its caption gallery with, so the gallery and the
        training pairs are tokenised alike."""
        spec = data_task(self.task)  # its encoder text's kind and whether official adds [SEP]
        default = DEFAULT_MAX_LEN[spec.encoder_text]
        if self.text_sep not in TEXT_SEP_RULES:
            raise ValueError(f"text_sep must be one of {TEXT_SEP_RULES}, got {self.text_sep!r}")
        add_sep = self.text_sep == "hf" or spec.encoder_sep
        return encode_texts(self.tokenizer, texts, self.max_text_len or default, add_sep=add_sep)

    def encode_answers(self, answers: list[str]):
        """Answers as `[CLS] answer [SEP]` (K, T): VQA training targets and the candidate list
        that (video) QA evaluation ranks."""
        return encode_texts(self.tokenizer, answers, self.max_answer_len)


def _stack_images(images: list) -> torch.Tensor:
    if isinstance(images[0], (list, tuple)):  # NLVR2: two images per example -> (B, 2, 3, H, W)
        return torch.stack([torch.stack(list(pair)) for pair in images])
    return torch.stack(images)  # (B, 3, H, W) or video (B, F, 3, H, W)


def count_bad(batch: dict) -> int:
    """Bad images skipped to build this batch (sum over workers: add this up per epoch)."""
    return sum(int(m.get("skipped_bad", 0)) for m in batch.get("meta", ()))
