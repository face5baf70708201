"""Which result file feeds which published cell: the ONE map, shared by the report and the DAG.

`CELLS` says, for every mPLUG cell of Tables 1-5 and 7-10, which evaluation JOB of the run config
(`evaluate:` section), which SPLIT, which keys of the metrics JSON (first present wins; values
in percent) and which model variant / pre-training corpus the row needs. Tables 6, 11 and 12 have
their own small maps below (benchmark rows, fine-tuning jobs, pre-training corpora).

File paths are never written here: `locate_cell` / `locate_finetune` / `table12_files` pick the
model key of the run config that plays the row and compute the path with the run-layout helpers
of `mplug.config` (`eval_json`, `checkpoint_dir`, `bench_json`, `data_stats`, `synth_manifest`),
which are the paths the Snakemake rules write. `table_files(cfg, n)` is what the report reads for
Table n; the Snakefile's `tableNN` and `report` targets take exactly that as inputs, so the DAG
builds what the report reads and the two cannot disagree.

The `tables:` list of each `evaluate:` job in a run config is a label for humans; it must agree
with this map (`tables_label_mismatches`, checked by the tests and noted in the report).
"""
from __future__ import annotations

from dataclasses import dataclass

from mplug import config as mcfg

# Metric-key candidates (first present wins). Names are what mplug/eval writes (pycocoevalcap,
# official itm_eval, VQA `overall`); older aliases follow.
K_B4 = ("Bleu_4", "BLEU@4", "bleu4")
K_METEOR = ("METEOR", "meteor")
K_CIDER = ("CIDEr", "cider")
K_SPICE = ("SPICE", "spice")
K_ACC = ("accuracy", "acc")
K_VQA = ("overall", "accuracy")
K_GROUND = ("acc@0.5", "accuracy", "acc")
# NoCaps: mplug/eval/caption_eval.score_nocaps writes "<domain>/<metric>" per domain + overall.
K_NOCAPS = {"in": ("in-domain/CIDEr", "CIDEr_in"), "near": ("near-domain/CIDEr", "CIDEr_near"),
            "out": ("out-domain/CIDEr", "CIDEr_out"), "C": ("overall/CIDEr",) + K_CIDER,
            "S": ("overall/SPICE",) + K_SPICE}


def _r(direction: str, k: int) -> tuple[str, ...]:
    """Recall keys of official itm_eval: `txt_rK` = text retrieval (image -> text, TR), `img_rK`
    = image retrieval (text -> image, IR). For video retrieval the video plays the image, so
    text-to-video recall (Table 9) is `img_rK`."""
    return {"TR": (f"txt_r{k}", f"tr_r{k}"), "IR": (f"img_r{k}", f"ir_r{k}"),
            "T2V": (f"img_r{k}", f"t2v_r{k}", f"vid_r{k}")}[direction]


VARIANTS = ("base", "large")


@dataclass(frozen=True)
class CellMap:
    """One published mPLUG cell and the evaluation that reproduces it."""

    table: int
    model: str
    pretrain_data: str
    setting: str
    metric: str
    job: str                        # evaluation job (`evaluate:` key of the run config)
    split: str                      # split the job writes (`evaluate.<job>.splits`)
    keys: tuple[str, ...]           # candidate keys in the file's "metrics" object
    variant: str | None = None      # 'base' / 'large': the row needs a model of that size
    pretrain: str | None = None     # '14M' / '4M': the row needs that pre-training corpus
    server_phase: str | None = None  # 'test-dev' / 'test-std': scored by the EvalAI server
    stand_ins: tuple[str, ...] = ()  # splits shown (and labelled) when the run lacks `split`

    @property
    def row(self) -> tuple[str, str]:
        return (self.model, self.pretrain_data)

    @property
    def key(self) -> tuple[int, str, str, str, str]:
        return (self.table, self.model, self.pretrain_data, self.setting, self.metric)


def _t1() -> list[CellMap]:
    out = []
    for setting, job in (("COCO Karpathy test, cross-entropy", "caption_ce"),
                         ("COCO Karpathy test, CIDEr optimization", "caption")):
        for metric, keys in (("B@4", K_B4), ("M", K_METEOR), ("C", K_CIDER), ("S", K_SPICE)):
            out.append(CellMap(1, "mPLUG", "14M", setting, metric, job, "test", keys))
    for metric in ("C", "S"):
        out.append(CellMap(1, "mPLUG", "14M", "NoCaps val", metric, "nocaps", "val",
                           K_NOCAPS[metric]))
    return out


def _t2() -> list[CellMap]:
    # The workflow evaluates VQA once on `test` (the test2015 questions) and writes the EvalAI
    # submission; test-dev and test-std are two phases of the server scoring that same file.
    # A run whose data has no test split (the synthetic world) shows val/minival, labelled.
    out = []
    for model, data, variant in (("mPLUGViT-B", "4M", "base"), ("mPLUGViT-B", "14M", "base"),
                                 ("mPLUGViT-L", "14M", "large")):
        for setting, phase in (("VQA v2 test-dev", "test-dev"), ("VQA v2 test-std", "test-std")):
            out.append(CellMap(2, model, data, setting, "Acc", "vqa", "test", K_VQA,
                               variant=variant, pretrain=data, server_phase=phase,
                               stand_ins=("minival", "val")))
    return out


def _t3() -> list[CellMap]:
    return [CellMap(3, "mPLUG", "14M", setting, f"{d} R@{k}", job, "test", _r(d, k))
            for setting, job in (("MSCOCO 5K test", "retrieval_coco"),
                                 ("Flickr30K 1K test", "retrieval_flickr"))
            for d in ("TR", "IR") for k in (1, 5, 10)]


GROUNDING = {  # published setting -> (evaluation job, split)
    "RefCOCO val": ("grounding_refcoco", "val"), "RefCOCO testA": ("grounding_refcoco", "testA"),
    "RefCOCO testB": ("grounding_refcoco", "testB"),
    "RefCOCO+ val": ("grounding_refcoco_plus", "val"),
    "RefCOCO+ testA": ("grounding_refcoco_plus", "testA"),
    "RefCOCO+ testB": ("grounding_refcoco_plus", "testB"),
    "RefCOCOg val-u": ("grounding_refcocog", "val_u"),
    "RefCOCOg test-u": ("grounding_refcocog", "test_u"),
}


def _t4() -> list[CellMap]:
    return [CellMap(4, "mPLUG", "", s, "Acc@0.5", job, split, K_GROUND)
            for s, (job, split) in GROUNDING.items()]


def _t5() -> list[CellMap]:
    return [CellMap(5, "mPLUG", "", s, "Acc", job, split, K_ACC)
            for s, job, split in (("NLVR2 dev", "nlvr2", "dev"), ("NLVR2 test-P", "nlvr2", "test_p"),
                                  ("SNLI-VE dev", "snli_ve", "dev"),
                                  ("SNLI-VE test", "snli_ve", "test"))]


def _t7() -> list[CellMap]:
    # mPLUG: the pre-trained model with the prompt; mPLUG†: the COCO-fine-tuned caption model.
    return [CellMap(7, model, "", "NoCaps val", f"CIDEr {name}", job, "val", K_NOCAPS[dom])
            for model, job in (("mPLUG", "nocaps_zeroshot"), ("mPLUG†", "nocaps"))
            for name, dom in (("In", "in"), ("Near", "near"), ("Out", "out"), ("Overall", "C"))]


def _t8() -> list[CellMap]:
    # mPLUG: pre-trained; mPLUG†: fine-tuned on COCO retrieval; neither saw Flickr30K training.
    return [CellMap(8, model, "", "Flickr30K (zero-shot)", f"{d} R@{k}", job, "test", _r(d, k))
            for model, job in (("mPLUG", "retrieval_flickr_zeroshot"),
                               ("mPLUG†", "retrieval_flickr_zeroshot_coco"))
            for d, k in (("TR", 1), ("TR", 5), ("IR", 1), ("IR", 5))]


def _t9() -> list[CellMap]:
    return [CellMap(9, model, "14M", "MSRVTT 1k test", f"R@{k}", job, "test", _r("T2V", k))
            for model, job in (("mPLUG", "video_retrieval"), ("mPLUG †", "video_retrieval_coco"))
            for k in (1, 5, 10)]


def _t10() -> list[CellMap]:
    return [CellMap(10, "mPLUG", "", s, m, job, "test", keys)
            for s, m, job, keys in (("MSRVTT-QA", "Acc", "video_qa_msrvtt", K_ACC),
                                    ("MSVD-QA", "Acc", "video_qa_msvd", K_ACC),
                                    ("VATEX-Cap", "CIDEr", "video_caption", K_CIDER))]


CELLS: tuple[CellMap, ...] = tuple(_t1() + _t2() + _t3() + _t4() + _t5() + _t7() + _t8()
                                   + _t9() + _t10())

# Published mPLUG cells this harness does not reproduce on purpose: CellMap.key (or the row
# (table, model, pretrain_data)) -> reason. The report shows the reason; the tests require every
# published mPLUG cell to be either run by config/config.yaml or listed here. Empty today: the
# paper's run covers every mPLUG cell.
NOT_REPRODUCED: dict[tuple, str] = {}

# ---- Table 6: training throughput, from the `train` benchmark rows matched by their "setting".
TABLE6_BENCH = "train"
TABLE6_SETTINGS = {  # published row -> accepted `setting` names (compared lower-case, alnum only)
    "baseline": ("baseline", "fp32"),
    "+ BFloat16": ("bf16", "bfloat16", "+bf16", "+bfloat16"),
    "+ Gradient Checkpoint": ("gradientcheckpoint", "gradientcheckpointing", "gradckpt",
                              "bf16gradckpt", "+gradient_checkpoint", "+grad_ckpt", "checkpoint"),
    "+ ZeRO": ("zero", "+zero", "bf16gradckptzero", "zero2"),
}
FIGURE_BENCH = "fusion"                 # Figures 1, 3, 4
OTHER_BENCH = ("generate", "retrieval")  # the harness's own fast paths, shown as tables

# ---- Table 11: hyper-parameters actually used, from each fine-tuning job's summary.json.
TABLE11_JOBS = {  # published task -> fine-tuning jobs (`finetune:` keys of the run config)
    "VQA": ("vqa",),
    "Captioning†": ("caption_ce", "caption_scst"),
    "Retrieval": ("retrieval_coco", "retrieval_flickr"),
    # Table 11's row is the mixed RefCOCO/+/g stage; the per-dataset stages (2e-6) follow it.
    "Visual Grounding": ("grounding_mixed",),
    "NLVR2": ("nlvr2",),
    "SNLI-VE": ("snli_ve",),
}
# Where the trainer (mplug/train/loop.py) records the settings it used: summary["run"]["settings"]
# (the resolved `finetune.<job>.train` block). Top level, "hparams", "config" are older shapes.
HPARAM_SCOPES = (("run", "settings"), (), ("hparams",), ("config",))
HPARAM_KEYS = {
    "lr": ("lr_text", "lr", "lr1", "learning_rate"),
    "lr_visual": ("lr_vision", "lr_visual", "lr2"),
    "batch_size": ("batch_size", "global_batch_size", "batch_size_total"),
    "epochs": ("epochs", "max_epochs", "num_epochs"),
}

# ---- Table 12: pre-training data obtained, from the pre-training datasets' stats.json
# `components` object (mplug/data/preprocess_pretrain.py): {corpus: {images_obtained, ...}}.
TABLE12_SOURCES = {"COCO": "coco", "VG": "vg", "SBU": "sbu", "CC3M": "cc3m", "CC12M": "cc12m"}


def cells_for_table(table: int) -> list[CellMap]:
    return [c for c in CELLS if c.table == table]


# ------------------------------------------------------------------------ locating files


@dataclass(frozen=True)
class Source:
    """Where (in the run layout) a cell's value lives, or why the run has none.

    `path` and `log` are project-relative, exactly as mplug.config's helpers (= the rules)
    write them: `results/<run>/<model_key>/...`, `logs/<run>/<rule>/...`."""

    path: str | None
    model_key: str | None = None
    split: str | None = None
    log: str | None = None
    note: str = ""       # e.g. a stand-in split
    reason: str = ""     # set when path is None: why the run has no such file
    seed_paths: tuple[tuple[int, str], ...] = ()  # evaluate.<job>.seeds: (seed, path), the
                                                  # run's own seed first (its path is `path`)


def arch_variant(arch: str) -> str | None:
    """'base' / 'large' from a registry name; None for test-size models (smoke, tiny)."""
    return next((v for v in VARIANTS if v in arch.lower()), None)


def _rank(cfg: dict, key: str, variant: str | None, pretrain: str | None) -> int | None:
    """Preference of model `key` for a row (lower is better), None if it cannot play it.

    A 'large' row (the paper's main model) accepts a large model, or failing that a test-size
    one (the smoke run's model plays the main rows); a 'base' row needs a base model. Rows with
    no stated variant prefer large, then test-size, then base. '14M' needs `pretrain_14m` among
    the model's stages, '4M' a model pre-trained on `pretrain_4m` only."""
    model = cfg["models"][key]
    v, stages = arch_variant(model["arch"]), list(model["pretrain"])
    if pretrain == "4M" and stages != ["pretrain_4m"]:
        return None
    if pretrain == "14M" and "pretrain_14m" not in stages:
        return None
    if variant == "base" and v != "base":
        return None
    if variant == "large" and v == "base":
        return None
    return {"large": 0, None: 1, "base": 2}[v] * 2 + ("pretrain_14m" not in stages)


def _pick(cfg: dict, section: str, job: str, variant: str | None,
          pretrain: str | None) -> tuple[str | None, str]:
    """(model key, "") of the enabled model that runs `job` in `section` and best plays the row,
    or (None, reason)."""
    runs = [k for k, m in mcfg.enabled_models(cfg).items() if job in m[section]]
    if not runs:
        return None, (f"the run config has no {section} job {job!r}" if job not in cfg[section]
                      else f"no enabled model of the run config lists {job!r} in its "
                           f"models.<key>.{section}")
    ranked = sorted((r, k) for k in runs if (r := _rank(cfg, k, variant, pretrain)) is not None)
    if not ranked:
        want = " ".join(x for x in (f"mplug_{variant}" if variant else "",
                                    f"pre-trained on {pretrain}" if pretrain else "") if x)
        have = ", ".join(f"{k} ({cfg['models'][k]['arch']}, "
                         f"{'+'.join(cfg['models'][k]['pretrain'])})" for k in runs)
        return None, f"needs a {want} model running {job!r}; this run has {have}"
    return ranked[0][1], ""


def _not_reproduced(cell: CellMap) -> str | None:
    return NOT_REPRODUCED.get(cell.key) or NOT_REPRODUCED.get((cell.table,) + cell.row)


def locate_cell(cfg: dict, cell: CellMap) -> Source:
    """The metrics JSON (run layout) that reproduces `cell` in the run `cfg`."""
    why = _not_reproduced(cell)
    if why:
        return Source(None, reason=f"not reproduced by this harness: {why}")
    key, why = _pick(cfg, "evaluate", cell.job, cell.variant, cell.pretrain)
    if key is None:
        return Source(None, reason=why)
    splits = list(cfg["evaluate"][cell.job]["splits"])
    split, note = cell.split, ""
    if split not in splits:
        split = next((s for s in cell.stand_ins if s in splits), None)
        if split is None:
            return Source(None, model_key=key, reason=f"evaluate.{cell.job}.splits {splits} has "
                                                      f"no {cell.split!r} split")
        note = (f"split {split!r} stands in for {cell.split!r} (evaluate.{cell.job}.splits: "
                f"{splits}); not comparable with the paper's split")
    rule = "zeroshot" if cfg["evaluate"][cell.job].get("zeroshot", False) else "evaluate"
    seeds = ((cfg["seed"], mcfg.eval_json(cfg, key, cell.job, split)),
             *((s, mcfg.eval_json(cfg, key, cell.job, split, s)) for s in mcfg.other_seeds(cfg, cell.job)))
    return Source(mcfg.eval_json(cfg, key, cell.job, split), key, split,
                  mcfg.rule_log(cfg, rule, key, cell.job, split), note=note,
                  seed_paths=seeds if len(seeds) > 1 else ())


def locate_finetune(cfg: dict, job: str) -> Source:
    """A fine-tuning job's summary.json, of the model that plays the paper's main rows."""
    key, why = _pick(cfg, "finetune", job, None, None)
    if key is None:
        return Source(None, reason=why)
    return Source(f"{mcfg.checkpoint_dir(cfg, key, job)}/summary.json", key,
                  log=mcfg.rule_log(cfg, "finetune", key, job))


def locate_bench(cfg: dict, name: str) -> Source:
    if not cfg["bench"].get(name, {}).get("enabled", False):
        return Source(None, reason=f"bench.{name}.enabled is not true in the run config")
    return Source(mcfg.bench_json(cfg, name), log=mcfg.rule_log(cfg, "bench", name))


def table12_files(cfg: dict) -> list[Source]:
    """Table 12's inputs: the pre-training datasets' stats.json (real data; 14M first, it holds
    every corpus) or the synthetic world's manifest."""
    if cfg["data"]["source"] == "synth":
        return [Source(mcfg.synth_manifest(cfg), log=mcfg.rule_log(cfg, "synth", "synth"))]
    models = mcfg.enabled_models(cfg)
    used = {d for m in models.values() for s in m["pretrain"] for d in cfg["pretrain"][s]["datasets"]}
    names = sorted((d for d, e in cfg["data"]["datasets"].items()
                    if e.get("pretraining", False) and d in used),
                   key=lambda d: ("14m" not in d, d))
    return [Source(mcfg.data_stats(cfg, d), log=mcfg.rule_log(cfg, "preprocess", d)) for d in names]


def table_sources(cfg: dict, table: int) -> list[Source]:
    """Every located input of Table `table` (1..12) in the run `cfg`, in table order."""
    if table == 6:
        return [locate_bench(cfg, TABLE6_BENCH)]
    if table == 11:
        return [locate_finetune(cfg, j) for jobs in TABLE11_JOBS.values() for j in jobs]
    if table == 12:
        return table12_files(cfg)
    return [locate_cell(cfg, c) for c in cells_for_table(table)]


def table_files(cfg: dict, table: int) -> list[str]:
    """The files the report reads for Table `table`, as the rules write them (project-relative,
    no duplicates): the `tableNN` targets' inputs."""
    paths = []
    for src in table_sources(cfg, table):
        paths += [p for _, p in src.seed_paths] or ([src.path] if src.path else [])
    return list(dict.fromkeys(paths))


def figure_files(cfg: dict) -> list[str]:
    s = locate_bench(cfg, FIGURE_BENCH)
    return [s.path] if s.path else []


def tables_label_mismatches(cfg: dict) -> list[str]:
    """Evaluation jobs whose `tables:` list disagrees with the tables CELLS feed them from."""
    fed: dict[str, set[int]] = {}
    for n in sorted({c.table for c in CELLS}):
        for c in cells_for_table(n):
            if locate_cell(cfg, c).path:
                fed.setdefault(c.job, set()).add(n)
    run = {j for m in mcfg.enabled_models(cfg).values() for j in m["evaluate"]}
    out = []
    for job, entry in cfg["evaluate"].items():
        if job not in run:
            continue
        said, real = set(entry.get("tables", [])), fed.get(job, set())
        if said != real:
            out.append(f"evaluate.{job}.tables is {sorted(said)} but the report fills "
                       f"{sorted(real) or 'no table'} from it")
    return out
