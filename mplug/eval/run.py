"""Evaluation runs: a checkpoint on a task split -> predictions file + metrics JSON with provenance.

`evaluate(task, checkpoint, data, split, out, settings)` is what `mplug evaluate` calls. Generation
settings default to the official task scripts (AliceMind mPLUG/*_mplug.py); the paper's variants are
named options (`EvalSettings.paper_caption()`: beam 10 / max 20). The model is built with
`mplug.models.build_model(settings.model, <model task>)` and loaded with weights_only safety.

Inputs: every split is read by mplug.data's dataset for the task in eval mode and batched by the
task's `Collator` (`eval_loader`), the very code training uses, so images (test transform, CLIP
mean/std; grounding: centred pad), frames (uniform sampling) and token ids are encoded one
way. Encoder texts follow the official tokenizer copy (`Collator.text_sep="official"`): VQA /
video-QA questions and retrieval captions are `[CLS] text` with no trailing [SEP] (body truncated
to max_length-1), grounding queries `[CLS] query [SEP]` (the official dataset appends the [SEP]);
answers and caption targets are `[CLS] text [SEP]`. Decoder prompts are `[CLS] prompt` (no [SEP]).
The model's vocabulary follows the tokenizer by `mplug.data.tokenizer.vocab_overrides`, the rule
training uses too. Generated ids are decoded by stripping only the [CLS]/[SEP]/[PAD] strings,
keeping [UNK], as the official code does, so the caption scorer sees what the official scorer
would (`mplug.data.tokenizer.decode_generated`).
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Callable

from mplug.errors import CheckpointError, ConfigError, DataError
from mplug.task_registry import TaskSpec, get_task
from mplug.utils.io import atomic_write_json
from mplug.utils.logging import get_logger

log = get_logger("mplug.eval")

NOCAPS_DOMAIN = {"in": "in-domain", "near": "near-domain", "out": "out-domain"}


@dataclasses.dataclass
class EvalSettings:
    """Everything that changes a number. Defaults = official code."""

    model: str = "mplug_base"         # registry name (the arch) built for the task
    model_key: str | None = None       # the run config's model key and evaluation job (provenance)
    job: str | None = None
    stride: int | None = None          # None: the registry config's skip-connection stride
    schedule: str | None = None        # None: the registry config's schedule
    batch_size: int = 16
    device: str = "auto"
    limit: int | None = None           # evaluate only the first N records (smoke/debug)
    image_res: int | None = None       # None: the checkpoint's own resolution (its position
                                       # embedding), else the model config's
    vqa_beam: int = 5
    vqa_max_length: int = 10
    vqa_min_length: int = 1
    caption_beam: int = 5              # official COCO CE stage: beam 5, min 8, max 25
    caption_min_length: int = 8
    caption_max_length: int = 25
    caption_prompt: str = ""           # official COCO configs: no prompt
    nocaps_prompt: str = "a picture of"
    video_caption_prompt: str = "a picture of"  # official VATEX code; the paper says "a video of"
    video_caption_beam: int = 10
    video_caption_min_length: int = 15
    video_caption_max_length: int = 25
    video_prompt_drop_last: bool = True  # official `input_ids[:, :-1]` drops the prompt's last word
    k_test: int | None = None          # None: 256 COCO, 128 Flickr / MSRVTT
    grounding_bins: int | None = None  # None: the model config's (official 337); must equal the
                                       # training's train.grounding.bins or boxes decode wrongly
    rank_k: int = 128                  # video QA answer ranking
    frames_retrieval: int = 8
    frames_qa: int = 16
    frames_caption: int = 8
    max_text_len: int | None = None    # encoder texts; None: the training Collator's per-task
                                       # default (captions 30, expressions 20), questions untruncated
    num_workers: int = 0               # DataLoader workers decoding images/frames
    decode_keep_unk: bool = True       # official: generated text keeps [UNK] (only [CLS]/[SEP]/[PAD]
                                       # are stripped); False: every special token is skipped
    caption_metrics: tuple[str, ...] = ("Bleu", "METEOR", "ROUGE_L", "CIDEr", "SPICE")
    ci_resamples: int = 1000           # bootstrap resamples of the 95% intervals (0: none)
    ci_seed: int = 0                   # their seed (the intervals are deterministic for it)

    @classmethod
    def paper_caption(cls, **kw: Any) -> "EvalSettings":
        """The paper's captioning decoding (section 5.1: beam 10, max 20)."""
        return cls(caption_beam=10, caption_max_length=20, **kw)

    def replace(self, **kw: Any) -> "EvalSettings":
        names = {f.name for f in dataclasses.fields(self)}
        bad = [k for k in kw if k not in names]
        if bad:
            raise ConfigError(f"unknown evaluation setting(s) {bad}; known: {sorted(names)}")
        return dataclasses.replace(self, **kw)


@dataclasses.dataclass
class _EvalRun:
    task: str
    model: Any
    tok: Any
    loader: Any        # mplug.data build_loader(train=False): the training pipeline in eval mode
    dataset: Any       # its TaskDataset: records (after --limit), texts/txt2img/img2txt ...
    collate: Any       # its Collator: encode_text / encode_answers for galleries and answer lists
    settings: EvalSettings
    device: Any
    split: str

    @property
    def records(self) -> list[dict]:
        return self.dataset.records

    @property
    def spec(self) -> TaskSpec:
        """The task's registry entry: its decoding fields, prompt, frames, retrieval scoring."""
        return get_task(self.task)


# ============================================================================ inputs
def eval_data_opts(task: str, settings: EvalSettings) -> dict:
    """`build_dataset` options of an evaluation: strict (a bad input is an error, never a silently
    replaced example), --limit, frames per video."""
    opts: dict[str, Any] = {"strict": True}
    if settings.limit:
        opts["limit"] = settings.limit
    frames = get_task(task).frames_field  # frames per video (official num_frm_test)
    if frames:
        opts["num_frames"] = getattr(settings, frames)
    return opts


def eval_collate_opts(task: str, settings: EvalSettings, max_position: int) -> dict:
    """`Collator` options of an evaluation: the training defaults, except that questions are not
    truncated to training's 25 tokens (official VQA evaluation tokenises them untruncated; the
    model's position table caps them). `settings.max_text_len` overrides both."""
    if settings.max_text_len:
        return {"max_text_len": settings.max_text_len}
    if get_task(task).encoder_text == "question":
        return {"max_text_len": max_position}
    return {}


def eval_loader(task: str, data_dir: str | Path, split: str, tokenizer: Any, image_res: int,
                settings: EvalSettings, max_position: int = 512):
    """(DataLoader, dataset) of an evaluation: mplug.data's dataset in eval mode (test transform,
    centred grounding pad, uniform frames) and the task's Collator, in record order."""
    from mplug.data.datasets import build_loader

    return build_loader(task, data_dir, split, tokenizer, image_res, train=False,
                        batch_size=settings.batch_size, num_workers=settings.num_workers,
                        collate_opts=eval_collate_opts(task, settings, max_position),
                        **eval_data_opts(task, settings))


# ============================================================================ helpers
def _progress(items, desc: str):
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="batch", leave=False)


def _batches(ctx: _EvalRun, desc: str):
    """The loader's batches with tensors on the evaluation device (meta stays a list)."""
    import torch

    for batch in _progress(ctx.loader, desc):
        yield {k: v.to(ctx.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _inputs(batch: dict) -> dict:
    return {k: batch[k] for k in ("image", "text_ids", "text_mask") if k in batch}


def _decode(ctx: _EvalRun, ids, prompt: str = "") -> list[str]:
    """Best beam (B, R, T) -> the strings the scorer sees (`decode_generated`: official, [UNK]
    kept unless settings.decode_keep_unk is False); a decoding prompt is removed."""
    from mplug.data.tokenizer import decode_generated

    rows = ids[:, 0] if ids.dim() == 3 else ids
    out = []
    for text in decode_generated(ctx.tok, rows.tolist(), keep_unk=ctx.settings.decode_keep_unk):
        for p in (prompt, " ".join(prompt.split()[:-1])):
            if p and text.startswith(p):
                text = text[len(p):].strip()
                break
        out.append(text)
    return out


def _prompt_ids(ctx: _EvalRun, prompt: str, drop_last: bool):
    """Decoder prompt `[CLS] prompt` (official tokenizer: no [SEP]); VATEX drops its last id."""
    from mplug.data.tokenizer import encode_texts

    if not prompt:
        return None
    ids = encode_texts(ctx.tok, [prompt], 64, add_sep=False)[0][0].to(ctx.device)
    return ids[:-1] if drop_last and ids.numel() > 2 else ids


# ============================================================================ per task
def _with_ci(metrics: dict, s: EvalSettings, unit: str, make: Callable[..., dict]) -> dict:
    """Add `ci95: {metric: [lo, hi]}` (mplug.eval.bootstrap, resampling `unit`) to `metrics`."""
    if s.ci_resamples > 0:
        metrics["ci95"] = make(resamples=s.ci_resamples, seed=s.ci_seed)
        metrics["ci_resamples"], metrics["ci_unit"] = s.ci_resamples, unit
    return metrics


def _run_vqa(ctx: _EvalRun) -> tuple[dict, list]:
    from mplug.eval import vqa_server
    from mplug.eval.bootstrap import vqa_ci
    from mplug.eval.vqa_eval import question_accuracy, vqa_accuracy

    s, preds = ctx.settings, []
    for b in _batches(ctx, f"vqa {ctx.split}"):
        out, _ = ctx.model.generate(_inputs(b), beam_size=s.vqa_beam, max_length=s.vqa_max_length,
                                    min_length=s.vqa_min_length)
        preds += [{"question_id": m["question_id"], "answer": a}
                  for m, a in zip(b["meta"], _decode(ctx, out))]
    answered = [r for r in ctx.records if r.get("answers")]
    if not answered:  # test-dev/test-std: answers are private
        # `test` holds every test2015 question: test-std needs them all, test-dev scores its subset
        server = "test-dev and test-std" if ctx.split == "test" else vqa_server.canonical_split(ctx.split)
        return {**vqa_server.pending_metrics(server or ctx.split), "questions": len(preds)}, preds
    if len(answered) != len(ctx.records):
        raise DataError(f"{ctx.split}: {len(ctx.records) - len(answered)} questions have no answers "
                        "while others do; a split is either public or server-only")
    anns = {r["question_id"]: r for r in ctx.records}
    answers = {p["question_id"]: p["answer"] for p in preds}
    res = vqa_accuracy(answers, anns)
    per_q = [question_accuracy(answers[q], [a["answer"] if isinstance(a, dict) else a
                                            for a in r["answers"]]) for q, r in anns.items()]
    return _with_ci({"overall": res["overall"], "perAnswerType": res["perAnswerType"]}, s,
                    "question", lambda **kw: vqa_ci(per_q, **kw)), preds


def _run_caption(ctx: _EvalRun) -> tuple[dict, list]:
    from mplug.eval.bootstrap import caption_ci
    from mplug.eval.caption_eval import score_captions, score_nocaps

    s, spec = ctx.settings, ctx.spec
    video = spec.frames_field is not None
    prompt = getattr(s, spec.prompt_field)
    beam, lo, hi = (getattr(s, f"{spec.gen_prefix}_{k}") for k in ("beam", "min_length", "max_length"))
    prompt_ids = _prompt_ids(ctx, prompt, drop_last=video and s.video_prompt_drop_last)
    key = "video_id" if video else "image_id"
    preds = []
    for b in _batches(ctx, f"{ctx.task} {ctx.split}"):
        out, _ = ctx.model.generate({"image": b["image"]}, beam_size=beam, min_length=lo,
                                    max_length=hi, prompt_ids=prompt_ids)
        preds += [{key: m[key], "caption": c} for m, c in zip(b["meta"], _decode(ctx, out, prompt))]
    refs = {r[key]: r["captions"] for r in ctx.records if r.get("captions")}
    if not refs:
        return {"status": "no public references for this split",
                "unavailable": {"CIDEr": "references are not public (server evaluation)"}}, preds
    hyp, per = {p[key]: p["caption"] for p in preds}, {}
    if spec.schema == "nocaps":  # references and scores per domain
        doms = {r[key]: NOCAPS_DOMAIN.get(r["domain"], r["domain"]) for r in ctx.records}
        metrics = score_nocaps(refs, hyp, doms, per_image=per)
    else:
        metrics = score_captions(refs, hyp, metrics=s.caption_metrics, per_image=per)
    return _with_ci(metrics, s, key.removesuffix("_id"),
                    lambda **kw: caption_ci(per, **kw)), preds


def _run_retrieval(ctx: _EvalRun) -> tuple[dict, list]:
    import numpy as np
    import torch

    from mplug.eval.bootstrap import retrieval_ci
    from mplug.eval.retrieval_eval import TOPK, recall_at_k, retrieval_ranks, two_stage_scores

    s, ds = ctx.settings, ctx.dataset
    video = ctx.spec.frames_field is not None
    add_itc = ctx.spec.retrieval_score == "itm_plus_itc"  # official video retrieval: ITM + ITC
    k = s.k_test or TOPK["coco" if ctx.task == "retrieval_coco" else "flickr"]
    img_embeds, img_masks, img_feats, order = [], [], [], []
    for b in _batches(ctx, "encode images"):  # eval mode: one example per image, record order
        f = ctx.model.itc_features(image=b["image"])
        img_embeds.append(f["image_embeds"])  # (B, N, D)
        img_masks.append(f["image_mask"])
        img_feats.append(f["image_feat"])  # (B, E)
        order += b["image_idx"].tolist()
    if order != list(range(len(ctx.records))):
        raise DataError(f"{ctx.task}: the image loader is not in record order; cannot score")
    # the caption gallery (official re_eval_dataset: pre_caption'd texts) with the training
    # collator's encoding of retrieval texts
    texts = ds.texts
    t_embeds, t_masks, t_feats = [], [], []
    for j in _progress(range(0, len(texts), s.batch_size), "encode texts"):
        ids, mask = ctx.collate.encode_text(texts[j:j + s.batch_size])
        ids, mask = ids.to(ctx.device), mask.to(ctx.device)
        f = ctx.model.itc_features(text_ids=ids, text_mask=mask)
        t_embeds += list(f["text_embeds"])
        t_masks += list(mask)
        t_feats.append(f["text_feat"])
    v, vm = torch.cat(img_embeds), torch.cat(img_masks)
    sims = ctx.model.itc_sim(torch.cat(img_feats), torch.cat(t_feats)).float().cpu().numpy()

    def itm(img_idx: np.ndarray, txt_idx: np.ndarray) -> np.ndarray:
        # Fast path: each distinct image's cross-attention K/V is projected once and shared by
        # all its candidate texts (image->text rerank: one image, k texts). Same scores as
        # `itm_scores` within 1e-5 (tests/bench/test_itm_fastpath.py).
        uniq, inv = np.unique(img_idx, return_inverse=True)
        te = torch.nn.utils.rnn.pad_sequence([t_embeds[t] for t in txt_idx], batch_first=True)
        tm = torch.nn.utils.rnn.pad_sequence([t_masks[t] for t in txt_idx], batch_first=True)
        return ctx.model.itm_scores_cached(v[uniq], te, tm, vm[uniq], image_index=inv,
                                           chunk=s.batch_size).float().cpu().numpy()

    i2t, t2i = two_stage_scores(sims, k, itm, add_itc=add_itc, progress=True)
    metrics = recall_at_k(i2t, t2i, ds.txt2img, ds.img2txt)
    ranks = retrieval_ranks(i2t, t2i, ds.txt2img, ds.img2txt)
    _with_ci(metrics, s, "query (per direction)", lambda **kw: retrieval_ci(*ranks, **kw))
    key = "video_id" if video else "image_id"
    preds = [{key: r[key], "top_texts": [int(t) for t in np.argsort(-i2t[i], kind="stable")[:10]]}
             for i, r in enumerate(ctx.records)]
    metrics.update(k_test=k, n_images=len(ctx.records), n_texts=len(texts))
    return metrics, preds


def _run_grounding(ctx: _EvalRun) -> tuple[dict, list]:
    import numpy as np

    from mplug.data.transforms import box_to_original
    from mplug.eval.bootstrap import grounding_ci
    from mplug.eval.grounding_eval import box_iou, clamp_boxes, cxcywh_to_xyxy, grounding_accuracy

    preds, pred_n, gt_n = [], [], []
    for b in _batches(ctx, f"grounding {ctx.split}"):
        boxes = ctx.model.generate(_inputs(b)).float().cpu().numpy()  # (B, 4) cxcywh, padded square
        pred_n.append(cxcywh_to_xyxy(boxes))
        gt_n.append(cxcywh_to_xyxy(b["box"].float().cpu().numpy()))  # the dataset's mapped box
        for m, box, xyxy in zip(b["meta"], boxes, pred_n[-1]):
            x, y, w, h = box_to_original(box.tolist(), m["pad"])  # original image pixels
            preds.append({"ref_id": m["ref_id"], "box": [x, y, x + w, y + h],
                          "box_normalized": [float(c) for c in xyxy]})
    # official: IoU in the padded square after clamping the prediction to [0, 1]
    pred_xyxy, gt_xyxy = np.concatenate(pred_n), np.concatenate(gt_n)
    iou = box_iou(clamp_boxes(pred_xyxy), gt_xyxy)
    return _with_ci(grounding_accuracy(pred_xyxy, gt_xyxy), ctx.settings, "expression",
                    lambda **kw: grounding_ci(iou, **kw)), preds


def _run_classify(ctx: _EvalRun) -> tuple[dict, list]:
    import numpy as np

    from mplug.eval.accuracy import accuracy
    from mplug.eval.bootstrap import accuracy_ci

    preds, labels = [], []
    for b in _batches(ctx, f"{ctx.task} {ctx.split}"):
        out = ctx.model.predict(_inputs(b)).tolist()  # NLVR2 image: (B, 2, 3, H, W)
        labels += b["label"].tolist()  # SNLI-VE: contradiction 0, neutral 1, entailment 2
        preds += [{"pair_id": m["pair_id"], "prediction": int(p)} for m, p in zip(b["meta"], out)]
    hits = np.array([p["prediction"] == g for p, g in zip(preds, labels)])
    return _with_ci({"accuracy": accuracy([p["prediction"] for p in preds], labels)},
                    ctx.settings, "pair", lambda **kw: accuracy_ci(hits, **kw)), preds


def _run_video_qa(ctx: _EvalRun) -> tuple[dict, list]:
    import numpy as np

    from mplug.data.formats import read_answer_list
    from mplug.eval.accuracy import accuracy
    from mplug.eval.bootstrap import accuracy_ci

    s = ctx.settings
    answers = read_answer_list(ctx.dataset.root / "answer_list.json")
    a_ids, a_mask = (t.to(ctx.device) for t in ctx.collate.encode_answers(answers))  # (K, T)
    preds = []
    for b in _batches(ctx, f"{ctx.task} {ctx.split}"):
        idx, prob = ctx.model.rank_answers(_inputs(b), a_ids, a_mask, k=s.rank_k)
        best = idx.gather(1, prob.argmax(dim=1, keepdim=True)).squeeze(1).tolist()
        preds += [{"question_id": m["question_id"], "answer": answers[i]}
                  for m, i in zip(b["meta"], best)]
    gold = [r["answer"] for r in ctx.records]
    acc = accuracy([p["answer"] for p in preds], gold)
    hits = np.array([p["answer"] == g for p, g in zip(preds, gold)])
    return _with_ci({"accuracy": acc, "n_answers": len(answers)}, s, "question",
                    lambda **kw: accuracy_ci(hits, **kw)), preds


# A task's TaskSpec.evaluator names its routine (mplug.task_registry): routine name -> routine.
EVALUATORS: dict[str, Callable[[_EvalRun], tuple[dict, list]]] = {
    "vqa": _run_vqa, "caption": _run_caption, "retrieval": _run_retrieval,
    "grounding": _run_grounding, "classify": _run_classify, "video_qa": _run_video_qa,
}


# ============================================================================ entry point
def split_folder(task: str, data: str | Path, split: str, dataset: str | None = None) -> Path:
    """The folder holding `<split>.jsonl`: --data itself, or its sub-folder `dataset` (default:
    the task's folder). Unlike mplug.data.datasets.resolve_dataset_dir, the split must exist."""
    data = Path(data)
    if (data / f"{split}.jsonl").is_file():
        return data
    name = dataset or get_task(task).dataset
    if (data / name / f"{split}.jsonl").is_file():
        return data / name
    raise DataError(f"no {split}.jsonl in {data} or {data / name}; run `mplug data preprocess` "
                    f"(or `mplug data synth`) first, or pass the dataset folder with --data")


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def trained_grounding_bins(checkpoint: str | Path | None) -> int | None:
    """The coordinate bins a grounding checkpoint was trained with, from the `summary.json`
    training writes beside `model.safetensors` (run.settings.grounding.bins); None when there is
    no such summary (an official checkpoint: the model config's 337 bins apply)."""
    if checkpoint is None:
        return None
    summary = Path(checkpoint).with_name("summary.json")
    if not summary.is_file():
        return None
    try:
        grounding = json.loads(summary.read_text())["run"]["settings"].get("grounding") or {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        log.warning("%s: unreadable training summary; grounding bins from the model config", summary)
        return None
    bins = grounding.get("bins")
    if bins:
        log.info("grounding bins %s from the checkpoint's training summary %s", bins, summary)
    return int(bins) if bins else None


def load_model(model_task: str, checkpoint: str | Path | None, settings: EvalSettings, device,
               tokenizer: Any = None):
    """Build `settings.model` for `model_task` at the evaluation resolution, its vocabulary sized
    for `tokenizer` by `mplug.data.tokenizer.vocab_overrides` (the rule training uses), and load
    `checkpoint`, resizing its ViT position embedding when it was trained at another resolution
    (bilinear, as the official fine-tuning and zero-shot scripts do). The model's `resolution`
    attribute records {image_res, checkpoint_image_res, pos_embed_resized} for the provenance."""
    from mplug.data.tokenizer import vocab_overrides
    from mplug.models import build_model, get_config
    from mplug.models.convert import fit_pos_embeds
    from mplug.models.loading import load_state_dict_safe

    over = vocab_overrides(tokenizer, settings.model) if tokenizer is not None else {}
    over.update({k: v for k, v in (("stride", settings.stride), ("schedule", settings.schedule))
                 if v is not None})
    if model_task == "grounding":
        bins = settings.grounding_bins or trained_grounding_bins(checkpoint)
        if bins:
            over["grounding_bins"] = bins
    # Queues are not even loaded: their size is a training choice (0 = in-batch ITC), so their
    # shape must not decide whether a model loads.
    state = None if checkpoint is None else {
        k: v for k, v in load_state_dict_safe(checkpoint).items() if k.split(".")[0] not in _QUEUES}
    trained_res = checkpoint_image_res(state, settings.model) if state is not None else None
    over["image_res"] = settings.image_res or trained_res or get_config(settings.model).vision.image_res
    model = build_model(settings.model, model_task, **over)
    resized = fit_pos_embeds(state, model.state_dict()) if state is not None else []
    model.resolution = {"image_res": over["image_res"], "checkpoint_image_res": trained_res,
                        "pos_embed_resized": bool(resized)}
    if state is not None:
        _load_weights(model, model_task, state, checkpoint, settings)
        if resized:
            log.info("position embedding resized from %s px (checkpoint) to %s px: %s", trained_res,
                     over["image_res"], ", ".join(resized))
    return model.to(device).eval()


def checkpoint_image_res(state: dict, arch: str) -> int | None:
    """The resolution a checkpoint's ViT position embedding was built for (grid x patch)."""
    import math

    from mplug.models import get_config

    pos = state.get("visual_encoder.positional_embedding")
    if pos is None or pos.dim() != 2:
        return None
    grid = math.isqrt(pos.shape[0] - 1)
    if grid * grid != pos.shape[0] - 1:
        raise CheckpointError(f"visual_encoder.positional_embedding has {pos.shape[0]} rows: not "
                              "1 + a square grid of patches")
    return grid * get_config(arch).vision.patch


def _load_weights(model, model_task: str, state: dict, checkpoint, settings: EvalSettings) -> None:
    """Unexpected keys are fine (zero-shot from a pretrained or other-task checkpoint); a missing
    weight is not, except momentum copies and queues, which inference never uses."""
    from mplug.models.loading import load_into

    try:
        report = load_into(model, state, strict=False, source=str(checkpoint))
    except CheckpointError as err:
        if "word_embeddings" not in str(err):
            raise
        raise CheckpointError(f"{err}\nThe vocabulary differs: the model has "
                              f"{model.cfg.text.vocab_size} rows for this tokenizer "
                              "(mplug.data.tokenizer.vocab_overrides); evaluate with the "
                              "tokenizer the checkpoint was trained with (--tokenizer)") from None
    missing = [k for k in report.missing if not _train_only(k)]
    if missing:
        raise CheckpointError(f"{checkpoint}: {len(missing)} weights the {model_task} model "
                              f"needs are missing, e.g. {missing[:5]}; is it the right "
                              f"checkpoint for --model {settings.model_key or settings.model}?")
    log.info("loaded %s (%d unused checkpoint keys)", checkpoint, len(report.unexpected))


_QUEUES = ("image_queue", "text_queue", "idx_queue", "queue_ptr")


def _train_only(key: str) -> bool:
    head = key.split(".")[0]
    return head.endswith("_m") or head in _QUEUES


def evaluate(task: str, checkpoint: str | Path | None, data: str | Path, split: str,
             out: str | Path, settings: EvalSettings | None = None, tokenizer: str | None = None,
             dataset: str | None = None, config: Any = None,
             not_acted_on: dict[str, str] | None = None) -> dict:
    """Run `task` on `split`; write predictions next to `out` and the metrics JSON to `out`.
    `not_acted_on`: config keys the evaluation does not use, recorded in the provenance."""
    import torch

    from mplug.data.tokenizer import find_vocab, load_tokenizer
    from mplug.utils.provenance import provenance

    spec = get_task(task, "evaluate")  # unknown: a ConfigError listing the evaluation tasks
    settings = settings or EvalSettings()
    start = time.time()
    data_dir = split_folder(task, data, split, dataset)
    device = _device(settings.device)
    # the trainer's lookup: --tokenizer, else the config's `tokenizer:`, else vocab.txt near the data
    cfg_tok = config.get("tokenizer") if isinstance(config, dict) else None
    tok = load_tokenizer(find_vocab(data_dir, tokenizer or cfg_tok))
    model = load_model(spec.model_task, checkpoint, settings, device, tokenizer=tok)
    res = model.resolution["image_res"]
    loader, ds = eval_loader(task, data_dir, split, tok, res, settings, model.cfg.text.max_position)
    records = ds.records
    if task == "grounding" and dataset is None and "dataset" in records[0]:
        dataset = records[0]["dataset"]
    ctx = _EvalRun(task, model, tok, loader, ds, loader.collate_fn, settings, device, split)
    log.info("evaluating %s on %s/%s (%d records) with %s", task, data_dir.name, split,
             len(records), settings.model)
    with torch.inference_mode():
        metrics, preds = EVALUATORS[spec.evaluator](ctx)
    out = Path(out)
    pred_path = out.with_name(out.stem + ".predictions.json")
    atomic_write_json(pred_path, preds, indent=None)
    if task == "vqa" and metrics.get("overall") is None:  # EvalAI wants exactly this file
        from mplug.eval.vqa_server import write_submission

        sub = out.with_name(out.stem + ".evalai_submission.json")
        write_submission(sub, [(p["question_id"], p["answer"]) for p in preds])
        metrics["submission_file"] = str(sub)
    result = {"task": task, "split": split, "metrics": metrics,
              "provenance": provenance(
                  config=config if config is not None else dataclasses.asdict(settings),
                  checkpoint=checkpoint, dataset=dataset or data_dir.name, split=split,
                  size=len(records), wall_time_s=round(time.time() - start, 3),
                  settings=dataclasses.asdict(settings), predictions=str(pred_path),
                  model_key=settings.model_key, job=settings.job, arch=settings.model,
                  resolution=model.resolution, not_acted_on=dict(not_acted_on or {}))}
    atomic_write_json(out, result)
    log.info("%s/%s: %s", task, split, {k: v for k, v in metrics.items() if not isinstance(v, dict)})
    return result
