"""Where the official code (AliceMind mPLUG/configs, task scripts) differs from the paper, and
what the run's config chose. Each entry names the run-config keys that select the behaviour and
the section they live in (keys of workflow/schemas/config.schema.yaml); the report shows the
values this run resolved to, or says that the harness has no option and which behaviour it uses.

`hparams: official | paper` (top level) decides whether the `paper:` blocks of the pretrain,
finetune and evaluate jobs apply; values inside `paper:` blocks are shown only under
`hparams: paper` (they are unused otherwise).
"""
from __future__ import annotations

from typing import Any

from mplug.report.collect import find_key

_HP = "hparams"

DIFFERENCES: list[dict[str, Any]] = [
    {"topic": "Skip-connection schedule",
     "paper": "blocks of S asymmetric co-attention layers followed by one connected-attention layer, repeated",
     "official": "relative fusion layer i is connected only if i != 0 and i % S == 0: base (S=3) has one "
                 "connected layer (the 4th), large (S=6) none, so visual tokens pass through unchanged",
     "scope": ("models",), "keys": ("schedule", "stride")},
    {"topic": "Connected-attention residual",
     "paper": "Eq. 4-5: LN(SA([v;l]) + [v;l]), LN(FFN(.) + .)",
     "official": "reuses the text self-attention/FFN weights and adds an extra visual residual v <- v + out_v",
     "scope": ("models",), "keys": ("schedule",)},
    {"topic": "Captioning input",
     "paper": "the connected (fusion) output feeds the decoder",
     "official": "the decoder cross-attends to the visual tokens only; text encoder and fusion unused",
     "keys": (), "default": "official: no run-config key (model option caption_input='visual', "
                            "'fused' = the paper's reading; mplug/models/heads.py)"},
    {"topic": "VQA momentum distillation",
     "paper": "not stated",
     "official": "momentum model runs but alpha is never passed: distillation weight 0",
     "scope": ("finetune", "vqa", "train"), "keys": ("distill", "alpha")},
    {"topic": "Fine-tuning weight decay and resolution",
     "paper": "§7.1: weight decay 0.05; 336x336 images, 504x504 for VQA",
     "official": "configs: weight decay 0.02; VQA large 336 (base 384), caption 336/384",
     "scope": ("finetune",), "keys": ("weight_decay", "image_res"), "paper_block": True},
    {"topic": "Fine-tuning learning rates and epochs (Table 11)",
     "paper": "VQA 2e-5/5e-6, retrieval 5 epochs, SCST 8e-7, grounding 2e-5/2e-6",
     "official": "VQA lr1 3e-5 / lr2 5e-6, retrieval 8 epochs, SCST lr 1e-6 (min 8e-8), grounding 2e-5/5e-6",
     "scope": ("finetune",), "keys": ("lr_text", "lr_vision", "epochs", "max_steps"),
     "paper_block": True},
    {"topic": "Pre-training schedule",
     "paper": "§5.1: batch 1024 on 16 A100, warm-up to 1e-5 (ViT-B) / 1e-4 (BERT) over 1000 iterations, "
              "cosine to 1e-6",
     "official": "configs: per-GPU batch 256 (base) / 128 (large), ALBEF step warm-up (warmup_lr 1e-6, 20 "
                 "steps of 100 iterations), min_lr 1e-6 (base) / 2e-6 (large)",
     "scope": ("pretrain",), "keys": ("warmup_steps", "warmup_lr", "min_lr", "batch_size"),
     "paper_block": True},
    {"topic": "Fine-tuning learning-rate schedule",
     "paper": "§7.1: cosine decay (per step)",
     "official": "timm cosine stepped once per epoch after warmup_epochs x 100 warm-up iterations "
                 "(ALBEF scheme; scheduler: albef_epoch)",
     "scope": ("finetune",), "keys": ("scheduler", "warmup_epochs"), "paper_block": True},
    {"topic": "SCST gradient",
     "paper": "CIDEr optimisation (Rennie et al.): reward CIDEr, not further specified",
     "official": "backpropagates through beam search run in training mode (dropout on); baseline = mean "
                 "reward of the image's beams; evaluated every 1500 steps, best CIDEr kept",
     "scope": ("finetune",), "keys": ("grad_path", "eval_every")},
    {"topic": "Retrieval re-ranking k",
     "paper": "k = 256 for COCO, 128 for Flickr30K",
     "official": "k_test 256 in both configs; image retrieval scores by the ITM logit only, video retrieval "
                 "adds the ITC similarity",
     "scope": ("evaluate",), "keys": ("k_test", "score")},
    {"topic": "Zero-shot prompts",
     "paper": "'A picture of' fed to the text encoder (NoCaps); 'A video of' (VATEX)",
     "official": "VATEX decodes from the decoder prompt '[CLS] a picture' ('a picture of' minus the last token)",
     "scope": ("evaluate",), "keys": ("prompt",), "paper_block": True},
    {"topic": "Video frames",
     "paper": "8 frames for retrieval, 16 for QA, 8 for captioning",
     "official": "retrieval 12 frames at 224, QA 16 at 480, VATEX 8 at 448",
     "scope": ("evaluate",), "keys": ("num_frames",), "paper_block": True},
    {"topic": "CLIP position-embedding bug",
     "paper": "CLIP-initialised visual encoder",
     "official": "initialize_clip sets an attribute instead of the data: position embedding is zero until an "
                 "mPLUG checkpoint is loaded",
     "keys": (), "default": "fixed, no option: the CLIP position embedding is loaded "
                            "(docs/model-differences.md)"},
    {"topic": "Grounding test normalisation",
     "paper": "not stated",
     "official": "training normalises with CLIP mean/std, testing with ImageNet mean/std",
     "keys": (), "default": "no option: CLIP mean/std for training and testing "
                            "(mplug/data/transforms.py)"},
    {"topic": "Released code coverage",
     "paper": "pre-training (ITC, ITM, MLM, PrefixLM), NLVR2, SNLI-VE",
     "official": "not released: this harness's implementations follow the paper and ALBEF/BLIP",
     "keys": (), "default": "paper (re-implemented)"},
]


def _scoped(config: dict[str, Any], scope: tuple[str, ...]) -> tuple[Any, str]:
    node: Any = config
    for part in scope:
        node = node.get(part) if isinstance(node, dict) else None
    return node, ".".join(scope)


def _values(config: dict[str, Any], d: dict[str, Any], limit: int = 6) -> str:
    """'key = value (path, path, +N more)' per distinct (key, value) in the entry's scope."""
    node, prefix = _scoped(config, d.get("scope", ()))
    paper_used = config.get(_HP) == "paper"
    groups: dict[tuple[str, str], list[str]] = {}
    for path, value in find_key(node or {}, tuple(d["keys"])):
        parts = path.split(".")
        if "table11" in parts or ("paper" in parts and not paper_used):
            continue  # labels for the report / values unused under hparams: official
        if isinstance(value, (dict, list)):
            continue
        groups.setdefault((parts[-1], repr(value)), []).append(f"{prefix}.{path}" if prefix else path)
    out = []
    for (key, value), paths in groups.items():
        where = ", ".join(paths[:2]) + (f", +{len(paths) - 2} more" if len(paths) > 2 else "")
        out.append(f"{key} = {value} ({where})")
    if len(out) > limit:
        out = out[:limit] + [f"... {len(out) - limit} more values"]
    return "; ".join(out)


def run_choices(config: dict[str, Any]) -> list[dict[str, Any]]:
    """DIFFERENCES with a 'run' field: what the run config resolved each behaviour to."""
    hp = config.get(_HP, "official")
    out = []
    for d in DIFFERENCES:
        if not d["keys"]:
            run = d["default"]
        else:
            run = _values(config, d) or (f"not set under {'.'.join(d.get('scope', ())) or 'the config'}"
                                         ": the code's official default")
            if d.get("paper_block"):
                run += (f" [hparams: {hp}: the jobs' paper: values "
                        f"{'apply' if hp == 'paper' else 'are not used'}]")
        out.append({**d, "run": run})
    return out
