"""`mplug bench retrieval --full`: the whole COCO-5K-shaped retrieval evaluation, end to end.

Default shapes are the COCO 5K test split as the paper evaluates it: 5,000 images, 5 captions
each (25,000 texts), mplug_large at its evaluation resolution (336 px, 577 visual tokens), 30
text tokens, ITC similarity over all 125M pairs, then ITM rerank of the top k = 256 in both
directions (i2t: 5,000 x 256 pairs, each image's K/V shared by its candidates; t2i: 25,000 x 256
pairs). The code timed is the evaluator's (`itc_features`, `itc_sim`, `itm_scores_cached`,
`mplug.eval.retrieval_eval.two_stage_scores` and `recall_at_k`), on synthetic images (uniform
noise, made per batch and not timed) and random token ids, with random weights: the timing does
not depend on them, the recall does (near chance here).

Breakdown: image encode (ViT + visn_fc), text encode, ITC all pairs (+ copy to the host), ITM
rerank i2t and t2i (the model calls; `select_s` is the rest of two_stage_scores: top-k selection
and scatter), recall. `--dtype bf16` runs the model in bf16; with `compare` (default on for bf16)
the same evaluation also runs in fp32 and the row says what changes: max |ITM score diff| over
the candidate pairs both precisions share, the fraction of queries whose ITC top-k candidate set
and whose final top-1 are unchanged, and the recall differences (points). The bf16 scores pass
when every shared pair is within `tolerance` (1e-2) of fp32.
`--quick`: CI shapes (mplug_tiny, 24 images x 5 texts, k = 8), seconds on a CPU.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from mplug.bench.common import envelope, format_table, parse_dtype, setup, synchronize
from mplug.errors import ConfigError


@dataclass
class FullRetrievalOptions:
    model: str = "mplug_large"
    images: int = 5000
    texts_per_image: int = 5
    image_res: int | None = None  # None = the model's (mplug_large 336: its evaluation resolution)
    text_len: int = 30
    k: int = 256
    batch: int = 64  # images / texts per encoder call (the config's batch_size_eval)
    chunk: int = 128  # pairs per fusion call in the rerank
    dtype: str = "fp32"
    compare: bool | None = None  # bf16/fp16: also run fp32 and report what changes; None = on
    tolerance: float = 1e-2
    threads: int | None = None
    device: str = "auto"

    @classmethod
    def quick(cls, **kw: Any) -> "FullRetrievalOptions":
        base = dict(model="mplug_tiny", images=24, k=8, batch=16, chunk=32, text_len=12)
        base.update({k: v for k, v in kw.items() if v is not None})
        return cls(**base)

    def validate(self) -> "FullRetrievalOptions":
        for key in ("images", "texts_per_image", "text_len", "k", "batch", "chunk"):
            if getattr(self, key) < 1:
                raise ConfigError(f"bench retrieval --full --{key.replace('_', '-')}: must be >= 1")
        parse_dtype(self.dtype)
        return self


def _model(opts: FullRetrievalOptions, device, dtype):
    from mplug.models import build_model

    over: dict[str, Any] = {"distill": False, "queue_size": 8}
    if opts.image_res is not None:
        over["vision.image_res"] = opts.image_res
    import torch

    torch.manual_seed(0)
    return build_model(opts.model, "retrieval", **over).to(device, dtype).eval()


def _texts(cfg, n: int, length: int):
    """(n, L) random token ids, [CLS] ... [SEP] then padding; lengths L/2..L as real captions."""
    import torch

    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1000, cfg.text.vocab_size, (n, length), generator=g)
    lengths = torch.randint(max(3, length // 2), length + 1, (n,), generator=g)
    mask = (torch.arange(length)[None] < lengths[:, None]).long()
    ids[:, 0] = cfg.bos_token_id
    ids[torch.arange(n), lengths - 1] = cfg.eos_token_id
    return ids * mask, mask


class _Clock:
    """Synchronised wall-clock sections: `with clock("name"):` adds to times[name]."""

    def __init__(self, device):
        self.device, self.times = device, {}

    def __call__(self, name: str):
        clock = self

        class _Section:
            def __enter__(self):
                synchronize(clock.device)
                self.t = time.perf_counter()

            def __exit__(self, *exc):
                synchronize(clock.device)
                clock.times[name] = clock.times.get(name, 0.0) + time.perf_counter() - self.t
        return _Section()


def _encode(model, opts, device, dtype, clock):
    """Every image and text through its encoder: (embeds, masks, feats) each, on the device."""
    import torch

    r = model.cfg.vision.image_res
    g = torch.Generator().manual_seed(0)
    v, vm, vf = [], [], []
    for a in range(0, opts.images, opts.batch):
        img = torch.rand(min(opts.batch, opts.images - a), 3, r, r, generator=g)  # synthetic, not timed
        img = ((img - 0.45) / 0.27).to(device, dtype)
        with clock("image_encode_s"):
            f = model.itc_features(image=img)
        v.append(f["image_embeds"]), vm.append(f["image_mask"]), vf.append(f["image_feat"])
    ids, mask = _texts(model.cfg, opts.images * opts.texts_per_image, opts.text_len)
    t, tf = [], []
    for a in range(0, ids.size(0), opts.batch):
        with clock("text_encode_s"):
            f = model.itc_features(text_ids=ids[a:a + opts.batch].to(device),
                                   text_mask=mask[a:a + opts.batch].to(device))
        t.append(f["text_embeds"]), tf.append(f["text_feat"])
    return (torch.cat(v), torch.cat(vm), torch.cat(vf)), (torch.cat(t), mask.to(device), torch.cat(tf))


def _evaluate(opts: FullRetrievalOptions, device, dtype) -> dict[str, Any]:
    """One end-to-end evaluation; returns times, scores and recalls."""
    import numpy as np
    import torch

    from mplug.eval.retrieval_eval import recall_at_k, two_stage_scores

    model = _model(opts, device, dtype)
    clock = _Clock(device)
    start = time.perf_counter()
    (v, vm, vf), (t, tm, tf) = _encode(model, opts, device, dtype, clock)
    with clock("itc_all_pairs_s"):
        sims = model.itc_sim(vf, tf).float().cpu().numpy()  # (I, T)
    n_img = opts.images
    calls = {"n": 0}

    def itm(img_idx: np.ndarray, txt_idx: np.ndarray) -> np.ndarray:
        # two_stage_scores calls i2t once per image, then t2i once per text (the evaluator's callback)
        key = "itm_i2t_s" if calls["n"] < n_img else "itm_t2i_s"
        calls["n"] += 1
        with clock(key):
            uniq, inv = np.unique(img_idx, return_inverse=True)
            u, j = torch.as_tensor(uniq, device=device), torch.as_tensor(txt_idx, device=device)
            s = model.itm_scores_cached(v[u], t[j], tm[j], vm[u], image_index=inv, chunk=opts.chunk)
            return s.float().cpu().numpy()

    t0 = time.perf_counter()
    i2t, t2i = two_stage_scores(sims, opts.k, itm)
    rerank = time.perf_counter() - t0
    txt2img = np.repeat(np.arange(n_img), opts.texts_per_image)
    img2txt = [list(range(i * opts.texts_per_image, (i + 1) * opts.texts_per_image)) for i in range(n_img)]
    with clock("recall_s"):
        recalls = recall_at_k(i2t, t2i, txt2img, img2txt)
    times = dict(clock.times)
    times["select_s"] = rerank - times.get("itm_i2t_s", 0.0) - times.get("itm_t2i_s", 0.0)
    times["total_s"] = time.perf_counter() - start
    return {"times": times, "sims": sims, "i2t": i2t, "t2i": t2i, "recalls": recalls,
            "pairs": {"itc": int(sims.size), "itm_i2t": n_img * min(opts.k, sims.shape[1]),
                      "itm_t2i": sims.shape[1] * min(opts.k, n_img)}}


def _changes(low: dict, ref: dict, k: int, tolerance: float) -> dict[str, Any]:
    """What the low precision changes against fp32: scores on shared candidates, candidate sets,
    top-1, recalls."""
    import numpy as np

    from mplug.eval.retrieval_eval import NON_CANDIDATE

    out: dict[str, Any] = {}
    for name in ("i2t", "t2i"):
        a, b = low[name], ref[name]
        shared = (a != NON_CANDIDATE) & (b != NON_CANDIDATE)
        out[f"{name}_max_abs_diff"] = float(np.abs(a - b)[shared].max()) if shared.any() else 0.0
        sims = low["sims"] if name == "i2t" else low["sims"].T
        sims_ref = ref["sims"] if name == "i2t" else ref["sims"].T
        kk = min(k, sims.shape[1])
        same = [set(np.argsort(-x, kind="stable")[:kk]) == set(np.argsort(-y, kind="stable")[:kk])
                for x, y in zip(sims, sims_ref)]
        out[f"{name}_same_candidates"] = float(np.mean(same))
        out[f"{name}_same_top1"] = float(np.mean(a.argmax(1) == b.argmax(1)))
    out["recall_diff_points"] = {m: low["recalls"][m] - ref["recalls"][m] for m in ref["recalls"]}
    out["within_tolerance"] = bool(max(out["i2t_max_abs_diff"], out["t2i_max_abs_diff"]) <= tolerance)
    out["tolerance"] = tolerance
    return out


def _row(opts: FullRetrievalOptions, dtype_name: str, res: dict) -> dict[str, Any]:
    t, p = res["times"], res["pairs"]
    itm_s = t.get("itm_i2t_s", 0.0) + t.get("itm_t2i_s", 0.0)
    return {"model": opts.model, "dtype": dtype_name, "images": opts.images,
            "texts": opts.images * opts.texts_per_image, "k": opts.k, **t,
            **{f"{k}_pairs": v for k, v in p.items()},
            "itm_ms_per_pair": 1000 * itm_s / max(1, p["itm_i2t"] + p["itm_t2i"]), "recalls": res["recalls"]}


def run_full_retrieval(opts: FullRetrievalOptions, progress: bool = True) -> dict[str, Any]:  # noqa: ARG001
    """The end-to-end evaluation at `opts.dtype` (and fp32 for the comparison); the JSON object."""
    opts.validate()
    device = setup(opts.threads, opts.device)
    res = _evaluate(opts, device, parse_dtype(opts.dtype))
    rows = [_row(opts, opts.dtype, res)]
    compare = opts.compare if opts.compare is not None else opts.dtype != "fp32"
    if compare and opts.dtype != "fp32":
        ref = _evaluate(opts, device, parse_dtype("fp32"))
        rows.append(_row(opts, "fp32", ref))
        rows[0]["vs_fp32"] = _changes(res, ref, opts.k, opts.tolerance)
        rows[0]["speedup_vs_fp32"] = ref["times"]["total_s"] / res["times"]["total_s"]
    settings = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(opts).items()}
    settings["image_res"] = opts.image_res or _resolution(opts.model)
    return envelope("retrieval_full", rows, settings, device=device,
                    timed="the whole retrieval evaluation: image + text encoding, ITC over all pairs, "
                          "ITM rerank of the top k in both directions, recall; synthetic images, random weights")


def _resolution(model: str) -> int:
    from mplug.models import get_config

    return get_config(model).vision.image_res


COLUMNS = [("dtype", "dtype", ""), ("image_encode_s", "image enc (s)", ".2f"),
           ("text_encode_s", "text enc (s)", ".2f"), ("itc_all_pairs_s", "ITC all (s)", ".3f"),
           ("itm_i2t_s", "ITM i2t (s)", ".2f"), ("itm_t2i_s", "ITM t2i (s)", ".2f"),
           ("select_s", "top-k sel (s)", ".2f"), ("recall_s", "recall (s)", ".2f"),
           ("total_s", "total (s)", ".2f"), ("itm_ms_per_pair", "ITM ms/pair", ".4f")]


def summary(result: dict[str, Any]) -> str:
    s = result["settings"]
    lines = [f"retrieval evaluation end to end: {s['model']} at {s['image_res']} px, {s['images']} images x "
             f"{s['texts_per_image']} texts, ITC all pairs, ITM rerank k={s['k']} both directions, on "
             f"{result['hardware_name']}", format_table(result["rows"], COLUMNS)]
    cmp = result["rows"][0].get("vs_fp32")
    if cmp:
        lines.append(f"{s['dtype']} vs fp32: max |ITM diff| i2t {cmp['i2t_max_abs_diff']:.2e} / t2i "
                     f"{cmp['t2i_max_abs_diff']:.2e} (within {cmp['tolerance']}: {cmp['within_tolerance']}); "
                     f"same ITC candidates i2t {cmp['i2t_same_candidates']:.1%} / t2i "
                     f"{cmp['t2i_same_candidates']:.1%}; "
                     f"same top-1 i2t {cmp['i2t_same_top1']:.1%} / t2i {cmp['t2i_same_top1']:.1%}; "
                     f"r_mean {cmp['recall_diff_points']['r_mean']:+.2f} points")
    return "\n".join(lines)
