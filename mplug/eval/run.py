"""Evaluation runs: a checkpoint on a task split -> predictions file + metrics JSON with provenance.

`evaluate(task, checkpoint, data, split, out, settings)` is what `mplug evaluate` calls. Generation
settings default to the official code (official-mplug.md section 3); the paper's variants are
named options (`EvalSettings.paper_caption()`: beam 10 / max 20). The model is built with
`mplug.models.build_model(settings.model, <model task>)` and loaded with weights_only safety.

Text encoding: VQA questions are `[CLS] question` with no [SEP] (official tokenizer quirk); every
other encoder text is `[CLS] text [SEP]`; decoder prompts are `[CLS] prompt` (no [SEP]).
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable

from mplug.errors import CheckpointError, ConfigError, DataError
from mplug.utils.io import atomic_write_json
from mplug.utils.logging import get_logger

log = get_logger("mplug.eval")

# CLI task -> (model task for build_model, record schema)
EVAL_TASKS: dict[str, tuple[str, str]] = {
    "vqa": ("vqa", "vqa"), "caption": ("caption", "caption"), "nocaps": ("caption", "nocaps"),
    "retrieval_coco": ("retrieval", "retrieval"), "retrieval_flickr": ("retrieval", "retrieval"),
    "grounding": ("grounding", "grounding"), "nlvr2": ("nlvr2", "nlvr2"),
    "snli_ve": ("snli_ve", "snli_ve"), "video_retrieval": ("retrieval", "video_retrieval"),
    "video_qa_msrvtt": ("vqa", "video_qa"), "video_qa_msvd": ("vqa", "video_qa"),
    "video_caption": ("caption", "video_caption"),
}
SNLI_LABELS = {"contradiction": 0, "neutral": 1, "entailment": 2}
NOCAPS_DOMAIN = {"in": "in-domain", "near": "near-domain", "out": "out-domain"}


@dataclasses.dataclass
class EvalSettings:
    """Everything that changes a number. Defaults = official code."""

    model: str = "mplug_base"
    batch_size: int = 16
    device: str = "auto"
    limit: int | None = None           # evaluate only the first N records (smoke/debug)
    image_res: int | None = None       # None: the model config's resolution
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
    rank_k: int = 128                  # video QA answer ranking
    frames_retrieval: int = 8
    frames_qa: int = 16
    frames_caption: int = 8
    text_max_length: int = 30          # retrieval captions (official max_length 30)
    caption_metrics: tuple[str, ...] = ("Bleu", "METEOR", "ROUGE_L", "CIDEr", "SPICE")

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
class _Ctx:
    task: str
    model: Any
    tok: Any
    data_dir: Path
    records: list[dict]
    settings: EvalSettings
    device: Any
    res: int
    split: str


# ============================================================================ helpers
def _progress(items, desc: str):
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="batch", leave=False)


def _encode(ctx: _Ctx, texts: list[str], max_len: int, add_sep: bool = True):
    from mplug.data.tokenizer import encode_texts

    ids, mask = encode_texts(ctx.tok, texts, max_len, add_sep=add_sep)
    return ids.to(ctx.device), mask.to(ctx.device)


def _max_text(ctx: _Ctx) -> int:
    return ctx.model.cfg.text.max_position


def _images(ctx: _Ctx, recs: list[dict], key: str = "image"):
    import torch

    from mplug.eval.inputs import load_image

    return torch.stack([load_image(ctx.data_dir / r[key], ctx.res) for r in recs]).to(ctx.device)


def _videos(ctx: _Ctx, recs: list[dict], frames: int):
    import torch

    from mplug.eval.inputs import load_video

    return torch.stack([load_video(ctx.data_dir, r, ctx.res, frames) for r in recs]).to(ctx.device)


def _decode(ctx: _Ctx, ids, prompt: str = "") -> list[str]:
    """Best beam (B, R, T) -> strings without special tokens; a decoding prompt is removed."""
    rows = ids[:, 0] if ids.dim() == 3 else ids
    out = []
    for row in rows.tolist():
        text = ctx.tok.decode(row, skip_special_tokens=True).strip()
        for p in (prompt, " ".join(prompt.split()[:-1])):
            if p and text.startswith(p):
                text = text[len(p):].strip()
                break
        out.append(text)
    return out


def _prompt_ids(ctx: _Ctx, prompt: str, drop_last: bool):
    if not prompt:
        return None
    ids, _ = _encode(ctx, [prompt], 64, add_sep=False)
    ids = ids[0]
    return ids[:-1] if drop_last and ids.numel() > 2 else ids


# ============================================================================ per task
def _run_vqa(ctx: _Ctx) -> tuple[dict, list]:
    from mplug.eval import vqa_server
    from mplug.eval.vqa_eval import vqa_accuracy

    s, preds = ctx.settings, []
    for recs in _progress(list(_chunks(ctx)), f"vqa {ctx.split}"):
        ids, mask = _encode(ctx, [r["question"] for r in recs], _max_text(ctx), add_sep=False)
        out, _ = ctx.model.generate({"image": _images(ctx, recs), "text_ids": ids, "text_mask": mask},
                                    beam_size=s.vqa_beam, max_length=s.vqa_max_length,
                                    min_length=s.vqa_min_length)
        preds += [{"question_id": r["question_id"], "answer": a} for r, a in zip(recs, _decode(ctx, out))]
    answered = [r for r in ctx.records if r.get("answers")]
    if not answered:  # test-dev/test-std: answers are private
        server = vqa_server.canonical_split(ctx.split) or ctx.split
        return vqa_server.pending_metrics(server), preds
    if len(answered) != len(ctx.records):
        raise DataError(f"{ctx.split}: {len(ctx.records) - len(answered)} questions have no answers "
                        "while others do; a split is either public or server-only")
    anns = {r["question_id"]: r for r in ctx.records}
    res = vqa_accuracy({p["question_id"]: p["answer"] for p in preds}, anns)
    return {"overall": res["overall"], "perAnswerType": res["perAnswerType"]}, preds


def _run_caption(ctx: _Ctx) -> tuple[dict, list]:
    from mplug.eval.caption_eval import score_captions, score_nocaps

    s, video = ctx.settings, ctx.task == "video_caption"
    if video:
        prompt, beam, lo, hi = (s.video_caption_prompt, s.video_caption_beam,
                                s.video_caption_min_length, s.video_caption_max_length)
    else:
        prompt = s.nocaps_prompt if ctx.task == "nocaps" else s.caption_prompt
        beam, lo, hi = s.caption_beam, s.caption_min_length, s.caption_max_length
    prompt_ids = _prompt_ids(ctx, prompt, drop_last=video and s.video_prompt_drop_last)
    key = "video_id" if video else "image_id"
    preds = []
    for recs in _progress(list(_chunks(ctx)), f"{ctx.task} {ctx.split}"):
        image = _videos(ctx, recs, s.frames_caption) if video else _images(ctx, recs)
        out, _ = ctx.model.generate({"image": image}, beam_size=beam, min_length=lo,
                                    max_length=hi, prompt_ids=prompt_ids)
        preds += [{key: r[key], "caption": c} for r, c in zip(recs, _decode(ctx, out, prompt))]
    refs = {r[key]: r["captions"] for r in ctx.records if r.get("captions")}
    if not refs:
        return {"status": "no public references for this split",
                "unavailable": {"CIDEr": "references are not public (server evaluation)"}}, preds
    hyp = {p[key]: p["caption"] for p in preds}
    if ctx.task == "nocaps":
        doms = {r[key]: NOCAPS_DOMAIN.get(r["domain"], r["domain"]) for r in ctx.records}
        return score_nocaps(refs, hyp, doms), preds
    return score_captions(refs, hyp, metrics=s.caption_metrics), preds


def _run_retrieval(ctx: _Ctx) -> tuple[dict, list]:
    import numpy as np
    import torch

    from mplug.eval.retrieval_eval import TOPK, recall_at_k, two_stage_scores

    s, video = ctx.settings, ctx.task == "video_retrieval"
    k = s.k_test or TOPK["coco" if ctx.task == "retrieval_coco" else "flickr"]
    img_embeds, img_masks, img_feats = [], [], []
    for recs in _progress(list(_chunks(ctx)), "encode images"):  # each image once
        image = _videos(ctx, recs, s.frames_retrieval) if video else _images(ctx, recs)
        f = ctx.model.itc_features(image=image)
        img_embeds.append(f["image_embeds"])  # (B, N, D)
        img_masks.append(f["image_mask"])
        img_feats.append(f["image_feat"])  # (B, E)
    texts, txt2img, img2txt = [], [], []
    for i, r in enumerate(ctx.records):
        img2txt.append(list(range(len(texts), len(texts) + len(r["captions"]))))
        texts += r["captions"]
        txt2img += [i] * len(r["captions"])
    t_embeds, t_masks, t_feats = [], [], []
    for j in _progress(range(0, len(texts), s.batch_size), "encode texts"):
        ids, mask = _encode(ctx, texts[j:j + s.batch_size], s.text_max_length)
        f = ctx.model.itc_features(text_ids=ids, text_mask=mask)
        t_embeds += list(f["text_embeds"])
        t_masks += list(mask)
        t_feats.append(f["text_feat"])
    v, vm = torch.cat(img_embeds), torch.cat(img_masks)
    sims = ctx.model.itc_sim(torch.cat(img_feats), torch.cat(t_feats)).float().cpu().numpy()

    def itm(img_idx: np.ndarray, txt_idx: np.ndarray) -> np.ndarray:
        scores = []
        for a in range(0, len(img_idx), s.batch_size):
            ii, tt = img_idx[a:a + s.batch_size], txt_idx[a:a + s.batch_size]
            te = torch.nn.utils.rnn.pad_sequence([t_embeds[t] for t in tt], batch_first=True)
            tm = torch.nn.utils.rnn.pad_sequence([t_masks[t] for t in tt], batch_first=True)
            scores.append(ctx.model.itm_scores(v[ii], te, tm, vm[ii]).float().cpu().numpy())
        return np.concatenate(scores)

    i2t, t2i = two_stage_scores(sims, k, itm, add_itc=video, progress=True)
    metrics = recall_at_k(i2t, t2i, txt2img, img2txt)
    key = "video_id" if video else "image_id"
    preds = [{key: r[key], "top_texts": [int(t) for t in np.argsort(-i2t[i], kind="stable")[:10]]}
             for i, r in enumerate(ctx.records)]
    metrics.update(k_test=k, n_images=len(ctx.records), n_texts=len(texts))
    return metrics, preds


def _run_grounding(ctx: _Ctx) -> tuple[dict, list]:
    import numpy as np
    import torch

    from mplug.eval.grounding_eval import cxcywh_to_xyxy, grounding_accuracy
    from mplug.eval.inputs import load_padded

    preds, pred_n, gt_n = [], [], []
    for recs in _progress(list(_chunks(ctx)), f"grounding {ctx.split}"):
        loaded = [load_padded(ctx.data_dir / r["image"], ctx.res) for r in recs]
        image = torch.stack([x for x, _ in loaded]).to(ctx.device)
        ids, mask = _encode(ctx, [r["expression"] for r in recs], _max_text(ctx))
        boxes = ctx.model.generate({"image": image, "text_ids": ids, "text_mask": mask})
        xyxy = cxcywh_to_xyxy(boxes.float().cpu().numpy())  # (B, 4) in the padded square, [0, 1]
        for r, b, (scale, left, top) in zip(recs, xyxy, (m for _, m in loaded)):
            x, y, w, h = r["box"]
            gt = np.array([x * scale + left, y * scale + top, (x + w) * scale + left,
                           (y + h) * scale + top]) / ctx.res
            pix = [(b[0] * ctx.res - left) / scale, (b[1] * ctx.res - top) / scale,
                   (b[2] * ctx.res - left) / scale, (b[3] * ctx.res - top) / scale]
            pred_n.append(b), gt_n.append(gt)
            preds.append({"ref_id": r["ref_id"], "box": [float(c) for c in pix],
                          "box_normalized": [float(c) for c in b]})
    # official: IoU in the padded square after clamping the prediction to [0, 1]
    return grounding_accuracy(np.array(pred_n), np.array(gt_n)), preds


def _run_classify(ctx: _Ctx) -> tuple[dict, list]:
    import torch

    from mplug.eval.accuracy import accuracy

    nlvr = ctx.task == "nlvr2"
    preds, labels = [], []
    for recs in _progress(list(_chunks(ctx)), f"{ctx.task} {ctx.split}"):
        if nlvr:
            image = torch.stack([_images(ctx, recs, "image_left"), _images(ctx, recs, "image_right")], 1)
            text = [r["statement"] for r in recs]
        else:
            image, text = _images(ctx, recs), [r["hypothesis"] for r in recs]
        ids, mask = _encode(ctx, text, _max_text(ctx))
        out = ctx.model.predict({"image": image, "text_ids": ids, "text_mask": mask}).tolist()
        for r, p in zip(recs, out):
            labels.append(int(r["label"]) if nlvr else SNLI_LABELS[r["label"]])
            preds.append({"pair_id": r["pair_id"], "prediction": int(p)})
    return {"accuracy": accuracy([p["prediction"] for p in preds], labels)}, preds


def _run_video_qa(ctx: _Ctx) -> tuple[dict, list]:
    from mplug.data.formats import read_answer_list
    from mplug.eval.accuracy import accuracy

    s = ctx.settings
    answers = read_answer_list(ctx.data_dir / "answer_list.json")
    a_ids, a_mask = _encode(ctx, answers, _max_text(ctx), add_sep=True)  # [CLS] answer [SEP]
    preds = []
    for recs in _progress(list(_chunks(ctx)), f"{ctx.task} {ctx.split}"):
        ids, mask = _encode(ctx, [r["question"] for r in recs], _max_text(ctx), add_sep=False)
        batch = {"image": _videos(ctx, recs, s.frames_qa), "text_ids": ids, "text_mask": mask}
        idx, prob = ctx.model.rank_answers(batch, a_ids, a_mask, k=s.rank_k)
        best = idx.gather(1, prob.argmax(dim=1, keepdim=True)).squeeze(1).tolist()
        preds += [{"question_id": r["question_id"], "answer": answers[b]} for r, b in zip(recs, best)]
    acc = accuracy([p["answer"] for p in preds], [r["answer"] for r in ctx.records])
    return {"accuracy": acc, "n_answers": len(answers)}, preds


RUNNERS: dict[str, Callable[[_Ctx], tuple[dict, list]]] = {
    "vqa": _run_vqa, "caption": _run_caption, "nocaps": _run_caption,
    "video_caption": _run_caption, "retrieval_coco": _run_retrieval,
    "retrieval_flickr": _run_retrieval, "video_retrieval": _run_retrieval,
    "grounding": _run_grounding, "nlvr2": _run_classify, "snli_ve": _run_classify,
    "video_qa_msrvtt": _run_video_qa, "video_qa_msvd": _run_video_qa,
}


def _chunks(ctx: _Ctx):
    from mplug.eval.inputs import batches

    return batches(ctx.records, ctx.settings.batch_size)


# ============================================================================ entry point
def resolve_dataset_dir(task: str, data: str | Path, split: str, dataset: str | None = None) -> Path:
    """--data may be the dataset folder itself or data/<run>/ holding it."""
    from mplug.data.formats import TASK_DATASET

    data = Path(data)
    if (data / f"{split}.jsonl").is_file():
        return data
    name = dataset or TASK_DATASET.get(task, task)
    if (data / name / f"{split}.jsonl").is_file():
        return data / name
    raise DataError(f"no {split}.jsonl in {data} or {data / name}; run `mplug data preprocess` "
                    f"(or `mplug data synth`) first, or pass the dataset folder with --data")


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_model(model_task: str, checkpoint: str | Path | None, settings: EvalSettings, device,
               vocab_size: int | None = None):
    """Build `settings.model` for `model_task`; a tokenizer larger than the named config's
    vocabulary (the synthetic world's) widens it, as training does."""
    from mplug.models import build_model, get_config
    from mplug.models.loading import load_into, load_state_dict_safe

    over = {}
    if vocab_size and vocab_size > get_config(settings.model).text.vocab_size:
        over["vocab_size"] = vocab_size
    model = build_model(settings.model, model_task, **over)
    if checkpoint is not None:
        # Unexpected keys are fine (zero-shot from a pretrained or other-task checkpoint); a
        # missing weight is not, except momentum copies and queues, which inference never uses.
        report = load_into(model, load_state_dict_safe(checkpoint), strict=False,
                           source=str(checkpoint))
        missing = [k for k in report.missing if not _train_only(k)]
        if missing:
            raise CheckpointError(f"{checkpoint}: {len(missing)} weights the {model_task} model "
                                  f"needs are missing, e.g. {missing[:5]}; is it the right "
                                  f"checkpoint for --model {settings.model}?")
        log.info("loaded %s (%d unused checkpoint keys)", checkpoint, len(report.unexpected))
    return model.to(device).eval()


def _train_only(key: str) -> bool:
    head = key.split(".")[0]
    return head.endswith("_m") or head in ("image_queue", "text_queue", "idx_queue", "queue_ptr")


def evaluate(task: str, checkpoint: str | Path | None, data: str | Path, split: str,
             out: str | Path, settings: EvalSettings | None = None, tokenizer: str | None = None,
             dataset: str | None = None, config: Any = None) -> dict:
    """Run `task` on `split`; write predictions next to `out` and the metrics JSON to `out`."""
    import torch

    from mplug.data.formats import read_records
    from mplug.data.tokenizer import load_tokenizer
    from mplug.eval.inputs import find_vocab
    from mplug.utils.provenance import provenance

    if task not in EVAL_TASKS:
        raise ConfigError(f"unknown evaluation task {task!r}; use one of {', '.join(EVAL_TASKS)}")
    settings = settings or EvalSettings()
    model_task, schema = EVAL_TASKS[task]
    start = time.time()
    data_dir = resolve_dataset_dir(task, data, split, dataset)
    records = read_records(data_dir / f"{split}.jsonl", schema)
    if task == "grounding" and dataset is None and records and "dataset" in records[0]:
        dataset = records[0]["dataset"]
    if settings.limit:
        records = records[: settings.limit]
    if not records:
        raise DataError(f"{data_dir / f'{split}.jsonl'} has no records")
    device = _device(settings.device)
    tok = load_tokenizer(find_vocab(data_dir, tokenizer))
    model = load_model(model_task, checkpoint, settings, device, vocab_size=len(tok))
    ctx = _Ctx(task, model, tok, data_dir, records,
               settings, device, settings.image_res or model.cfg.vision.image_res, split)
    log.info("evaluating %s on %s/%s (%d records) with %s", task, data_dir.name, split,
             len(records), settings.model)
    with torch.inference_mode():
        metrics, preds = RUNNERS[task](ctx)
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
                  settings=dataclasses.asdict(settings), predictions=str(pred_path))}
    atomic_write_json(out, result)
    log.info("%s/%s: %s", task, split, {k: v for k, v in metrics.items() if not isinstance(v, dict)})
    return result
