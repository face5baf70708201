"""Keep-best evaluation (`train.eval_every`, official SCST `--eval_steps`): the run's output model
is the best evaluated one, the best score survives a resume, and the caption evaluator's CIDEr is
pycocoevalcap's corpus CIDEr-D."""
from __future__ import annotations

import json

import pytest
import torch

from mplug.train.deepspeed_config import EngineConfig
from mplug.train.engine import export_state_dict
from mplug.train.loop import LoopConfig, fit
from mplug.train.optim import OptimConfig

from toy import ToyData, ToyModel, collate

SCORES = {2: 1.0, 4: 3.0, 6: 2.0}  # the best is step 4, not the last step


class Scripted:
    """An evaluator whose score is a function of the step; it snapshots the weights it saw."""

    metric = "score"

    def __init__(self, crash_at: int | None = None):
        self.seen: dict[int, dict] = {}
        self.crash_at = crash_at
        self.step = 0

    def __call__(self, engine):
        self.step = engine.global_steps
        if self.step == self.crash_at:
            raise KeyboardInterrupt("simulated crash after the step-4 checkpoint")
        self.seen[self.step] = export_state_dict(engine)
        return {"score": SCORES[self.step]}


def _fit(out, evaluator, resume=None):
    torch.manual_seed(0)
    return fit(ToyModel(), ToyData(), collate,
               LoopConfig(epochs=10, batch_size=8, max_steps=6, seed=3, save_every=4, eval_every=2,
                          progress=False, tensorboard=False),
               OptimConfig(lr=3e-3, lr_vit=1e-3, warmup_steps=1), EngineConfig(zero_stage=2),
               out, resume=resume, evaluator=evaluator)


@pytest.fixture(autouse=True)
def _env(dist_env_restored):
    yield


def test_output_model_is_the_best_evaluated_and_resume_keeps_the_best(tmp_path):
    from mplug.models.loading import load_state_dict_safe

    full = Scripted()
    summary = _fit(tmp_path / "full", full)
    assert sorted(full.seen) == [2, 4, 6]
    assert summary["best"] == {"step": 4, "metric": "score", "value": 3.0}
    out = load_state_dict_safe(tmp_path / "full" / "model.safetensors")
    last = load_state_dict_safe(tmp_path / "full" / "model_last.safetensors")
    assert all(torch.equal(out[k], full.seen[4][k]) for k in out)
    assert all(torch.equal(last[k], full.seen[6][k]) for k in last)
    assert not torch.equal(out["head.weight"], last["head.weight"])
    log = [json.loads(x) for x in (tmp_path / "full" / "eval_log.jsonl").read_text().splitlines()]
    assert [(r["step"], r["best"]) for r in log] == [(2, True), (4, True), (6, False)]

    # crash at the step-6 evaluation (after the step-4 checkpoint), then resume: the restored
    # best (3.0 at step 4) must beat step 6's 2.0, so the output is step 4's model again
    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path / "resumed", Scripted(crash_at=6))
    again = Scripted()
    summary = _fit(tmp_path / "resumed", again, resume="latest")
    assert sorted(again.seen) == [6]  # steps 2 and 4 were not evaluated again
    assert summary["best"] == {"step": 4, "metric": "score", "value": 3.0}
    assert [h["step"] for h in summary["eval_history"]] == [2, 4, 6]
    resumed = load_state_dict_safe(tmp_path / "resumed" / "model.safetensors")
    assert all(torch.equal(resumed[k], out[k]) for k in out)
    lines = (tmp_path / "resumed" / "eval_log.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [2, 4, 6]


def test_caption_evaluator_cider_is_corpus_cider(world):
    from types import SimpleNamespace

    from pycocoevalcap.cider.cider import Cider

    from mplug.data.tokenizer import find_vocab, load_tokenizer, vocab_overrides
    from mplug.eval.caption_eval import simple_tokenize
    from mplug.models import build_model
    from mplug.train.evaluation import CaptionEvaluator

    tok = load_tokenizer(find_vocab(world))
    torch.manual_seed(0)
    model = build_model("mplug_tiny", "caption", image_res=32, **vocab_overrides(tok, "mplug_tiny"))
    ev = CaptionEvaluator(world, "coco_caption", tok, 32, beam_size=2, min_length=2, max_length=5,
                          batch_size=16, limit=12)
    engine = SimpleNamespace(module=model, device=torch.device("cpu"), bfloat16_enabled=lambda: False,
                             fp16_enabled=lambda: False, zero_optimization_stage=lambda: 2)
    model.train()
    res = ev(engine)
    assert model.training  # mode restored
    assert res["images"] == 12
    refs = {r["image_id"]: r["captions"] for r in ev.loader.dataset.records}
    assert set(ev.last_predictions) == set(refs)
    # the scoring against pycocoevalcap, on the model's captions and on good captions (the
    # random model's CIDEr is about 0, which alone would not test much)
    good = {k: refs[k][(i % 2) + 1] for i, k in enumerate(sorted(refs))}
    for preds in (ev.last_predictions, good):
        gts = {k: [simple_tokenize(c) for c in refs[k]] for k in preds}
        hyp = {k: [simple_tokenize(preds[k])] for k in preds}
        want, _ = Cider().compute_score(gts, hyp)
        assert ev.score(preds)["CIDEr"] == pytest.approx(want * 100, rel=1e-6, abs=1e-9)
    assert res["CIDEr"] == ev.score(ev.last_predictions)["CIDEr"]
    assert ev.score(good)["CIDEr"] > 50
