"""The paper run in miniature: `config/config.yaml`'s own shape, with only sizes shrunk.

`miniaturise(paper)` keeps every structural choice of the paper config: every model key and its
stages, fine-tunes and evaluations (with their splits, tables, zero-shot flags and checkpoints),
the resolutions (unchanged: 224/256 px pretraining, 336/384 px fine-tuning, 504 px under
`hparams: paper`, 224-480 px video), the generation settings, the CLIP/BERT init files at their
download paths, the official checkpoints as the second source, `overrides:` and `paper:`. It
changes two kinds of keys, and only those (`structural_differences` lists any other; a test keeps
that list empty):

- sizes: each architecture becomes its registered miniature (`registry.MINIATURE`: the same patch,
  position grid, visn_fc and 6 fusion layers with the same stride; narrower and shallower), and
  the keys in `SIZES` (steps, epochs, batches, queue and embedding sizes, evaluated examples);
- where it runs: the synthetic world instead of the dataset hosts (the CI machine has none; the
  init weights are then written in the official formats at the download paths, see
  mplug/data/synth_weights.py), one CPU process per job (`launcher`, `resources`), the run name,
  the report banner and the benches' quick mode.

    mplug miniature --config config/config.yaml --out config/miniature.yaml [--hparams paper]
"""
from __future__ import annotations

import copy
from typing import Any, Callable

from mplug.errors import ConfigError

RUN = "miniature"
BANNER = ("Miniature of the paper run: config/config.yaml with only sizes shrunk (mplug miniature), "
          "on the synthetic world, on CPU. Not comparable with the paper.")

# size key -> its miniature value (a function of the paper value and the section it is in)
SIZES: dict[str, Callable[[Any, str], Any]] = {
    "epochs": lambda v, sec: 1,
    "max_steps": lambda v, sec: 6 if sec == "pretrain" else 4,
    "batch_size": lambda v, sec: min(v, 8),
    "batch_size_eval": lambda v, sec: 16,
    "num_workers": lambda v, sec: 0,
    "queue_size": lambda v, sec: 64,       # a multiple of the batch, as ALBEF's queue needs
    "embed_dim": lambda v, sec: 16,
    "log_every": lambda v, sec: 2,
    "save_every": lambda v, sec: 3,
    "warmup_steps": lambda v, sec: 2,
    "eval_every": lambda v, sec: 2,
    "k_test": lambda v, sec: 8,
    "limit": lambda v, sec: 12,
}
# size keys every training section gets (absent from the paper config: it runs whole epochs)
ADDED_TRAIN = ("max_steps",)
ADDED_EVAL = ("limit",)
# where the run happens, not what it is
ENVIRONMENT = (("run",), ("launcher",), ("data", "source"), ("data", "synth"), ("resources",),
               ("report", "banner"))
CPU_RESOURCES = {"cluster": {"signal_lead_s": 60},
                 "default": {"nodes": 1, "gpus_per_node": 0, "cpus_per_task": 1, "mem_mb": 4000,
                             "runtime": 30}}
JOB_SECTIONS = ("pretrain", "finetune", "evaluate")


def _archs() -> dict[str, str]:
    from mplug.models.registry import MINIATURE

    return dict(MINIATURE)


def miniaturise(paper: dict, hparams: str | None = None) -> dict:
    """The miniature of a paper run config (a new dict; `paper` is not changed)."""
    mini = copy.deepcopy(paper)
    archs = _archs()
    if hparams is not None:
        mini["hparams"] = hparams
    mini.update(run=RUN, launcher="none", resources=copy.deepcopy(CPU_RESOURCES))
    mini["data"].update(source="synth", synth={"seed": 0, "scale": "tiny"})
    for key, model in mini["models"].items():
        if model["arch"] not in archs:
            raise ConfigError(f"models.{key}.arch={model['arch']!r} has no miniature; known: "
                              f"{', '.join(archs)} (mplug.models.registry.MINIATURE)")
    _rename_archs(mini, archs)
    for section in JOB_SECTIONS:
        for job in mini[section].values():
            job.pop("resources", None)
            _shrink(job, section)
            if section == "evaluate":
                job.setdefault("generation", {})
                for key in ADDED_EVAL:
                    job["generation"].setdefault(key, SIZES[key](None, section))
            else:
                for key in ADDED_TRAIN:
                    job["train"][key] = SIZES[key](None, section)
    for bench in mini["bench"].values():
        bench["quick"] = True
        bench.pop("resources", None)
        if _batch_search(bench):
            bench["args"] = [*bench["args"], *AUTO_BATCH_CAP]
    mini["report"]["banner"] = BANNER
    return mini


# `--batch auto` searches up to 16 samples per CPU step by default: a size, shrunk like the rest
AUTO_BATCH_CAP = ("--max-batch", "2")


def _batch_search(bench: dict) -> bool:
    args = [str(a) for a in bench.get("args") or []]
    return any(a == "--batch" and b == "auto" for a, b in zip(args, args[1:]))


def _without_batch_cap(cfg: dict) -> None:
    for bench in cfg.get("bench", {}).values():
        args = list(bench.get("args") or [])
        if _batch_search(bench) and tuple(args[-2:]) == AUTO_BATCH_CAP:
            bench["args"] = args[:-2]


def _rename_archs(cfg: dict, names: dict[str, str]) -> None:
    """Rename architectures wherever the config names one: models.*.arch, the CLIP init files
    (pretrained.init.clip.<arch>) and the per-architecture `overrides:` of every job."""
    for model in cfg.get("models", {}).values():
        model["arch"] = names.get(model.get("arch"), model.get("arch"))
    init = cfg.get("pretrained", {}).get("init")
    if isinstance(init, dict):
        init["clip"] = {names.get(a, a): p for a, p in init.get("clip", {}).items()}
    for section in JOB_SECTIONS:
        for job in cfg.get(section, {}).values():
            if isinstance(job.get("overrides"), dict):
                job["overrides"] = {names.get(a, a): o for a, o in job["overrides"].items()}


def _shrink(node: Any, section: str) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "table11":  # the paper's published values, shown in Table 11
                continue
            if key in SIZES and value is not None and not isinstance(value, (dict, list)):
                node[key] = SIZES[key](value, section)
            else:
                _shrink(value, section)


# ------------------------------------------------------------------ what may differ


def _leaves(node: Any, path: tuple = ()) -> dict[tuple, Any]:
    if isinstance(node, dict) and node:
        out: dict[tuple, Any] = {}
        for key, value in node.items():
            out.update(_leaves(value, path + (key,)))
        return out
    return {path: node}


def _allowed(path: tuple) -> bool:
    if any(path[:len(env)] == env for env in ENVIRONMENT):
        return True
    if path and path[-1] in SIZES:
        return True
    if len(path) >= 3 and path[0] in JOB_SECTIONS + ("bench",) and path[2] == "resources":
        return True  # a job's allocation (GPUs per node, runtime): the machine's, not the run's
    return len(path) == 3 and path[0] == "bench" and path[2] == "quick"


def structural_differences(paper: dict, mini: dict) -> list[str]:
    """Key paths where `mini` differs from `paper` in anything but sizes and where it runs
    (architecture names compared through `registry.MINIATURE`); [] for a true miniature."""
    norm = copy.deepcopy(mini)
    _rename_archs(norm, {m: p for p, m in _archs().items()})
    _without_batch_cap(norm)
    a, b = _leaves(paper), _leaves(norm)
    paths = sorted(set(a) | set(b), key=lambda p: [str(x) for x in p])
    return [".".join(map(str, p)) + f": {a.get(p, '(absent)')!r} -> {b.get(p, '(absent)')!r}"
            for p in paths if a.get(p, KeyError) != b.get(p, KeyError) and not _allowed(p)]
