"""Where the official code differs from the paper (reference: official-mplug.md §0 and §5), and
what the run's config chose. Each entry names the config keys that select the behaviour; the
report shows every occurrence of those keys in the run config, or says the default applies."""
from __future__ import annotations

from typing import Any

from mplug.report.collect import find_key

DIFFERENCES: list[dict[str, Any]] = [
    {"topic": "Skip-connection schedule",
     "paper": "blocks of S asymmetric co-attention layers followed by one connected-attention layer, repeated",
     "official": "relative fusion layer i is connected only if i != 0 and i % S == 0: base (S=3) has one "
                 "connected layer (the 4th), large (S=6) none, so visual tokens pass through unchanged",
     "keys": ("schedule",), "default": "official"},
    {"topic": "Connected-attention residual",
     "paper": "Eq. 4-5: LN(SA([v;l]) + [v;l]), LN(FFN(.) + .)",
     "official": "reuses the text self-attention/FFN weights and adds an extra visual residual v <- v + out_v",
     "keys": ("schedule",), "default": "official (follows the schedule option)"},
    {"topic": "Captioning input",
     "paper": "the connected (fusion) output feeds the decoder",
     "official": "the decoder cross-attends to the visual tokens only; text encoder and fusion unused",
     "keys": ("caption_input", "caption_uses_fusion"), "default": "official"},
    {"topic": "VQA momentum distillation",
     "paper": "not stated",
     "official": "momentum model runs but alpha is never passed: distillation weight 0",
     "keys": ("alpha", "distill"), "default": "official (alpha 0 for VQA)"},
    {"topic": "Fine-tuning weight decay and resolution",
     "paper": "§7.1: weight decay 0.05; 336x336 images, 504x504 for VQA",
     "official": "configs: weight decay 0.02; VQA large 336 (base 384), caption 336/384",
     "keys": ("weight_decay", "image_res"), "default": "official"},
    {"topic": "Fine-tuning learning rates and epochs (Table 11)",
     "paper": "VQA 2e-5/5e-6, retrieval 5 epochs, SCST 8e-7, grounding 2e-5/2e-6",
     "official": "VQA lr1 3e-5 / lr2 5e-6, retrieval 8 epochs, SCST lr 1e-6 (min 8e-8), grounding 2e-5/5e-6",
     "keys": ("lr", "lr_visual", "epochs"), "default": "official"},
    {"topic": "Pre-training schedule",
     "paper": "§5.1: batch 1024 on 16 A100, warm-up to 1e-5 (ViT-B) / 1e-4 (BERT) over 1000 iterations, "
              "cosine to 1e-6",
     "official": "configs: per-GPU batch 256 (base) / 128 (large), ALBEF step warm-up (warmup_lr 1e-6, 20 "
                 "steps of 100 iterations), min_lr 1e-6 (base) / 2e-6 (large)",
     "keys": ("warmup_steps", "warmup_epochs", "warmup_lr", "min_lr", "batch_size"), "default": "see config"},
    {"topic": "Retrieval re-ranking k",
     "paper": "k = 256 for COCO, 128 for Flickr30K",
     "official": "k_test 256 in both configs; image retrieval scores by the ITM logit only, video retrieval "
                 "adds the ITC similarity",
     "keys": ("k_test",), "default": "official"},
    {"topic": "Zero-shot prompts",
     "paper": "'A picture of' fed to the text encoder (NoCaps); 'A video of' (VATEX)",
     "official": "VATEX decodes from the decoder prompt '[CLS] a picture' ('a picture of' minus the last token)",
     "keys": ("prompt",), "default": "official"},
    {"topic": "Video frames",
     "paper": "8 frames for retrieval, 16 for QA, 8 for captioning",
     "official": "retrieval 12 frames at 224, QA 16 at 480, VATEX 8 at 448",
     "keys": ("num_frames", "num_frm_test", "frames"), "default": "official"},
    {"topic": "CLIP position-embedding bug",
     "paper": "CLIP-initialised visual encoder",
     "official": "initialize_clip sets an attribute instead of the data: position embedding is zero until an "
                 "mPLUG checkpoint is loaded",
     "keys": ("clip_pos_embed_bug", "pos_embed_bug"), "default": "fixed (CLIP position embedding loaded)"},
    {"topic": "Grounding test normalisation",
     "paper": "not stated",
     "official": "training normalises with CLIP mean/std, testing with ImageNet mean/std",
     "keys": ("grounding_test_norm",), "default": "see config"},
    {"topic": "Released code coverage",
     "paper": "pre-training (ITC, ITM, MLM, PrefixLM), NLVR2, SNLI-VE",
     "official": "not released: this harness's implementations follow the paper and ALBEF/BLIP",
     "keys": (), "default": "paper (re-implemented)"},
]


def run_choices(config: dict[str, Any]) -> list[dict[str, Any]]:
    """DIFFERENCES with a 'run' field: the config values that select each behaviour."""
    out = []
    for d in DIFFERENCES:
        hits = find_key(config, tuple(d["keys"])) if d["keys"] else []
        shown = "; ".join(f"{p} = {v}" for p, v in hits[:8] if not isinstance(v, (dict, list)))
        run = shown or (f"not set in the run config: default ({d['default']})" if d["keys"]
                        else d["default"])
        out.append({**d, "run": run})
    return out
