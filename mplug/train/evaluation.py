"""In-training evaluation for keep-best model selection (`train.eval_every`).

The official SCST script (caption_mplug_scst.py, `--eval_steps 1500`) decodes the evaluation
split every N steps and saves the model with the best CIDEr. `CaptionEvaluator` does this on the
caption folder's `val` split (the official script selects on the Karpathy TEST split, which
leaks the test set into model selection; see docs/model-differences.md). `loop.fit` calls it
every `eval_every` optimizer steps and after the last step, and keeps the best weights.

CIDEr here is corpus CIDEr-D over the split (document frequencies from the split's references,
as pycocoevalcap's Cider) with the pure-python PTB approximation, x100; `mplug evaluate` gives
the reported numbers with the Java PTB tokenizer.

Ranks: each rank decodes every world-th batch and the captions are gathered; under ZeRO-3 every
rank decodes the whole split instead, because beam search stops at a data-dependent step and
ZeRO-3 gathers parameters collectively in every forward (ranks must run the same steps).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from mplug.data.tokenizer import decode_generated
from mplug.utils.logging import get_logger

log = get_logger("mplug.train.evaluation")


class CaptionEvaluator:
    """Callable `(engine) -> {"CIDEr": x100, "images": n}`; `metric` names the value to maximise."""

    metric = "CIDEr"

    def __init__(self, data_dir: str | Path, folder: str | None, tokenizer: Any, image_res: int,
                 beam_size: int = 5, min_length: int = 8, max_length: int = 25,
                 batch_size: int = 64, split: str = "val", limit: int | None = None):
        from mplug.data.datasets import build_loader
        from mplug.eval.cider_reward import CiderReward

        opts: dict[str, Any] = {"dataset": folder} if folder else {}
        if limit:
            opts["limit"] = limit
        self.loader, ds = build_loader("caption", data_dir, split, tokenizer, image_res, train=False,
                                       batch_size=batch_size, **opts)
        refs = {r["image_id"]: list(r["captions"]) for r in ds.records if r.get("captions")}
        if not refs:
            from mplug.errors import DataError

            raise DataError(f"{data_dir}/{folder or 'coco_caption'}: split {split!r} has no reference "
                            "captions; train.eval_every needs a split with references")
        self.cider = CiderReward(refs)  # df over the split's references = corpus CIDEr-D
        self.tokenizer = tokenizer
        self.gen = {"beam_size": beam_size, "min_length": min_length, "max_length": max_length}
        self.split = split

    def __call__(self, engine) -> dict[str, float]:
        import torch
        from tqdm import tqdm

        from mplug.train.engine import module_dtype, to_device

        model = engine.module
        world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
        rank = torch.distributed.get_rank() if world > 1 else 0
        everyone = engine.zero_optimization_stage() == 3
        device, dtype = engine.device, module_dtype(engine)
        was_training = model.training
        model.eval()
        preds: dict[Any, str] = {}
        try:
            with torch.no_grad():
                for i, batch in enumerate(tqdm(self.loader, desc=f"eval {self.split}", unit="batch",
                                               leave=False, disable=rank != 0)):
                    if not everyone and i % world != rank:
                        continue
                    batch = to_device(batch, device, dtype)
                    ids, _ = model.generate({"image": batch["image"]}, num_return=1, **self.gen)
                    texts = decode_generated(self.tokenizer, ids[:, 0].tolist())  # as mplug evaluate
                    preds.update({m["image_id"]: t for m, t in zip(batch["meta"], texts)})
        finally:
            model.train(was_training)
        if world > 1 and not everyone:
            parts: list = [None] * world
            torch.distributed.all_gather_object(parts, preds)
            preds = {k: v for p in parts for k, v in p.items()}
        self.last_predictions = preds
        return self.score(preds)

    def score(self, preds: dict[Any, str]) -> dict[str, float]:
        """image_id -> caption -> {"CIDEr": corpus CIDEr-D x100, "images": n}."""
        keys = sorted(preds, key=str)
        scores = self.cider([preds[k] for k in keys], keys)
        return {"CIDEr": float(scores.mean()) * 100.0 if len(keys) else 0.0, "images": len(keys)}


BEST_MODEL_FILE = "model_best.safetensors"
LAST_MODEL_FILE = "model_last.safetensors"
EVAL_LOG_FILE = "eval_log.jsonl"


class BestKeeper:
    """Evaluate every `every` optimizer steps (and after the last one) and keep the best weights.

    Its state lives in the trainer state under `"eval"` ({"best": {step, metric, value} | None,
    "history": [{step, <metric>...}]}), so it is checkpointed and a resumed run keeps the best
    score it had; the best weights are `OUT/model_best.safetensors` (atomic). At the end of the
    run `loop.fit` exports the best weights as `model.safetensors` (the run's output model) and
    the final ones as `model_last.safetensors`.
    """

    def __init__(self, evaluator, every: int, out: Path, is_main: bool):
        self.evaluator, self.every, self.out, self.is_main = evaluator, int(every), Path(out), is_main

    @staticmethod
    def state(trainer_state: dict) -> dict:
        return trainer_state.setdefault("eval", {"best": None, "history": []})

    def due(self, step: int, done: bool, trainer_state: dict) -> bool:
        hist = self.state(trainer_state)["history"]
        if hist and hist[-1]["step"] == step:
            return False  # already evaluated at this step
        return done or (self.every > 0 and step % self.every == 0)

    def run(self, engine, trainer_state: dict, writer=None) -> dict:
        import json
        import time

        from mplug.models.loading import save_state_dict
        from mplug.train.engine import export_state_dict

        t0 = time.perf_counter()
        res = self.evaluator(engine)
        metric = self.evaluator.metric
        step = trainer_state["step"]
        st = self.state(trainer_state)
        rec = {"step": step, **res, "seconds": round(time.perf_counter() - t0, 2)}
        improved = st["best"] is None or res[metric] > st["best"]["value"]
        rec["best"] = improved
        st["history"].append(rec)
        if improved:
            st["best"] = {"step": step, "metric": metric, "value": res[metric]}
            weights = export_state_dict(engine)  # every rank takes part (ZeRO-3 gathers)
            if self.is_main:
                save_state_dict(weights, self.out / BEST_MODEL_FILE,
                                metadata={"steps": str(step), metric: str(res[metric])})
        if self.is_main:
            with open(self.out / EVAL_LOG_FILE, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(rec) + "\n")
            if writer is not None:
                writer.add_scalar(f"eval/{metric}", res[metric], step)
            log.info("eval at step %d: %s=%.3f (best %.3f at step %d) in %.1f s", step, metric,
                     res[metric], st["best"]["value"], st["best"]["step"], rec["seconds"])
        return rec
