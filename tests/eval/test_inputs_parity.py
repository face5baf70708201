"""The evaluator feeds the model exactly the training pipeline's eval-mode batch.

`evaluate()` runs with a spy model that records every input it receives; for each task, the
first batch must equal what mplug.data's dataset (train=False) + the task's Collator (as the
trainer builds it, default options) produce for the same records: same token ids and masks,
same image tensor, same boxes/labels. A second evaluator code path (its own resize, pad, frame
sampling or tokenisation) would fail here.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

B = 3
RES = 32  # mplug_tiny's resolution
# eval task -> (dataset folder, split)
CASES = {
    "vqa": ("vqa", "val"), "caption": ("coco_caption", "test"), "nocaps": ("nocaps", "val"),
    "retrieval_coco": ("coco_retrieval", "test"), "retrieval_flickr": ("flickr_retrieval", "test"),
    "grounding": ("refcoco", "val"), "nlvr2": ("nlvr2", "dev"), "snli_ve": ("snli_ve", "dev"),
    "video_retrieval": ("msrvtt_retrieval", "test"), "video_qa_msrvtt": ("msrvtt_qa", "test"),
    "video_qa_msvd": ("msvd_qa", "test"), "video_caption": ("vatex_caption", "test"),
}
FRAMES = {"video_retrieval": 8, "video_caption": 8, "video_qa_msrvtt": 16, "video_qa_msvd": 16}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    torch.set_num_threads(1)
    from mplug.data import synth

    root = tmp_path_factory.mktemp("parity") / "world"
    synth.generate(root, seed=0, scale="tiny", progress=False)
    return root


@pytest.fixture(scope="module")
def tok(world):
    from mplug.data.tokenizer import load_tokenizer

    return load_tokenizer(world / "vocab.txt")


class SpyModel:
    """Stands in for a task model: records its inputs, returns well-formed dummy outputs."""

    def __init__(self):
        from mplug.models import get_config

        self.cfg = get_config("mplug_tiny")
        # what `load_model` records for the provenance: the resolution the evaluation runs at
        self.resolution = {"image_res": self.cfg.vision.image_res, "checkpoint_image_res": None,
                           "pos_embed_resized": False}
        self.calls: list[tuple[str, dict]] = []

    def _log(self, name, **kw):
        self.calls.append((name, {k: v.detach().cpu().clone() if torch.is_tensor(v) else v
                                  for k, v in kw.items()}))

    def generate(self, batch, **kw):
        self._log("generate", **batch)
        b = batch["image"].shape[0]
        if not kw:  # grounding decodes its fixed coordinate sequence: (B, 4) cxcywh
            return torch.full((b, 4), 0.5)
        return torch.tensor([[[101, 102]]] * b), torch.zeros(b, 1)  # (B, 1, T) ids

    def predict(self, batch):
        self._log("predict", **batch)
        return torch.zeros(batch["image"].shape[0], dtype=torch.long)

    def rank_answers(self, batch, answer_ids, answer_mask, k):
        self._log("rank_answers", **batch, answer_ids=answer_ids, answer_mask=answer_mask)
        b, k = batch["image"].shape[0], min(k, answer_ids.shape[0])
        return torch.arange(k).repeat(b, 1), torch.zeros(b, k)

    def itc_features(self, image=None, text_ids=None, text_mask=None):
        if image is not None:
            self._log("itc_image", image=image)
            n = image.shape[0]
            return {"image_embeds": torch.zeros(n, 1, 4), "image_mask": torch.ones(n, 1),
                    "image_feat": torch.nn.functional.normalize(image.flatten(1)[:, :4], dim=-1)}
        self._log("itc_text", text_ids=text_ids, text_mask=text_mask)
        n = text_ids.shape[0]
        return {"text_embeds": torch.zeros(n, text_ids.shape[1], 4),
                "text_feat": torch.nn.functional.normalize(text_ids[:, :4].float(), dim=-1)}

    def itc_sim(self, a, b):
        return a @ b.t()

    def itm_scores(self, v, te, tm, vm):
        return torch.zeros(v.shape[0])

    def itm_scores_cached(self, v, te, tm, vm=None, image_index=None, chunk=None):
        return torch.zeros(te.shape[0])


def _evaluate_with_spy(task, world, tmp_path, monkeypatch):
    from mplug.eval import run

    spy = SpyModel()
    monkeypatch.setattr(run, "load_model", lambda *a, **k: spy)
    settings = run.EvalSettings(model="mplug_tiny", device="cpu", batch_size=B, limit=2 * B,
                                caption_metrics=("CIDEr",), k_test=2)
    folder, split = CASES[task]
    run.evaluate(task, None, world / folder, split, tmp_path / "m.json", settings,
                 tokenizer=world / "vocab.txt")
    return spy, settings


def _training_batch(task, world, tok, train=False, **opts):
    """The trainer's path: build_dataset (eval mode unless `train`) + Collator with its default
    options (mplug/train/recipes.py builds `Collator(task, tokenizer)`)."""
    from mplug.data.collate import Collator
    from mplug.data.datasets import build_dataset

    folder, split = CASES[task]
    if task in FRAMES:
        opts["num_frames"] = FRAMES[task]
    ds = build_dataset(task, world / folder, split, tok, RES, train, **opts)
    return Collator(task, tok)([ds[i] for i in range(B)]), ds


@pytest.mark.parametrize("task", sorted(CASES))
def test_evaluator_batch_equals_training_loader_batch(task, world, tok, tmp_path, monkeypatch):
    spy, _ = _evaluate_with_spy(task, world, tmp_path, monkeypatch)
    want, ds = _training_batch(task, world, tok)
    name, got = next((n, c) for n, c in spy.calls if n != "itc_text")
    assert set(got) >= {"image"}
    assert got["image"].shape == want["image"].shape
    assert torch.equal(got["image"], want["image"]), f"{task}: image tensors differ"
    for key in ("text_ids", "text_mask"):
        if key in want:
            assert torch.equal(got[key], want[key]), f"{task}: {key} differ"
        else:
            assert key not in got
    if task.startswith("retrieval") or task == "video_retrieval":
        # the caption gallery: the training collator's encoding of the dataset's texts
        texts = [c for n, c in spy.calls if n == "itc_text"][0]
        from mplug.data.collate import Collator

        ids, mask = Collator(task, tok).encode_text(ds.texts[:B])
        assert torch.equal(texts["text_ids"], ids) and torch.equal(texts["text_mask"], mask)
    if task.startswith("video_qa"):
        from mplug.data.collate import Collator
        from mplug.data.formats import read_answer_list

        answers = read_answer_list(ds.root / "answer_list.json")
        ids, mask = Collator(task, tok).encode_answers(answers)
        assert torch.equal(got["answer_ids"], ids) and torch.equal(got["answer_mask"], mask)


@pytest.mark.parametrize("task", ["vqa", "grounding", "snli_ve", "nlvr2", "retrieval_coco"])
def test_eval_text_encoding_equals_training_mode(task, world, tok, tmp_path, monkeypatch):
    """Token ids of the same texts in training mode (random image crops aside)."""
    spy, _ = _evaluate_with_spy(task, world, tmp_path, monkeypatch)
    calls = [c for n, c in spy.calls if n == ("itc_text" if task.startswith("retrieval") else
                                              "predict" if task in ("snli_ve", "nlvr2") else "generate")]
    # NLVR2 training swaps left/right words at random: off here, the rest of the text path is on
    want, _ = _training_batch(task, world, tok, train=True,
                              **({"swap_prob": 0.0} if task == "nlvr2" else {}))
    assert torch.equal(calls[0]["text_ids"], want["text_ids"])
    assert torch.equal(calls[0]["text_mask"], want["text_mask"])


def test_independent_encoding_reference(world, tok, tmp_path, monkeypatch):
    """Pin the shared encoding itself: CLIP-normalised bicubic resize, `[CLS] q` with no [SEP] for
    questions (the official tokenizer copy), `[CLS] text [SEP]` for SNLI-VE hypotheses (no official
    code: ALBEF's convention) and grounding queries (would catch both paths drifting together)."""
    from PIL import Image

    from mplug.data.formats import read_records

    spy, _ = _evaluate_with_spy("vqa", world, tmp_path, monkeypatch)
    got = spy.calls[0][1]
    rec = read_records(world / "vqa" / "val.jsonl", "vqa")[0]
    img = Image.open(world / "vqa" / rec["image"]).convert("RGB").resize((RES, RES), Image.BICUBIC)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor((0.48145466, 0.4578275, 0.40821073)).view(3, 1, 1)
    std = torch.tensor((0.26862954, 0.26130258, 0.27577711)).view(3, 1, 1)
    assert torch.allclose(got["image"][0], (x - mean) / std, atol=1e-5)
    q = [tok.cls_token_id] + tok.convert_tokens_to_ids(tok.tokenize(rec["question"]))
    assert got["text_ids"][0, : len(q)].tolist() == q and int(got["text_mask"][0].sum()) == len(q)

    spy, _ = _evaluate_with_spy("snli_ve", world, tmp_path, monkeypatch)
    rec = read_records(world / "snli_ve" / "dev.jsonl", "snli_ve")[0]
    h = tok.convert_tokens_to_ids(tok.tokenize(rec["hypothesis"]))
    ids = spy.calls[0][1]["text_ids"][0]
    assert ids[: len(h) + 2].tolist() == [tok.cls_token_id, *h, tok.sep_token_id]

    spy, _ = _evaluate_with_spy("grounding", world, tmp_path, monkeypatch)
    rec = read_records(world / "refcoco" / "val.jsonl", "grounding")[0]
    e = tok.convert_tokens_to_ids(tok.tokenize(rec["expression"]))
    ids = spy.calls[0][1]["text_ids"][0]
    assert ids[: len(e) + 2].tolist() == [tok.cls_token_id, *e, tok.sep_token_id]


def test_grounding_pad_is_transvg_centre():
    """NormalizeAndPad(center=True): top = round(dh / 2 - 0.1) -> an odd pad puts the extra row
    at the bottom (Python's round(1.5) would put it on top)."""
    from PIL import Image

    from mplug.data.transforms import box_to_original, resize_pad

    img = Image.new("RGB", (64, 61), (255, 255, 255))  # res 64: pad 3 rows -> top 1, bottom 2
    t, box, info = resize_pad(img, [0, 0, 64, 61], 64)
    assert (info["left"], info["top"]) == (0, 1)
    assert (t[:, 0] == 0).all() and (t[:, 62:] == 0).all() and (t[:, 1:62] != 0).all()
    assert box_to_original(box.tolist(), info) == pytest.approx([0, 0, 64, 61], abs=1e-4)


def test_grounding_predictions_map_to_pixels(world, tmp_path, monkeypatch):
    """The spy predicts the padded square's centre box; pixel boxes invert the dataset's pad."""
    import json

    from mplug.data.formats import read_records

    _evaluate_with_spy("grounding", world, tmp_path, monkeypatch)
    preds = json.loads((tmp_path / "m.predictions.json").read_text())
    recs = {r["ref_id"]: r for r in read_records(world / "refcoco" / "val.jsonl", "grounding")}
    for p in preds:
        r = recs[p["ref_id"]]
        s = RES / max(r["width"], r["height"])
        left = round((RES - round(r["width"] * s)) / 2 - 0.1)
        top = round((RES - round(r["height"] * s)) / 2 - 0.1)
        cx, cy = (RES / 2 - left) / s, (RES / 2 - top) / s  # centre of the square, in pixels
        half = RES / 4 / s
        assert p["box"] == pytest.approx([cx - half, cy - half, cx + half, cy + half], abs=1e-3)
        assert p["box_normalized"] == pytest.approx([0.25, 0.25, 0.75, 0.75])


def test_questions_not_truncated_at_eval_but_in_training():
    """Official VQA evaluation tokenises questions untruncated; training caps them at 25."""
    from mplug.eval.run import EvalSettings, eval_collate_opts

    s = EvalSettings()
    assert eval_collate_opts("vqa", s, 64) == {"max_text_len": 64}
    assert eval_collate_opts("video_qa_msvd", s, 64) == {"max_text_len": 64}
    assert eval_collate_opts("grounding", s, 64) == {}  # expressions: training's 20
    assert eval_collate_opts("snli_ve", s.replace(max_text_len=40), 64) == {"max_text_len": 40}


def test_bad_image_is_an_error_at_eval_not_a_replacement(world, tmp_path, monkeypatch):
    import shutil

    from mplug.errors import DataError

    ds = tmp_path / "snli_ve"
    shutil.copytree(world / "snli_ve", ds)
    from mplug.data.formats import read_records

    rec = read_records(ds / "dev.jsonl", "snli_ve")[1]
    (ds / rec["image"]).write_bytes(b"not an image")
    from mplug.eval import run

    monkeypatch.setattr(run, "load_model", lambda *a, **k: SpyModel())
    with pytest.raises(DataError, match=rec["image"].split("/")[-1]):
        run.evaluate("snli_ve", None, ds, "dev", tmp_path / "m.json",
                     run.EvalSettings(model="mplug_tiny", device="cpu", batch_size=B, limit=B),
                     tokenizer=world / "vocab.txt")


def test_one_vocab_rule_for_train_and_eval(tok):
    """The synthetic vocabulary (1174 words) widens mplug_tiny's 1100 rows; bert-sized stays."""
    from mplug.data.tokenizer import model_vocab_size, vocab_overrides
    from mplug.models import build_model

    assert len(tok) > 1100
    assert vocab_overrides(tok, "mplug_tiny") == {"vocab_size": len(tok)}
    assert model_vocab_size(tok, 30522) == 30522
    model = build_model("mplug_tiny", "snli_ve", **vocab_overrides(tok, "mplug_tiny"))
    assert model.text_encoder.embeddings.word_embeddings.weight.shape[0] == len(tok)


def test_checkpoint_with_another_vocab_is_a_clear_error(world, tmp_path):
    """A checkpoint built without the tokenizer's widening (1100 rows) does not silently load."""
    from mplug.errors import CheckpointError
    from mplug.eval import run
    from mplug.models import build_model
    from mplug.models.loading import save_state_dict

    torch.manual_seed(0)
    path = tmp_path / "narrow.safetensors"
    save_state_dict(build_model("mplug_tiny", "snli_ve").state_dict(), path)
    with pytest.raises(CheckpointError, match="vocabulary differs"):
        run.evaluate("snli_ve", path, world / "snli_ve", "dev", tmp_path / "m.json",
                     run.EvalSettings(model="mplug_tiny", device="cpu", limit=2),
                     tokenizer=world / "vocab.txt")
