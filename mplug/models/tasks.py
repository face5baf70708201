"""Task models on the mPLUG backbone, and `build_model(cfg_or_name, task, **overrides)`.

Every model subclasses `MPLUGBackbone`, so parameter names stay the official top-level ones
(`visual_encoder.*`, `text_encoder.*`, `fusion_encoder.*`, `text_decoder.*`, `vision_proj`, ...)
and an official checkpoint converts by renaming only (mplug/models/convert.py).

Batch keys follow docs/architecture.md ("Batch contract"). In training `forward(batch)` returns
`{"loss": scalar, <component>: scalar, ...}`; components are detached copies for logging.

Parameters that never receive a gradient in the official code are frozen (requires_grad False)
instead of being left dangling, which DDP/ZeRO would otherwise trip over:
the `crossattention` of connected fusion layers (a connected layer reuses its self-attention and
FFN only) and, for captioning over the visual tokens, the text encoder and fusion module.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mplug.errors import ConfigError
from mplug.models import heads as H
from mplug.models.bert import init_bert_weights
from mplug.models.config import MPLUGConfig
from mplug.models.decoder import OnlyMLMHead
from mplug.models.fusion import CONNECTED
from mplug.models.mplug import MPLUGBackbone
from mplug.models.registry import get_config

class TaskModel(MPLUGBackbone):
    """Shared plumbing: freezing never-used weights, image/text encoding, fused states."""

    task = "?"

    def __init__(self, cfg: MPLUGConfig, opts: H.HeadOptions, n_images: int = 1,
                 with_decoder: bool = True):
        super().__init__(cfg, n_images=n_images, with_decoder=with_decoder)
        self.opts = opts
        for layer in self.fusion_encoder.encoder.layer:
            if layer.kind == CONNECTED:  # official: these weights exist but get no gradient
                layer.crossattention.requires_grad_(False)
                if layer.crossattention2 is not None:
                    layer.crossattention2.requires_grad_(False)

    def encode_pair(self, image: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor):
        """-> (V (B,N,D), v_mask (B,N), T (B,L,D))."""
        v, v_mask = self.encode_image(image)
        return v, v_mask, self.encode_text(ids, mask)

    def fused_states(self, image: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor):
        """Decoder memory for VQA/grounding: cat([V', T']) (B, N+L, D) and its mask."""
        v, v_mask, t = self.encode_pair(image, ids, mask)
        v2, t2 = self.fuse(v, v_mask, t, mask)
        return torch.cat([v2, t2], dim=1), torch.cat([v_mask, mask.to(v_mask.dtype)], dim=1)

    def _gen_kwargs(self) -> dict[str, int]:
        return {"bos": self.cfg.bos_token_id, "eos": self.cfg.eos_token_id,
                "pad": self.cfg.text.pad_token_id}


def _labels(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return ids.masked_fill(mask == 0, -100)


# ============================================================================ ITC / ITM
class ContrastiveMixin(H.MomentumMixin):
    """ITC (+ momentum distillation and queues) and ITM with hard negatives, on a TaskModel."""

    def init_contrastive(self) -> None:
        cfg, d, e = self.cfg, self.cfg.text.hidden, self.cfg.embed_dim
        self.vision_proj = nn.Linear(d, e)
        self.text_proj = nn.Linear(d, e)
        self.itm_head = nn.Linear(d, 2)
        self.temp = nn.Parameter(torch.tensor(cfg.temp))
        q = cfg.queue_size
        self.register_buffer("image_queue", F.normalize(torch.randn(e, q), dim=0))
        self.register_buffer("text_queue", F.normalize(torch.randn(e, q), dim=0))
        self.register_buffer("idx_queue", torch.full((1, q), -100, dtype=torch.long))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))
        if self.opts.distill:  # official model_pairs of the retrieval model
            self.init_momentum(["visual_encoder", "visn_fc", "visn_layer_norm", "text_encoder",
                                "vision_proj", "text_proj"], cfg.momentum)
        else:
            self.momentum_pairs = []

    # ------------------------------------------------------------------ features
    def _image_cls_feat(self, v: torch.Tensor, n_frames: int, proj: nn.Module) -> torch.Tensor:
        """Normalised ITC image feature; video: mean over frames of proj(frame CLS) (official)."""
        if n_frames > 1:
            cls = v.view(v.size(0), n_frames, -1, v.size(-1))[:, :, 0]  # (B, F, D)
            return F.normalize(proj(cls).mean(dim=1), dim=-1)
        return F.normalize(proj(v[:, 0]), dim=-1)

    def _encode_image_m(self, image: torch.Tensor) -> torch.Tensor:
        frames = image.flatten(0, 1) if image.dim() == 5 else image
        x = self.visual_encoder_m(frames)
        if self.cfg.use_visn_fc:
            x = self.dropout(self.visn_layer_norm_m(self.visn_fc_m(x)))
        if image.dim() == 5:
            x = x.reshape(image.size(0), -1, x.size(-1))
        return x

    @torch.no_grad()
    def itc_features(self, image: torch.Tensor | None = None, text_ids: torch.Tensor | None = None,
                     text_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Unimodal features for retrieval evaluation, each computed once per image/text:
        image -> image_embeds (B,N,D), image_mask, image_feat (B,E); text -> text_embeds (B,L,D),
        text_feat (B,E). Video images (B,F,3,H,W) average the per-frame projected CLS."""
        out: dict[str, torch.Tensor] = {}
        if image is not None:
            v, v_mask = self.encode_image(image)
            n_frames = image.size(1) if image.dim() == 5 else 1
            out.update(image_embeds=v, image_mask=v_mask,
                       image_feat=self._image_cls_feat(v, n_frames, self.vision_proj))
        if text_ids is not None:
            t = self.encode_text(text_ids, text_mask)
            out.update(text_embeds=t, text_feat=F.normalize(self.text_proj(t[:, 0]), dim=-1))
        return out

    @staticmethod
    def itc_sim(image_feat: torch.Tensor, text_feat: torch.Tensor) -> torch.Tensor:
        """(I, E), (T, E) -> (I, T) similarity used to pick the top-k (official: no temperature)."""
        return image_feat @ text_feat.T

    @torch.no_grad()
    def itm_scores(self, image_embeds: torch.Tensor, text_embeds: torch.Tensor,
                   text_mask: torch.Tensor, image_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Aligned pairs (P,N,D), (P,L,D), (P,L) -> ITM logit of class 1 (P,) (official score;
        official video retrieval adds the ITC similarity to it, the caller does that)."""
        _, t = self.fuse(image_embeds, image_mask, text_embeds, text_mask)
        return self.itm_head(t[:, 0])[:, 1]

    @torch.no_grad()
    def itm_scores_cached(self, image_embeds: torch.Tensor, text_embeds: torch.Tensor,
                          text_mask: torch.Tensor, image_mask: torch.Tensor | None = None,
                          image_index: torch.Tensor | None = None,
                          chunk: int | None = None, bucket: int | None = None) -> torch.Tensor:
        """Fast ITM rerank: the same scores as `itm_scores`, for pairs that share images.

        image_embeds (I, N, D) holds each image ONCE; text_embeds (P, L, D), text_mask (P, L);
        image_index (P,) long = the image row of each pair (default: all 0 when I == 1, else
        arange(P)). Each image's cross-attention K/V is projected once per fusion layer up to
        the first layer that changes the visual tokens (all six layers for mplug_large, three
        for mplug_base) and reused by every candidate text; with one image, no per-candidate
        copy is made (the candidates share one K/V row, BertSelfAttention folds them into the
        query axis). Length buckets: the pairs are sorted by text length and go through the
        fusion `bucket` at a time (at most `chunk`; None = `chunk`, default all), each bucket
        cut to its longest text. Exact: a column that is padding in every text of a bucket is
        only ever a masked key, and its own output is never read. Buckets smaller than the
        chunk cut more padding but make more, smaller matrix products: on a shared CPU that was
        slower (measured: 16-pair buckets 1.6x slower than one 64-pair call at k=64), hence the
        default. Returns the ITM logit of class 1, (P,), in the input order."""
        p, i_count, device = text_embeds.size(0), image_embeds.size(0), image_embeds.device
        if image_index is not None:
            image_index = torch.as_tensor(image_index, device=device).long()
            if i_count == 1:
                image_index = None  # one image: broadcast instead of gathering copies
        if image_index is None:
            if i_count not in (1, p):
                raise ValueError(f"image_index is needed for {i_count} images and {p} texts")
            image_index = None if i_count == 1 else torch.arange(p, device=device)
        if image_mask is None:
            image_mask = torch.ones(image_embeds.shape[:2], dtype=torch.long, device=device)
        if p == 0:
            return text_embeds.new_zeros(0)
        kv_img = self.fusion_encoder.project_cross_kv(image_embeds)  # per layer [(k, v) (I,H,N,d)]
        pos = torch.arange(1, text_mask.size(1) + 1, device=text_mask.device)
        ends = (text_mask.ne(0) * pos).amax(1)  # (P,) last real token + 1
        order = torch.argsort(ends, descending=True, stable=True)
        ends = ends[order].tolist()
        step = min(chunk or p, bucket or p)
        scores = text_embeds.new_empty(p)
        for a in range(0, p, step):
            idx = order[a:a + step]
            width = max(int(ends[a]), 1)  # longest text of the bucket (sorted: the first)
            te, tm = text_embeds[idx, :width], text_mask[idx, :width]
            if image_index is None:  # one image: broadcast views and ONE shared K/V row
                n = idx.numel()
                v, vm, kv = image_embeds.expand(n, -1, -1), image_mask.expand(n, -1), kv_img
            else:
                img = image_index[idx]
                v, vm = image_embeds.index_select(0, img), image_mask.index_select(0, img)
                kv = [[(k.index_select(0, img), vv.index_select(0, img)) for k, vv in layer]
                      for layer in kv_img]
            _, t = self.fuse(v, vm, te, tm, cross_kv=kv)
            scores[idx] = self.itm_head(t[:, 0])[:, 1].to(scores.dtype)
        return scores

    # ------------------------------------------------------------------ losses
    def contrastive_losses(self, image: torch.Tensor, ids: torch.Tensor, v: torch.Tensor,
                           v_mask: torch.Tensor, t: torch.Tensor, t_mask: torch.Tensor,
                           idx: torch.Tensor, alpha: float) -> dict[str, torch.Tensor]:
        """ITC with queues and momentum distillation, then ITM with hard negatives."""
        if self.opts.clamp_temp:
            with torch.no_grad():
                self.temp.clamp_(self.opts.temp_min, self.opts.temp_max)
        n_frames = image.size(1) if image.dim() == 5 else 1
        image_feat = self._image_cls_feat(v, n_frames, self.vision_proj)  # (B, E)
        text_feat = F.normalize(self.text_proj(t[:, 0]), dim=-1)  # (B, E)
        idx = idx.view(-1)
        idx_all = torch.cat([idx, self.idx_queue.view(-1).clone()])  # (B+Q,)
        hard = H.itc_targets(idx, idx_all)  # (B, B+Q)
        with torch.no_grad():
            if self.momentum_pairs:
                if self.training:
                    self.momentum_update()
                image_feat_m = self._image_cls_feat(self._encode_image_m(image), n_frames,
                                                    self.vision_proj_m)
                text_feat_m = F.normalize(self.text_proj_m(self.text_encoder_m(ids, t_mask)[:, 0]),
                                          dim=-1)
            else:  # no momentum model (distill=False): the queue holds online features
                image_feat_m, text_feat_m = image_feat.detach(), text_feat.detach()
            # queues are fp32 buffers (DeepSpeed bf16 casts parameters only): match the features
            image_all = torch.cat([image_feat_m.T, self.image_queue.clone().to(image_feat_m.dtype)],
                                  dim=1)  # (E, B+Q)
            text_all = torch.cat([text_feat_m.T, self.text_queue.clone().to(text_feat_m.dtype)], dim=1)
            if self.momentum_pairs and alpha > 0:
                t_i2t = alpha * F.softmax(image_feat_m @ text_all / self.temp, dim=1) + (1 - alpha) * hard
                t_t2i = alpha * F.softmax(text_feat_m @ image_all / self.temp, dim=1) + (1 - alpha) * hard
            else:
                t_i2t = t_t2i = hard
        sim_i2t = image_feat @ text_all / self.temp  # (B, B+Q)
        sim_t2i = text_feat @ image_all / self.temp
        loss_itc = H.itc_loss(sim_i2t, sim_t2i, t_i2t, t_t2i)
        if self.training:
            self._dequeue_and_enqueue(image_feat_m, text_feat_m, idx)
        loss_itm = self._itm_loss(v, v_mask, t, t_mask, idx, sim_i2t, sim_t2i)
        return {"loss_itc": loss_itc, "loss_itm": loss_itm}

    def _itm_loss(self, v, v_mask, t, t_mask, idx, sim_i2t, sim_t2i) -> torch.Tensor:
        b = v.size(0)
        _, t_pos = self.fuse(v, v_mask, t, t_mask)
        neg_image = H.sample_hard_negatives(sim_t2i[:, :b], idx)  # an image for each text
        neg_text = H.sample_hard_negatives(sim_i2t[:, :b], idx)  # a text for each image
        v_all = torch.cat([v[neg_image], v], dim=0)  # (2B, N, D)
        vm_all = torch.cat([v_mask[neg_image], v_mask], dim=0)
        t_all = torch.cat([t, t[neg_text]], dim=0)  # (2B, L, D)
        tm_all = torch.cat([t_mask, t_mask[neg_text]], dim=0)
        _, t_neg = self.fuse(v_all, vm_all, t_all, tm_all)
        logits = self.itm_head(torch.cat([t_pos[:, 0], t_neg[:, 0]], dim=0))  # (3B, 2)
        labels = torch.cat([torch.ones(b, dtype=torch.long), torch.zeros(2 * b, dtype=torch.long)])
        return F.cross_entropy(logits, labels.to(logits.device))

    @torch.no_grad()
    def _dequeue_and_enqueue(self, image_feat, text_feat, idx) -> None:
        H.enqueue(self.image_queue, self.queue_ptr, image_feat)
        H.enqueue(self.text_queue, self.queue_ptr, text_feat)
        H.enqueue(self.idx_queue, self.queue_ptr, idx.view(-1, 1))
        H.advance_ptr(self.queue_ptr, image_feat.size(0), self.image_queue.size(1))


class RetrievalModel(ContrastiveMixin, TaskModel):
    """Image/video-text retrieval: ITC (momentum distillation, queues) + ITM (hard negatives).

    Batch: image, text_ids, text_mask, image_idx. Evaluation: `itc_features`, `itc_sim`,
    `itm_scores` (compute image/text features once, ITC top-k, ITM rerank)."""

    task = "retrieval"

    def __init__(self, cfg: MPLUGConfig, opts: H.HeadOptions):
        super().__init__(cfg, opts, with_decoder=False)
        self.init_contrastive()

    def forward(self, batch: dict[str, Any], alpha: float | None = None) -> dict[str, torch.Tensor]:
        alpha = self.cfg.alpha if alpha is None else alpha
        ids, mask = batch["text_ids"], batch["text_mask"]
        v, v_mask, t = self.encode_pair(batch["image"], ids, mask)
        losses = self.contrastive_losses(batch["image"], ids, v, v_mask, t, mask, batch["image_idx"],
                                         alpha)
        return {"loss": losses["loss_itc"] + losses["loss_itm"],
                **{k: x.detach() for k, x in losses.items()}}


# ============================================================================ pretraining
class PretrainModel(ContrastiveMixin, TaskModel):
    """ITC + ITM + MLM + PrefixLM, optimised jointly (paper 3.3).

    Batch: image, text_ids, text_mask (the caption for ITC/ITM/MLM), image_idx, target_ids,
    target_mask (`[CLS] caption [SEP]`, split into encoder prefix + decoder target for PrefixLM).
    The MLM head is `mlm_head.predictions.*` (official pre-training `text_encoder.cls.*`), its
    output matrix tied to the text encoder's word embeddings."""

    task = "pretrain"

    def __init__(self, cfg: MPLUGConfig, opts: H.HeadOptions):
        super().__init__(cfg, opts, with_decoder=True)
        self.init_contrastive()
        self.mlm_head = OnlyMLMHead(cfg.text)  # BERT MLM head naming: predictions.{transform,...}
        init_bert_weights(self.mlm_head, cfg.text.initializer_range)
        self.tie_weights()

    def tie_weights(self) -> None:
        self.mlm_head.predictions.decoder.weight = self.text_encoder.embeddings.word_embeddings.weight
        self.mlm_head.predictions.decoder.bias = self.mlm_head.predictions.bias
        self.text_decoder.tie_weights()

    def forward(self, batch: dict[str, Any], alpha: float | None = None) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        alpha = cfg.alpha if alpha is None else alpha
        image, ids, mask = batch["image"], batch["text_ids"], batch["text_mask"]
        v, v_mask, t = self.encode_pair(image, ids, mask)
        losses = self.contrastive_losses(image, ids, v, v_mask, t, mask, batch["image_idx"], alpha)
        losses["loss_mlm"] = self._mlm_loss(v, v_mask, ids, mask)
        losses["loss_prefix"] = self._prefix_loss(v, v_mask, batch["target_ids"], batch["target_mask"])
        return {"loss": sum(losses.values()), **{k: x.detach() for k, x in losses.items()}}

    def _mlm_loss(self, v, v_mask, ids, mask) -> torch.Tensor:
        cfg = self.cfg
        masked, labels = H.mask_tokens(ids, mask, cfg.text.vocab_size, cfg.mask_token_id,
                                       (cfg.text.pad_token_id, cfg.bos_token_id, cfg.eos_token_id),
                                       self.opts.mlm_probability)
        if not (labels != -100).any():  # a batch of very short texts: predict one token anyway
            labels[0, 1] = ids[0, 1]
        _, t2 = self.fuse(v, v_mask, self.encode_text(masked, mask), mask)
        logits = self.mlm_head.predictions(t2)  # (B, L, V)
        return F.cross_entropy(logits.view(-1, logits.size(-1)), labels.view(-1), ignore_index=-100)

    def _prefix_loss(self, v, v_mask, target_ids, target_mask) -> torch.Tensor:
        cfg, o = self.cfg, self.opts
        p_ids, p_mask, d_ids, d_mask = H.split_prefix(target_ids, target_mask, o.prefix_min_frac,
                                                      o.prefix_max_frac, cfg.text.pad_token_id,
                                                      cfg.bos_token_id)
        v2, t2 = self.fuse(v, v_mask, self.encode_text(p_ids, p_mask), p_mask)
        memory = torch.cat([v2, t2], dim=1)  # (B, N+Lp, D): [v; prefix]
        memory_mask = torch.cat([v_mask, p_mask.to(v_mask.dtype)], dim=1)
        out = self.text_decoder(d_ids, d_mask, memory, memory_mask, labels=_labels(d_ids, d_mask))
        return out.loss


# ============================================================================ generation tasks
class VQAModel(TaskModel):
    """Open-ended VQA: the decoder generates the answer over cat([V', T']) (official).

    Batch: image, text_ids, text_mask (question [+ OCR + objects]), answer_ids, answer_mask
    (K, T), answer_weight (K,), answer_index (K,) -> row of the batch.
    loss = sum_k w_k * (token CE summed over answer k) / B (official BertLMHeadModel, 'none').
    Official VQA runs a momentum model but never passes its alpha, so its distillation term is 0;
    we build no momentum copies (same loss, less compute)."""

    task = "vqa"

    def __init__(self, cfg: MPLUGConfig, opts: H.HeadOptions):
        super().__init__(cfg, opts, with_decoder=True)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        memory, memory_mask = self.fused_states(batch["image"], batch["text_ids"], batch["text_mask"])
        index = batch["answer_index"]
        a_ids, a_mask = batch["answer_ids"], batch["answer_mask"]
        out = self.text_decoder(a_ids, a_mask, memory[index], memory_mask[index],
                                labels=_labels(a_ids, a_mask), reduction="none")  # (K,)
        loss = (batch["answer_weight"].to(out.loss.dtype) * out.loss).sum() / memory.size(0)
        return {"loss": loss, "loss_vqa": loss.detach()}

    @torch.no_grad()
    def generate(self, batch: dict[str, Any], beam_size: int = 5, max_length: int = 10,
                 min_length: int = 1, num_return: int = 1, use_cache: bool = True):
        """Beam search (official: beam 5, max 10, min 1, GNMT 0.6). Returns (ids (B, R, T)
        after [CLS], scores (B, R)); decode ids with the tokenizer, skipping special tokens."""
        from mplug.models.generation import beam_search

        memory, memory_mask = self.fused_states(batch["image"], batch["text_ids"], batch["text_mask"])
        return beam_search(self.text_decoder, memory, memory_mask, beam_size=beam_size,
                           min_length=min_length, max_length=max_length, num_return=num_return,
                           use_cache=use_cache, **self._gen_kwargs())

    @torch.no_grad()
    def rank_answers(self, batch: dict[str, Any], answer_ids: torch.Tensor,
                     answer_mask: torch.Tensor, k: int = 128):
        """Video QA (official `rank_answer`): top-k answers by first token, rescored by the
        sequence likelihood. Returns (answer indices (B, k), probabilities (B, k))."""
        from mplug.models.generation import rank_answers

        memory, memory_mask = self.fused_states(batch["image"], batch["text_ids"], batch["text_mask"])
        return rank_answers(self.text_decoder, memory, memory_mask, answer_ids, answer_mask,
                            k=min(k, answer_ids.size(0)), pad=self.cfg.text.pad_token_id)


class CaptionModel(TaskModel):
    """Captioning. `caption_input='visual'` (official): the decoder cross-attends to V only and
    the text encoder/fusion are frozen (unused, as in the release). `'fused'`: the decoder
    cross-attends to cat([V', T']) where T is the encoder text (`text_ids` if the batch has it,
    else a lone [CLS]). Batch: image, target_ids, target_mask (`[CLS] caption [SEP]`).
    Loss: mean token CE (official BertPrefixModel)."""

    task = "caption"

    def __init__(self, cfg: MPLUGConfig, opts: H.HeadOptions):
        super().__init__(cfg, opts, with_decoder=True)
        if opts.caption_input == "visual":
            self.text_encoder.requires_grad_(False)
            self.fusion_encoder.requires_grad_(False)

    def memory(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.opts.caption_input == "visual":
            return self.encode_image(batch["image"])
        image = batch["image"]
        ids, mask = batch.get("text_ids"), batch.get("text_mask")
        if ids is None:
            ids = torch.full((image.size(0), 1), self.cfg.bos_token_id, dtype=torch.long,
                             device=image.device)
            mask = torch.ones_like(ids)
        return self.fused_states(image, ids, mask)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        memory, memory_mask = self.memory(batch)
        ids, mask = batch["target_ids"], batch["target_mask"]
        out = self.text_decoder(ids, mask, memory, memory_mask, labels=_labels(ids, mask))
        return {"loss": out.loss, "loss_caption": out.loss.detach()}

    @torch.no_grad()
    def generate(self, batch: dict[str, Any], beam_size: int = 5, max_length: int = 25,
                 min_length: int = 8, num_return: int = 1, prompt_ids: torch.Tensor | None = None,
                 use_cache: bool = True):
        """Beam search (official COCO: beam 5, min 8, max 25, prompt ''). `prompt_ids` (P,) starts
        with [CLS] (VATEX zero-shot: `[CLS] a picture`). Returns (ids (B,R,T), scores (B,R))."""
        from mplug.models.generation import beam_search

        memory, memory_mask = self.memory(batch)
        return beam_search(self.text_decoder, memory, memory_mask, beam_size=beam_size,
                           min_length=min_length, max_length=max_length, num_return=num_return,
                           use_cache=use_cache, prompt_ids=prompt_ids, **self._gen_kwargs())


class GroundingModel(TaskModel):
    """Visual grounding with coordinate tokens (official model_grounding_mplug.py).

    Decoder input `[prefix] t_cx t_cy t_w t_h` with t = coord_start + floor(clamp(c,0,1)*(bins-1))
    (official: [unused339], [unused340]+floor(c*336), 337 bins), cross-attending to cat([V', T']).
    Logits get a vocabulary mask (0 on the coordinate tokens, -10000 elsewhere) in training and
    decoding. Loss: `heads.grounding_loss`. Batch: image, text_ids, text_mask, box (B,4) cxcywh.
    """

    task = "grounding"

    def __init__(self, cfg: MPLUGConfig, opts: H.HeadOptions):
        super().__init__(cfg, opts, with_decoder=True)
        self.bins, self.coord_start = cfg.grounding_bins, cfg.grounding_coord_start
        last = self.coord_start + self.bins - 1
        if last >= cfg.text.vocab_size or cfg.grounding_prefix_id >= cfg.text.vocab_size:
            raise ConfigError(f"grounding tokens {cfg.grounding_prefix_id} and {self.coord_start}.."
                              f"{last} do not fit text.vocab_size={cfg.text.vocab_size}; lower "
                              "grounding_bins or grounding_coord_start")
        mask = torch.full((cfg.text.vocab_size,), -10000.0)
        mask[self.coord_start: last + 1] = 0.0
        self.register_buffer("bbox_prob_mask", mask, persistent=False)  # recomputed, not loaded

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        memory, memory_mask = self.fused_states(batch["image"], batch["text_ids"], batch["text_mask"])
        box = batch["box"].to(memory.dtype)
        coords = H.box_to_tokens(box, self.coord_start, self.bins)  # (B, 4)
        prefix = torch.full_like(coords[:, :1], self.cfg.grounding_prefix_id)
        ids = torch.cat([prefix, coords], dim=1)  # (B, 5)
        out = self.text_decoder(ids, None, memory, memory_mask)
        logits = out.logits[:, :4] + self.bbox_prob_mask  # position t predicts token t+1
        loss = H.grounding_loss(logits, coords, box, self.coord_start, self.bins)
        return {"loss": loss, "loss_grounding": loss.detach()}

    @torch.no_grad()
    def generate(self, batch: dict[str, Any], use_cache: bool = True) -> torch.Tensor:
        """Greedy, 4 steps, coordinate tokens only. Returns boxes (B, 4) normalised cxcywh."""
        from mplug.models.generation import greedy

        memory, memory_mask = self.fused_states(batch["image"], batch["text_ids"], batch["text_mask"])
        ids, _ = greedy(self.text_decoder, memory, memory_mask, bos=self.cfg.grounding_prefix_id,
                        eos=self.cfg.eos_token_id, pad=self.cfg.text.pad_token_id, min_length=4,
                        max_length=4, use_cache=use_cache, logits_mask=self.bbox_prob_mask)
        return H.tokens_to_box(ids[:, :4], self.coord_start, self.bins)

    predict = generate


# ============================================================================ classification
class _ClassifierModel(TaskModel):
    """MLP on the fused text [CLS]: Linear(D,D) -> ReLU -> Linear(D,C) (BLIP's NLVR2 head)."""

    n_classes = 2

    def __init__(self, cfg: MPLUGConfig, opts: H.HeadOptions, n_images: int):
        super().__init__(cfg, opts, n_images=n_images, with_decoder=False)
        d = cfg.text.hidden
        self.cls_head = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, self.n_classes))

    def logits(self, batch: dict[str, Any]) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        logits = self.logits(batch)
        loss = F.cross_entropy(logits, batch["label"])
        acc = (logits.argmax(-1) == batch["label"]).float().mean()
        return {"loss": loss, "loss_cls": loss.detach(), "accuracy": acc}

    @torch.no_grad()
    def predict(self, batch: dict[str, Any]) -> torch.Tensor:
        """Class ids (B,)."""
        return self.logits(batch).argmax(-1)


class NLVR2Model(_ClassifierModel):
    """NLVR2 (paper 5.5, following BLIP): image (B,2,3,H,W); every fusion layer has a second
    cross-attention (`crossattention2`) for the second image, their outputs averaged before the
    FFN; MLP on the fused [CLS] -> 2 classes. Batch: image, text_ids, text_mask, label."""

    task = "nlvr2"
    n_classes = 2

    def __init__(self, cfg: MPLUGConfig, opts: H.HeadOptions):
        super().__init__(cfg, opts, n_images=2)

    @torch.no_grad()
    def init_crossattention2(self) -> None:
        """Copy each layer's `crossattention` into `crossattention2` (call after loading weights
        pretrained with one image, as BLIP initialises its second cross-attention)."""
        for layer in self.fusion_encoder.encoder.layer:
            layer.crossattention2.load_state_dict(layer.crossattention.state_dict())

    def logits(self, batch: dict[str, Any]) -> torch.Tensor:
        image, ids, mask = batch["image"], batch["text_ids"], batch["text_mask"]
        if image.dim() != 5 or image.size(1) != 2:
            raise ValueError(f"NLVR2 needs image (B,2,3,H,W), got {tuple(image.shape)}")
        v1, m1 = self.encode_image(image[:, 0])
        v2, m2 = self.encode_image(image[:, 1])
        _, t = self.fuse([v1, v2], [m1, m2], self.encode_text(ids, mask), mask)
        return self.cls_head(t[:, 0])


class SNLIVEModel(_ClassifierModel):
    """SNLI-VE: encoder only (no decoder), 3-way MLP on the fused [CLS]
    (contradiction=0, neutral=1, entailment=2). Batch: image, text_ids, text_mask, label."""

    task = "snli_ve"
    n_classes = 3

    def __init__(self, cfg: MPLUGConfig, opts: H.HeadOptions):
        super().__init__(cfg, opts, n_images=1)

    def logits(self, batch: dict[str, Any]) -> torch.Tensor:
        v, v_mask, t = self.encode_pair(batch["image"], batch["text_ids"], batch["text_mask"])
        _, t2 = self.fuse(v, v_mask, t, batch["text_mask"])
        return self.cls_head(t2[:, 0])


# ============================================================================ factory
TASK_CLASSES: dict[str, type[TaskModel]] = {
    "pretrain": PretrainModel, "vqa": VQAModel, "caption": CaptionModel,
    "retrieval": RetrievalModel, "grounding": GroundingModel, "nlvr2": NLVR2Model,
    "snli_ve": SNLIVEModel}


def build_model(cfg_or_name: MPLUGConfig | str, task: str, **overrides: Any) -> TaskModel:
    """Build the task model. `overrides` may name `HeadOptions` fields (distill, clamp_temp,
    caption_input, mlm_probability, prefix_min_frac/prefix_max_frac, temp_min/temp_max) and
    model-config keys (see `MPLUGConfig.replace`: image_res, stride, queue_size, ...)."""
    if task not in TASK_CLASSES:
        raise ConfigError(f"unknown task {task!r}; use one of {', '.join(TASK_CLASSES)}")
    head_fields = {f.name for f in dataclasses.fields(H.HeadOptions)}
    head_over = {k: v for k, v in overrides.items() if k in head_fields}
    cfg_over = {k: v for k, v in overrides.items() if k not in head_fields}
    if isinstance(cfg_or_name, str):
        cfg = get_config(cfg_or_name, **cfg_over)
    else:
        cfg = cfg_or_name.replace(**cfg_over) if cfg_over else cfg_or_name
    opts = H.HeadOptions(**head_over)
    opts.validate()
    return TASK_CLASSES[task](cfg, opts)
