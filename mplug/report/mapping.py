"""Which result file (and JSON key) reproduces which published cell. One data structure: `CELLS`.

Every mPLUG cell of Tables 1-5 and 7-10 maps to a metrics JSON under the run's results folder
(`results/<run>/eval/<eval>/<split>/metrics.json`, contract in docs/architecture.md) and a list of
candidate keys in its `metrics` object (the first present wins; values in percent). Table 6 reads
`bench/train.json`, Table 11 the fine-tuning summaries, Table 12 the data folders' `stats.json`.

Eval folder names (`<eval>`) are the CLI task names, plus these checkpoint variants:
- `caption_ce`: the caption model after the cross-entropy stage (Table 1, cross-entropy columns);
  `caption` is the final model after CIDEr optimisation (SCST).
- `nocaps`: the COCO-fine-tuned caption model on NoCaps val (Table 1, Table 7 mPLUG†);
  `nocaps_zeroshot`: the pre-trained model with the prompt (Table 7 mPLUG).
- `retrieval_flickr_zeroshot` (pre-trained) / `retrieval_flickr_zeroshot_coco` (COCO-retrieval
  fine-tuned), both on Flickr30K test without Flickr fine-tuning (Table 8 mPLUG / mPLUG†).
- `video_retrieval` (pre-trained) / `video_retrieval_coco` (COCO-retrieval fine-tuned) (Table 9).
- `grounding/<dataset>_<split>`: e.g. `grounding/refcoco+_testA`, `grounding/refcocog_test_u`.

A rule that fails should leave its log at `LOG_DIR/<run>/<output path without .json>.log`
(e.g. `logs/smoke/eval/caption/test/metrics.log`); the report then names that log as the reason.

The workflow derives each `tableNN` target's inputs with `inputs_for_table(n, run_dir)`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Metric-key candidates (first present wins). Primary names follow pycocoevalcap / ALBEF.
K_B4 = ("Bleu_4", "BLEU@4", "bleu4")
K_METEOR = ("METEOR", "meteor")
K_CIDER = ("CIDEr", "cider")
K_SPICE = ("SPICE", "spice")
K_ACC = ("accuracy", "acc")
K_VQA = ("overall", "accuracy")
K_GROUND = ("acc@0.5", "accuracy", "acc")


def _r(prefix: str, k: int) -> tuple[str, ...]:
    alt = {"txt": "tr", "img": "ir", "t2v": "vid"}[prefix]
    return (f"{prefix}_r{k}", f"{alt}_r{k}")


@dataclass(frozen=True)
class CellMap:
    """One published mPLUG cell and where its reproduction lives."""

    table: int
    model: str
    pretrain_data: str
    setting: str
    metric: str
    path: str                      # relative to results/<run>/
    keys: tuple[str, ...]          # candidate keys in the file's "metrics" object
    variant: str | None = None     # 'base' / 'large': the row needs a run of that model size
    pretrain: str | None = None    # '4M': the row needs a run pretrained on that set only
    server: bool = False           # the split is scored only by an evaluation server

    @property
    def row(self) -> tuple[str, str]:
        return (self.model, self.pretrain_data)


def _t1() -> list[CellMap]:
    out = []
    for setting, ev in (("COCO Karpathy test, cross-entropy", "caption_ce"),
                        ("COCO Karpathy test, CIDEr optimization", "caption")):
        for metric, keys in (("B@4", K_B4), ("M", K_METEOR), ("C", K_CIDER), ("S", K_SPICE)):
            out.append(CellMap(1, "mPLUG", "14M", setting, metric, f"eval/{ev}/test/metrics.json", keys))
    for metric, keys in (("C", K_CIDER), ("S", K_SPICE)):
        out.append(CellMap(1, "mPLUG", "14M", "NoCaps val", metric, "eval/nocaps/val/metrics.json", keys))
    return out


def _t2() -> list[CellMap]:
    out = []
    for model, data, variant, pre in (("mPLUGViT-B", "4M", "base", "4M"),
                                      ("mPLUGViT-B", "14M", "base", None),
                                      ("mPLUGViT-L", "14M", "large", None)):
        for setting, split in (("VQA v2 test-dev", "test_dev"), ("VQA v2 test-std", "test_std")):
            out.append(CellMap(2, model, data, setting, "Acc", f"eval/vqa/{split}/metrics.json",
                               K_VQA, variant=variant, pretrain=pre, server=True))
    return out


def _t3() -> list[CellMap]:
    out = []
    for setting, ev in (("MSCOCO 5K test", "retrieval_coco"), ("Flickr30K 1K test", "retrieval_flickr")):
        for d, prefix in (("TR", "txt"), ("IR", "img")):
            for k in (1, 5, 10):
                out.append(CellMap(3, "mPLUG", "14M", setting, f"{d} R@{k}",
                                   f"eval/{ev}/test/metrics.json", _r(prefix, k)))
    return out


GROUNDING_SPLITS = {  # published setting -> eval split folder
    "RefCOCO val": "refcoco_val", "RefCOCO testA": "refcoco_testA", "RefCOCO testB": "refcoco_testB",
    "RefCOCO+ val": "refcoco+_val", "RefCOCO+ testA": "refcoco+_testA",
    "RefCOCO+ testB": "refcoco+_testB", "RefCOCOg val-u": "refcocog_val_u",
    "RefCOCOg test-u": "refcocog_test_u",
}


def _t4() -> list[CellMap]:
    return [CellMap(4, "mPLUG", "", s, "Acc@0.5", f"eval/grounding/{d}/metrics.json", K_GROUND)
            for s, d in GROUNDING_SPLITS.items()]


def _t5() -> list[CellMap]:
    return [CellMap(5, "mPLUG", "", s, "Acc", f"eval/{ev}/{sp}/metrics.json", K_ACC)
            for s, ev, sp in (("NLVR2 dev", "nlvr2", "dev"), ("NLVR2 test-P", "nlvr2", "test_p"),
                              ("SNLI-VE dev", "snli_ve", "dev"), ("SNLI-VE test", "snli_ve", "test"))]


def _t7() -> list[CellMap]:
    out = []
    for model, ev in (("mPLUG", "nocaps_zeroshot"), ("mPLUG†", "nocaps")):
        for metric, keys in (("CIDEr In", ("CIDEr_in", "in_CIDEr")),
                             ("CIDEr Near", ("CIDEr_near", "near_CIDEr")),
                             ("CIDEr Out", ("CIDEr_out", "out_CIDEr")),
                             ("CIDEr Overall", K_CIDER)):
            out.append(CellMap(7, model, "", "NoCaps val", metric, f"eval/{ev}/val/metrics.json", keys))
    return out


def _t8() -> list[CellMap]:
    out = []
    for model, ev in (("mPLUG", "retrieval_flickr_zeroshot"), ("mPLUG†", "retrieval_flickr_zeroshot_coco")):
        for metric, keys in (("TR R@1", _r("txt", 1)), ("TR R@5", _r("txt", 5)),
                             ("IR R@1", _r("img", 1)), ("IR R@5", _r("img", 5))):
            out.append(CellMap(8, model, "", "Flickr30K (zero-shot)", metric,
                               f"eval/{ev}/test/metrics.json", keys))
    return out


def _t9() -> list[CellMap]:
    return [CellMap(9, model, "14M", "MSRVTT 1k test", f"R@{k}", f"eval/{ev}/test/metrics.json", _r("t2v", k))
            for model, ev in (("mPLUG", "video_retrieval"), ("mPLUG †", "video_retrieval_coco"))
            for k in (1, 5, 10)]


def _t10() -> list[CellMap]:
    return [CellMap(10, "mPLUG", "", s, m, f"eval/{ev}/test/metrics.json", keys)
            for s, m, ev, keys in (("MSRVTT-QA", "Acc", "video_qa_msrvtt", K_ACC),
                                   ("MSVD-QA", "Acc", "video_qa_msvd", K_ACC),
                                   ("VATEX-Cap", "CIDEr", "video_caption", K_CIDER))]


CELLS: tuple[CellMap, ...] = tuple(_t1() + _t2() + _t3() + _t4() + _t5() + _t7() + _t8() + _t9() + _t10())

# ---- Table 6: training throughput, from `bench/train.json` rows matched by their "setting".
TABLE6_BENCH = "bench/train.json"
TABLE6_SETTINGS = {  # published row -> accepted `setting` names (compared lower-case, alnum only)
    "baseline": ("baseline", "fp32"),
    "+ BFloat16": ("bf16", "bfloat16", "+bf16", "+bfloat16"),
    "+ Gradient Checkpoint": ("gradientcheckpoint", "gradientcheckpointing", "gradckpt", "bf16gradckpt",
                              "+gradient_checkpoint", "+grad_ckpt", "checkpoint"),
    "+ ZeRO": ("zero", "+zero", "bf16gradckptzero", "zero2"),
}
FIGURE_BENCH = "bench/fusion.json"   # Figures 1, 3, 4
OTHER_BENCH = ("bench/generate.json", "bench/retrieval.json")

# ---- Table 11: hyper-parameters actually used, from each fine-tuning's summary.json.
TABLE11_FINETUNE = {  # published task -> finetune folders under results/<run>/finetune/
    "VQA": ("vqa",),
    "Captioning†": ("caption_ce", "caption_scst"),
    "Retrieval": ("retrieval_coco", "retrieval_flickr"),
    "Visual Grounding": ("grounding",),
    "NLVR2": ("nlvr2",),
    "SNLI-VE": ("snli_ve",),
}
# Keys looked up in summary.json (top level, then under "hparams" / "config"), first found wins.
HPARAM_KEYS = {
    "lr": ("lr", "lr_text", "lr1", "learning_rate"),
    "lr_visual": ("lr_visual", "lr_vision", "lr2"),
    "batch_size": ("global_batch_size", "batch_size_total", "batch_size"),
    "epochs": ("epochs", "max_epochs", "num_epochs"),
}

# ---- Table 12: pre-training data obtained, from data/<run>/<folder>/stats.json.
TABLE12_STATS = ("pretrain_14m", "pretrain_4m")   # folders whose "by_source" breaks counts down
TABLE12_SOURCES = {"COCO": "coco", "VG": "vg", "SBU": "sbu", "CC3M": "cc3m", "CC12M": "cc12m"}


def cells_for_table(table: int) -> list[CellMap]:
    return [c for c in CELLS if c.table == table]


LOG_DIR = "logs"


def log_path_for(rel: str | Path, run_dir: str | Path) -> Path:
    """Where the rule writing `rel` (a path relative to results/<run>/) keeps its log.

    The workflow logs to `logs/<run>/<rule>/<model>/<job>[/<split>].log` (`_log` in
    workflow/rules/common.smk): an evaluation's rule is `evaluate` or `zeroshot` and its model key
    is not in `rel`, so existing logs of that shape are looked for first; otherwise the path
    mirrors `rel` under logs/<run>/."""
    import glob

    run_dir = Path(run_dir)
    logs = run_dir.parent.parent / LOG_DIR / run_dir.name
    parts = Path(rel).parts
    if len(parts) > 1 and parts[0] not in ("eval", "finetune", "pretrain", "bench"):
        parts = parts[1:]  # results nested under a model-key folder
    pattern = None
    if parts[0] == "eval" and len(parts) >= 3:
        pattern = f"*/*/{glob.escape(parts[1])}/{glob.escape(parts[2])}.log"
    elif parts[0] in ("finetune", "pretrain") and len(parts) >= 2:
        pattern = f"{parts[0]}/*/{glob.escape(parts[1])}.log"
    elif parts[0] == "bench" and len(parts) == 2:
        pattern = f"bench/{glob.escape(Path(parts[1]).stem)}.log"
    found = sorted(logs.glob(pattern)) if pattern and logs.is_dir() else []
    return found[0] if found else logs / Path(rel).with_suffix(".log")


def data_dir_for(run_dir: str | Path) -> Path:
    """`results/<run>` -> `data/<run>` (siblings under the same project root)."""
    run_dir = Path(run_dir)
    return run_dir.parent.parent / "data" / run_dir.name


def inputs_for_table(table: int, run_dir: str | Path, data_dir: str | Path | None = None,
                     include_server: bool = False) -> list[Path]:
    """The result files table `table` reads, for a Snakemake `tableNN` target's input.

    `run_dir` is `results/<run>`; Table 12 reads `data_dir` (default `data/<run>`). Server-scored
    cells (VQA test-dev/test-std) are left out unless `include_server`, because no rule can make
    them: the report shows them as "needs server submission" until a user drops the file in.
    Only the row matching the run's model variant needs building; this lists every distinct file.
    """
    run_dir = Path(run_dir)
    if table == 6:
        return [run_dir / TABLE6_BENCH]
    if table == 11:
        return [run_dir / "finetune" / d / "summary.json" for ds in TABLE11_FINETUNE.values() for d in ds]
    if table == 12:
        ddir = Path(data_dir) if data_dir else data_dir_for(run_dir)
        return [ddir / f / "stats.json" for f in TABLE12_STATS]
    paths: list[Path] = []
    for c in cells_for_table(table):
        if c.server and not include_server:
            continue
        p = run_dir / c.path
        if p not in paths:
            paths.append(p)
    return paths


def figure_inputs(run_dir: str | Path) -> list[Path]:
    """Files the `figures` target needs (Figures 1, 3, 4)."""
    return [Path(run_dir) / FIGURE_BENCH]
