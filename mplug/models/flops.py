"""Analytic FLOPs of one forward pass of a fusion network (Figures 3 and 4 cost axis).

FLOPs = 2 x multiply-adds of the matrix products: the Q/K/V/output projections, the two attention
products (QK^T and AV) and the FFN. LayerNorm, softmax, GELU, biases and dropout are left out (they
are O(L*D), a few percent at these sizes). With width D, FFN width I, n_visual N, n_text L:
- self-attention over T tokens: 8*T*D^2 + 4*T^2*D
- cross-attention, Lq queries over Nk keys: 4*Lq*D^2 + 4*Nk*D^2 + 4*Lq*Nk*D
- FFN over T tokens: 4*T*D*I
Layer kinds: asymmetric = SA(L) + CA(L<-N) + FFN(L); connected = SA(N+L) + FFN(N+L);
two_stream = SA(L) + SA(N) + CA(L<-N) + CA(N<-L) + FFN(L) + FFN(N).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from mplug.models.config import MPLUGConfig
from mplug.models.fusion import ASYMMETRIC, CONNECTED, TWO_STREAM, fusion_schedule
from mplug.task_registry import model_tasks


def self_attention_flops(tokens: int, width: int) -> int:
    return 8 * tokens * width ** 2 + 4 * tokens ** 2 * width


def cross_attention_flops(queries: int, keys: int, width: int) -> int:
    return 4 * queries * width ** 2 + 4 * keys * width ** 2 + 4 * queries * keys * width


def ffn_flops(tokens: int, width: int, intermediate: int) -> int:
    return 4 * tokens * width * intermediate


def layer_flops(kind: str, width: int, intermediate: int, n_visual: int, n_text: int) -> int:
    """FLOPs of one fusion layer of `kind` for one example."""
    d, i, n, t = width, intermediate, n_visual, n_text
    if kind == ASYMMETRIC:
        return self_attention_flops(t, d) + cross_attention_flops(t, n, d) + ffn_flops(t, d, i)
    if kind == CONNECTED:
        return self_attention_flops(n + t, d) + ffn_flops(n + t, d, i)
    if kind == TWO_STREAM:
        return (self_attention_flops(t, d) + self_attention_flops(n, d)
                + cross_attention_flops(t, n, d) + cross_attention_flops(n, t, d)
                + ffn_flops(t, d, i) + ffn_flops(n, d, i))
    raise ValueError(f"unknown fusion layer kind {kind!r}")


def fusion_flops(kinds: list[str], width: int, n_visual: int, n_text: int, batch: int = 1,
                 intermediate: int | None = None) -> int:
    """Total FLOPs of a fusion network given its layer kinds (see `fusion_schedule`)."""
    inter = 4 * width if intermediate is None else intermediate
    return batch * sum(layer_flops(k, width, inter, n_visual, n_text) for k in kinds)


def fusion_flops_for(cfg: MPLUGConfig, n_visual: int | None = None, n_text: int = 32,
                     batch: int = 1) -> int:
    """FLOPs of cfg's fusion network (fusion_type, stride, schedule, layer count)."""
    n = cfg.vision.n_tokens if n_visual is None else n_visual
    return fusion_flops(fusion_schedule(cfg), cfg.text.hidden, n, n_text, batch, cfg.text.intermediate)


# ============================================================================ one training step
# Analytic FLOPs of ONE training step (forward + backward) of a task model, per component. Used
# by `mplug bench train` for FLOPs per sample and MFU, and checked against torch's FlopCounterMode
# in tests/models/test_flops.py.

TRAIN_TASKS = model_tasks()  # the heads a training step can run (the task registry's)


def linear_flops(tokens: int, d_in: int, d_out: int) -> int:
    return 2 * tokens * d_in * d_out


def vit_flops(cfg: MPLUGConfig, image_res: int | None = None) -> tuple[int, int]:
    """(patch-embedding conv, transformer blocks [+ visn_fc]) FLOPs of one image through the ViT."""
    v = cfg.vision
    res = v.image_res if image_res is None else image_res
    grid = res // v.patch
    n, w, hidden = 1 + grid * grid, v.width, int(v.width * v.mlp_ratio)
    conv = 2 * grid * grid * (3 * v.patch * v.patch) * w
    blocks = v.layers * (self_attention_flops(n, w) + ffn_flops(n, w, hidden))
    if cfg.use_visn_fc:
        blocks += linear_flops(n, w, cfg.text.hidden)
    return conv, blocks


def n_visual_tokens(cfg: MPLUGConfig, image_res: int | None = None) -> int:
    res = cfg.vision.image_res if image_res is None else image_res
    return 1 + (res // cfg.vision.patch) ** 2


def text_encoder_flops(cfg: MPLUGConfig, n_text: int) -> int:
    t = cfg.text
    return cfg.text_layers * (self_attention_flops(n_text, t.hidden) + ffn_flops(n_text, t.hidden, t.intermediate))


def fusion_call_flops(cfg: MPLUGConfig, n_visual: int, n_text: int, n_images: int = 1) -> int:
    """One example through cfg's fusion network; `n_images=2` is the NLVR2 fusion (a second
    cross-attention per asymmetric layer, connected layers over cat([v1; v2; t]))."""
    t = cfg.text
    d, i = t.hidden, t.intermediate
    if n_images == 1:
        return fusion_flops(fusion_schedule(cfg), d, n_visual, n_text, 1, i)
    total = 0
    for kind in fusion_schedule(cfg):
        if kind == ASYMMETRIC:
            total += (self_attention_flops(n_text, d) + n_images * cross_attention_flops(n_text, n_visual, d)
                      + ffn_flops(n_text, d, i))
        elif kind == CONNECTED:
            tokens = n_images * n_visual + n_text
            total += self_attention_flops(tokens, d) + ffn_flops(tokens, d, i)
        else:
            raise ValueError(f"{kind} fusion supports one image per example")
    return total


def decoder_flops(cfg: MPLUGConfig, n_tokens: int, n_memory: int) -> int:
    """The causal decoder's layers (causal attention still computes the full L x L products)."""
    t = cfg.text
    d = t.hidden
    return cfg.decoder_layers * (self_attention_flops(n_tokens, d) + cross_attention_flops(n_tokens, n_memory, d)
                                 + ffn_flops(n_tokens, d, t.intermediate))


def lm_head_flops(cfg: MPLUGConfig, n_tokens: int) -> int:
    """BERT LM/MLM head over n_tokens: transform dense (D x D) + vocabulary projection (D x V)."""
    d = cfg.text.hidden
    return linear_flops(n_tokens, d, d) + linear_flops(n_tokens, d, cfg.text.vocab_size)


def pretrain_split(n_text: int, min_frac: float = 0.0, max_frac: float = 0.5) -> tuple[int, int]:
    """(prefix width, decoder width) that `heads.split_prefix` pads a batch of `n_text`-token
    captions (all of full length) to when some example draws the longest and some the shortest
    prefix, which a batch of tens of examples does almost surely: prefix `[CLS] w1..w_hi`,
    decoder `[CLS] w_lo+1 .. [SEP]`."""
    n_words = max(n_text - 2, 0)
    hi = min(int(n_words * max_frac), max(n_words - 1, 0))
    lo = min(int(n_words * min_frac), hi)
    return hi + 1, n_text - lo


def train_step_flops(cfg: MPLUGConfig, task: str, batch: int, n_text: int, image_res: int | None = None,
                     distill: bool = True, *, target_len: int | None = None, prefix_len: int | None = None,
                     n_answers: int | None = None, caption_input: str = "visual", alpha: float | None = None,
                     queue_size: int | None = None, n_frames: int = 1) -> dict:
    """Analytic FLOPs of one training step (forward + backward) of `build_model(cfg, task)` on a
    batch of `batch` examples, per component, following what the task's forward really runs
    (mplug/models/tasks.py):

    - pretrain: ViT; text encoder; ITC (projections of the CLS features, the similarities against
      the B + queue columns, and with `distill` the momentum targets); ITM: one fusion call over
      the B positives and one over the 2B hard negatives, itm_head on 3B CLS; MLM: text encoder
      over the masked text, fusion, MLM head over all n_text tokens; PrefixLM: text encoder and
      fusion over the prefix (`prefix_len`), decoder (`target_len` tokens, memory N + prefix) and
      LM head; with `distill` the momentum ViT + text encoder + projections, forward only.
      Default widths: `pretrain_split(n_text)`, what a batch pads to (the split is random).
    - retrieval: ViT, text encoder, ITC, ITM (as pretrain), momentum encoders with `distill`.
      (VQA builds no momentum model, see VQAModel.)
    - vqa: ViT, text encoder (question, n_text), fusion, decoder over `n_answers` answer rows
      (default: one per question) of `target_len` tokens (default 5) with memory N + n_text, LM head.
    - caption: 'visual' (official): ViT, decoder over `target_len` (default n_text) with memory N,
      LM head (the frozen text encoder/fusion are not run); 'fused': + text encoder and fusion of
      the n_text prompt, memory N + n_text.
    - grounding: ViT, text encoder, fusion, decoder over 5 tokens, LM head over 5.
    - nlvr2: two images through the ViT, text encoder, two-image fusion, MLP head.
    - snli_ve: ViT, text encoder, fusion, MLP head.

    FLOPs = 2 x multiply-adds of the matrix products: attention Q/K/V/output projections, QK^T and
    AV, FFNs, the patch-embedding convolution, visn_fc, projections and heads (ITC/ITM/MLP/LM).
    Backward = 2 x forward (input and weight gradients) for every trained part, except where
    autograd computes only one of the two: the patch convolution (the image needs no gradient:
    weight gradient only, 1 x) and the ITC similarities (the momentum/queue side carries no
    gradient: 1 x). Momentum forwards have no backward. Left out: LayerNorm, softmax, GELU,
    biases, residual adds, dropout, embedding lookups and their gradients, losses, the optimizer
    update and the EMA momentum update (all O(params) or O(tokens x width), a few percent at most
    at these sizes), and the recomputation of gradient checkpointing (these are model FLOPs, as
    MFU counts them). Padding is counted: the tensors are padded to n_text / target_len.

    `n_frames` > 1: video examples (B, F, 3, H, W), each frame through the ViT and F x (1 + P)
    visual tokens in the fusion and decoder memory (tasks.py encode_image).

    Returns {"task", "batch", "components": {name: {"forward", "backward", "total"}}, "forward",
    "backward", "total", "flops_per_sample"}; counts are for the whole batch.
    """
    if task not in TRAIN_TASKS:
        raise ValueError(f"unknown task {task!r}; use one of {', '.join(TRAIN_TASKS)}")
    n_img = 2 if task == "nlvr2" else 1
    conv, vit = vit_flops(cfg, image_res)
    st = _Step(cfg, batch, n_text, n_visual_tokens(cfg, image_res) * n_frames, n_frames, n_img,
               batch * n_img * n_frames, conv, vit)
    st.add("vit_patch_embed", st.images * conv, 1.0)  # the image needs no gradient: weight grad only
    st.add("vit", st.images * vit)
    if task in ("pretrain", "retrieval"):
        _contrastive(st, distill, cfg.queue_size if queue_size is None else queue_size,
                     cfg.alpha if alpha is None else alpha)
    if task == "pretrain":
        _pretrain_heads(st, prefix_len, target_len)
    elif task in ("vqa", "grounding", "snli_ve", "nlvr2") or (task == "caption" and caption_input == "fused"):
        st.add("text_encoder", batch * text_encoder_flops(cfg, n_text))
        st.add("fusion", batch * fusion_call_flops(cfg, st.n, n_text, n_img))
    _task_head(st, task, target_len, n_answers, caption_input)
    return st.result(task)


@dataclass
class _Step:
    """One training step's shapes and its FLOP components (forward, backward) as they add up."""

    cfg: MPLUGConfig
    b: int          # examples
    n_text: int     # text tokens
    n: int          # visual tokens per image slot (x frames)
    n_frames: int
    n_img: int      # images per example (NLVR2: 2)
    images: int     # ViT inputs in the batch
    conv: int       # patch-embedding FLOPs per image
    vit: int        # ViT layer FLOPs per image
    comps: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, name: str, fwd: int, bwd_factor: float = 2.0) -> None:
        c = self.comps.setdefault(name, {"forward": 0, "backward": 0})
        c["forward"] += int(fwd)
        c["backward"] += int(bwd_factor * fwd)

    def result(self, task: str) -> dict:
        for c in self.comps.values():
            c["total"] = c["forward"] + c["backward"]
        fwd = sum(c["forward"] for c in self.comps.values())
        bwd = sum(c["backward"] for c in self.comps.values())
        return {"task": task, "batch": self.b, "components": self.comps, "forward": fwd,
                "backward": bwd, "total": fwd + bwd, "flops_per_sample": (fwd + bwd) / self.b}


def _contrastive(st: _Step, distill: bool, q: int, alpha: float) -> None:
    """ITC (projections, similarities against B + queue) and ITM (B positives, 2B negatives)."""
    cfg, b, n, n_text = st.cfg, st.b, st.n, st.n_text
    d, e = cfg.text.hidden, cfg.embed_dim
    proj = b * (st.n_frames * linear_flops(1, d, e) + linear_flops(1, d, e))
    st.add("text_encoder", b * text_encoder_flops(cfg, n_text))
    st.add("itc_proj", proj)
    st.add("itc_sim", 2 * linear_flops(b, e, b + q), 1.0)  # the queue/momentum side has no grad
    st.add("itm_fusion_pos", b * fusion_call_flops(cfg, n, n_text))
    st.add("itm_fusion_neg", 2 * b * fusion_call_flops(cfg, n, n_text))
    st.add("itm_head", linear_flops(3 * b, d, 2))
    if distill:
        mom = st.images * (st.conv + st.vit) + b * text_encoder_flops(cfg, n_text) + proj
        if alpha > 0:
            mom += 2 * linear_flops(b, e, b + q)  # the distillation targets' similarities
        st.add("momentum_forward", mom, 0.0)


def _pretrain_heads(st: _Step, prefix_len: int | None, target_len: int | None) -> None:
    """MLM (masked text through encoder + fusion + head) and PrefixLM (prefix, decoder, LM head)."""
    cfg, b, n, n_text = st.cfg, st.b, st.n, st.n_text
    st.add("mlm_text_encoder", b * text_encoder_flops(cfg, n_text))
    st.add("mlm_fusion", b * fusion_call_flops(cfg, n, n_text))
    st.add("mlm_head", b * lm_head_flops(cfg, n_text))
    p_len, t_len = pretrain_split(n_text)
    p_len = p_len if prefix_len is None else prefix_len
    t_len = t_len if target_len is None else target_len
    st.add("prefix_text_encoder", b * text_encoder_flops(cfg, p_len))
    st.add("prefix_fusion", b * fusion_call_flops(cfg, n, p_len))
    st.add("decoder", b * decoder_flops(cfg, t_len, n + p_len))
    st.add("lm_head", b * lm_head_flops(cfg, t_len))


def _task_head(st: _Step, task: str, target_len: int | None, n_answers: int | None, caption_input: str) -> None:
    """The fine-tuning task's decoder or classifier."""
    cfg, b, n, n_text = st.cfg, st.b, st.n, st.n_text
    if task == "vqa":
        rows = b if n_answers is None else n_answers
        t_len = 5 if target_len is None else target_len
        st.add("decoder", rows * decoder_flops(cfg, t_len, n + n_text))
        st.add("lm_head", rows * lm_head_flops(cfg, t_len))
    elif task == "caption":
        t_len = n_text if target_len is None else target_len
        memory = n if caption_input == "visual" else n + n_text
        st.add("decoder", b * decoder_flops(cfg, t_len, memory))
        st.add("lm_head", b * lm_head_flops(cfg, t_len))
    elif task == "grounding":
        st.add("decoder", b * decoder_flops(cfg, 5, n + n_text))
        st.add("lm_head", b * lm_head_flops(cfg, 5))
    elif task in ("nlvr2", "snli_ve"):
        d = cfg.text.hidden
        classes = 2 if task == "nlvr2" else 3
        st.add("cls_head", b * (linear_flops(1, d, d) + linear_flops(1, d, classes)))
