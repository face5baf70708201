"""Run configs: load, validate, resolve.

One schema (`workflow/schemas/config.schema.yaml`) serves the Snakefile (Snakemake's `validate`)
and every `mplug` verb (`load_config`), so a config the DAG accepts is a config the library
accepts. On top of the schema, `check_semantics` catches what a schema cannot express: unknown
task names, a stride the model cannot have, a model name not in the registry, references to
stages/jobs/datasets that do not exist. Every error names the file, the key path (and line
where known) and what is allowed.

Resolution helpers give the trainer and evaluator the settings they should use:
`train_settings(cfg, section, name, model_key)` and `eval_settings(cfg, job, model_key)` merge a
job's base values, its per-architecture overrides and, with `hparams: paper`, the paper's values.
Path helpers (`checkpoint_path`, `eval_json`, ...) describe the run layout the DAG builds and
the report reads; which of those files feed which table is `mplug.report.mapping`'s business.
"""
from __future__ import annotations

import copy
import math
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from mplug.errors import ConfigError
from mplug.task_registry import task_names
from mplug.utils.io import read_utf8

SCHEMA_RELPATH = Path("workflow") / "schemas" / "config.schema.yaml"

PRETRAIN_STAGES = ("pretrain_14m", "pretrain_4m")
# Used only when mplug.models cannot be imported (e.g. a bare environment): official archs.
_FALLBACK_FUSION_LAYERS = {"mplug_base": 6, "mplug_large": 6}

_MAX_ERRORS = 20


# ------------------------------------------------------------------------------ loading


def schema_path() -> Path:
    """The schema file: beside the package in a source checkout (editable install or PYTHONPATH)."""
    path = Path(__file__).resolve().parent.parent / SCHEMA_RELPATH
    if not path.is_file():
        raise ConfigError(f"config schema not found at {path}; run from a source checkout of "
                          "mplug-repro (pip install -e .)")
    return path


@lru_cache(maxsize=4)
def _load_schema(path: str) -> dict:
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def load_config(path: str | Path) -> dict:
    """Read a run config, validate it against the schema and the semantic checks, return it.

    Raises ConfigError naming the file, the key path (with its line) and what is allowed.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass --config with a run config "
                          "such as config/config.yaml or config/smoke.yaml")
    text = read_utf8(path, ConfigError)
    try:
        cfg = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML: {getattr(err, 'problem', err)}") \
            from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: a run config must be a mapping of keys (run, data, models, "
                          "...), got " + type(cfg).__name__)
    validate_config(cfg, source=str(path), text=text)
    return cfg


def validate_config(cfg: dict, source: str = "<config>", text: str | None = None) -> None:
    """Schema validation then semantic checks; one ConfigError listing every problem found."""
    duplicates = duplicate_keys(text) if text else []
    if duplicates:
        raise ConfigError(f"{source}: invalid run config (a key written twice; YAML would keep "
                          "only the last value):\n" + "\n".join(f"  {d}" for d in duplicates))
    errors = schema_errors(cfg)
    if not errors:
        errors = semantic_errors(cfg)
    if errors:
        raise ConfigError(_format(errors, source, text))


def schema_errors(cfg: dict) -> list[tuple[tuple, str]]:
    """(key path, message) for every schema violation, sorted by path."""
    import jsonschema

    schema = _load_schema(str(schema_path()))
    validator = jsonschema.Draft202012Validator(schema)
    out = []
    for err in validator.iter_errors(cfg):
        out.extend(_explain(err))
    return sorted(set(out), key=lambda e: [str(p) for p in e[0]])


def _explain(err) -> list[tuple[tuple, str]]:
    """Turn a jsonschema error into messages that name the key and what is allowed."""
    path = tuple(err.absolute_path)
    if err.validator == "allOf" or err.validator == "$ref":
        return [m for sub in err.context for m in _explain(sub)] or [(path, err.message)]
    if err.validator in ("oneOf", "anyOf") and err.context:
        # e.g. a path or null: the branch that says more than "wrong type" explains it
        subs = [m for sub in err.context if sub.validator != "type" for m in _explain(sub)]
        return subs or [(path, f"{err.instance!r} has the wrong type; expected "
                               + " or ".join(str(sub.validator_value) for sub in err.context))]
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = sorted(err.schema.get("properties", {}))
        extra = [k for k in err.instance if k not in err.schema.get("properties", {})]
        return [(path + (k,), f"unknown key {k!r}; allowed here: {', '.join(allowed)}")
                for k in extra]
    if err.validator == "required":
        return [(path, err.message.replace("is a required property",
                                           "is required but missing"))]
    if err.validator == "enum":
        return [(path, f"{err.instance!r} is not allowed; use one of: "
                       + ", ".join(map(repr, err.validator_value)))]
    if err.validator == "pattern" and err.schema.get("title") == "path":
        bad = sorted({c for c in str(err.instance) if not re.fullmatch(err.validator_value, c)})
        return [(path, f"{err.instance!r} holds {', '.join(map(repr, bad))}: a path here may not "
                       "hold shell metacharacters, quotes, braces or control characters "
                       "(newlines, tabs); rename the folder")]
    if err.validator == "type":
        want = err.validator_value
        want = " or ".join(want) if isinstance(want, list) else want
        return [(path, f"{err.instance!r} has the wrong type; expected {want}")]
    return [(path, err.message)]


def _format(errors: list[tuple[tuple, str]], source: str, text: str | None) -> str:
    lines = [f"{source}: invalid run config ({len(errors)} problem"
             f"{'s' if len(errors) != 1 else ''}; see config/README.md for every key):"]
    for path, msg in errors[:_MAX_ERRORS]:
        line = _line_of(text, path) if text else None
        where = key_path(path) or "(top level)"
        lines.append(f"  {where}{f' (line {line})' if line else ''}: {msg}")
    if len(errors) > _MAX_ERRORS:
        lines.append(f"  ... and {len(errors) - _MAX_ERRORS} more")
    return "\n".join(lines)


def duplicate_keys(text: str) -> list[str]:
    """'KEY.PATH: written twice, line A and line B' for every key repeated in one YAML mapping."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return []  # safe_load reported (or will report) the syntax error with its line
    out: list[str] = []

    def walk(node, path: tuple) -> None:
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key, value in node.value:
                name = getattr(key, "value", None)
                if isinstance(name, str) and name != "<<":
                    line = key.start_mark.line + 1
                    if name in first:
                        out.append(f"{key_path(path + (name,))} (line {line}): written twice, first "
                                   f"at line {first[name]}; keep one")
                    first.setdefault(name, line)
                walk(value, path + (name,))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, path + (i,))

    walk(root, ())
    return out


def key_path(path: tuple) -> str:
    """('finetune', 'vqa', 'train', 'lr_text') -> 'finetune.vqa.train.lr_text'; [i] for lists."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line_of(text: str, path: tuple) -> int | None:
    """1-based line of the deepest key of `path` that exists in the YAML text."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for part in path:
        if isinstance(node, yaml.MappingNode):
            match = [v for k, v in node.value if getattr(k, "value", None) == part]
            keys = [k for k, _ in node.value if getattr(k, "value", None) == part]
            if not match:
                break
            line, node = keys[0].start_mark.line + 1, match[0]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) \
                and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


# ---------------------------------------------------------------------- semantic checks


def _registry():
    """(names, fusion_layers(name)) from mplug.models.registry, or None if not importable."""
    try:
        from mplug.models import registry
    except Exception:  # noqa: BLE001 - the registry is optional for config checks
        return None
    return registry


def semantic_errors(cfg: dict) -> list[tuple[tuple, str]]:
    """Cross-reference checks a schema cannot express. Assumes the schema passed."""
    errs: list[tuple[tuple, str]] = list(_non_finite(cfg, ()))
    pre, fin, ev = cfg["pretrain"], cfg["finetune"], cfg["evaluate"]
    datasets = cfg["data"]["datasets"]

    finetune_tasks, eval_tasks = task_names("finetune"), task_names("evaluate")
    for name, job in fin.items():
        if job["task"] not in finetune_tasks:
            errs.append((("finetune", name, "task"), f"unknown task {job['task']!r}; "
                         f"fine-tuning tasks: {', '.join(finetune_tasks)}"))
        if name in pre:
            errs.append((("finetune", name), f"{name!r} is also a pretrain stage; checkpoint "
                         "names must be unique"))
    for name, job in ev.items():
        if job["task"] not in eval_tasks:
            errs.append((("evaluate", name, "task"), f"unknown task {job['task']!r}; "
                         f"evaluation tasks: {', '.join(eval_tasks)}"))
        if job["dataset"] not in datasets:
            errs.append((("evaluate", name, "dataset"), f"unknown dataset {job['dataset']!r}; "
                         f"data.datasets has: {', '.join(datasets)}"))
        if job.get("seeds") and job.get("zeroshot"):
            errs.append((("evaluate", name, "seeds"), "fine-tuning seeds on a zero-shot job are not "
                         "supported; list them on the fine-tuned job's own evaluation"))
        elif job.get("seeds") and job["checkpoint"] not in fin:
            errs.append((("evaluate", name, "seeds"), f"seeds are fine-tuning seeds, but checkpoint "
                         f"{job['checkpoint']!r} is not a fine-tuning job; remove `seeds`"))
    for section, jobs in (("pretrain", pre), ("finetune", fin)):
        for name, job in jobs.items():
            for i, d in enumerate(job["datasets"]):
                if d not in datasets:
                    errs.append(((section, name, "datasets", i), f"unknown dataset {d!r}; "
                                 f"data.datasets has: {', '.join(datasets)}"))

    registry = _registry()
    known = set(registry.list_configs()) if registry else None
    for key, model in cfg["models"].items():
        errs.extend(_model_errors(cfg, key, model, registry, known))
    if known is not None:
        for section in ("pretrain", "finetune", "evaluate"):
            for name, job in cfg[section].items():
                for arch in job.get("overrides", {}):
                    if arch not in known:
                        errs.append(((section, name, "overrides", arch), f"unknown model "
                                     f"{arch!r}; registered: {', '.join(sorted(known))}"))

    if cfg["data"]["source"] == "synth" and "synth" not in cfg["data"]:
        errs.append((("data",), "'synth' is required when data.source is 'synth' "
                     "(seed and scale for `mplug data synth`)"))
    if cfg["data"]["source"] == "real":
        errs.extend(_download_errors(datasets))
    if cfg["pretrained"]["source"] == "official":
        official = cfg["pretrained"].get("official", {})
        for key, model in enabled_models(cfg).items():
            for stage in model["pretrain"]:
                if stage not in official.get(key, {}):
                    errs.append((("pretrained", "official", key), f"no released checkpoint for "
                                 f"stage {stage!r} of model {key!r}; add pretrained.official."
                                 f"{key}.{stage}: PATH.pth or set models.{key}.enabled: false"))
    else:
        errs.extend(_init_errors(cfg))
    return errs


def _init_errors(cfg: dict) -> list[tuple[tuple, str]]:
    """Pretraining from scratch needs CLIP weights for each pretrained arch, or `init: random`."""
    init = cfg["pretrained"].get("init")
    if init == "random":
        return []
    if init is None:
        return [(("pretrained",), "no `init`: set pretrained.init.clip.<arch> and pretrained.init.bert "
                 "(CLIP-ViT + BERT-base, paper 5.1) or pretrained.init: random")]
    archs = {m["arch"] for m in enabled_models(cfg).values() if m["pretrain"]}
    return [(("pretrained", "init", "clip"), f"no CLIP weights for {arch}: add pretrained.init.clip."
             f"{arch}: PATH (`mplug data download --list` names the CLIP sources) or set "
             "pretrained.init: random") for arch in sorted(archs - set(init["clip"]))]


def _download_errors(datasets: dict) -> list[tuple[tuple, str]]:
    """Real data: each dataset's `downloads` name known sources and include every source its
    preprocessing reads, so nothing a configured split needs is left undownloaded (the run
    would otherwise stop at preprocessing, after the other downloads)."""
    try:
        from mplug.data.preprocess import PREPROCESS_SOURCES
        from mplug.data.sources import SOURCES
    except ImportError:  # like the model registry: optional for config checks
        return []
    errs = []
    for name, spec in datasets.items():
        where = ("data", "datasets", name, "downloads")
        for i, src in enumerate(spec["downloads"]):
            if src not in SOURCES:
                errs.append((where + (i,), f"unknown download source {src!r}; `mplug data download --list` "
                             "lists them"))
        missing = [s for s in PREPROCESS_SOURCES.get(name, ()) if s not in spec["downloads"]]
        if missing:
            errs.append((where, f"lacks {', '.join(missing)}: `mplug data preprocess {name}` reads "
                         f"{', '.join(PREPROCESS_SOURCES[name])}"))
    return errs


def _non_finite(node: Any, path: tuple):
    """(path, message) for every NaN or infinite number (YAML's .nan/.inf pass a 'number' type)."""
    if isinstance(node, float) and not math.isfinite(node):
        yield path, f"{node!r} is not a finite number; use a finite value"
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _non_finite(value, path + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _non_finite(value, path + (i,))


def _model_errors(cfg, key, model, registry, known) -> list[tuple[tuple, str]]:
    errs = []
    where = ("models", key)
    arch = model["arch"]
    if known is not None and arch not in known:
        errs.append((where + ("arch",), f"unknown model {arch!r}; registered: "
                     f"{', '.join(sorted(known))}"))
    layers = _fusion_layers(registry, arch) if (known is None or arch in known) else None
    if layers is not None and model["stride"] > layers:
        errs.append((where + ("stride",), f"stride {model['stride']} is impossible for {arch} "
                     f"with {layers} fusion layers; use 1..{layers}"))
    for i, stage in enumerate(model["pretrain"]):
        if stage not in cfg["pretrain"]:
            errs.append((where + ("pretrain", i), f"unknown pretrain stage {stage!r}; "
                         f"defined: {', '.join(cfg['pretrain']) or 'none'}"))
    ckpts = list(model["pretrain"])
    for i, job in enumerate(model["finetune"]):
        if job not in cfg["finetune"]:
            errs.append((where + ("finetune", i), f"unknown fine-tuning job {job!r}; "
                         f"defined: {', '.join(cfg['finetune'])}"))
            continue
        init = cfg["finetune"][job]["init"]
        if init not in ckpts:
            errs.append((where + ("finetune", i), f"job {job!r} starts from {init!r}, which "
                         f"model {key!r} does not build before it (it builds, in order: "
                         f"{', '.join(ckpts) or 'nothing'})"))
        ckpts.append(job)
    for i, job in enumerate(model["evaluate"]):
        if job not in cfg["evaluate"]:
            errs.append((where + ("evaluate", i), f"unknown evaluation job {job!r}; "
                         f"defined: {', '.join(cfg['evaluate'])}"))
        elif cfg["evaluate"][job]["checkpoint"] not in ckpts:
            errs.append((where + ("evaluate", i), f"job {job!r} evaluates "
                         f"{cfg['evaluate'][job]['checkpoint']!r}, which model {key!r} does "
                         f"not build (it builds: {', '.join(ckpts) or 'nothing'})"))
    return errs


def _fusion_layers(registry, arch: str) -> int | None:
    if registry is None:
        return _FALLBACK_FUSION_LAYERS.get(arch)
    try:
        return int(registry.get_config(arch).fusion_layers)
    except Exception:  # noqa: BLE001 - reported as an unknown model instead
        return None


def check_semantics(cfg: dict, source: str = "<config>") -> None:
    """Raise ConfigError if the (schema-valid) config has semantic errors (used by the Snakefile)."""
    errors = semantic_errors(cfg)
    if errors:
        raise ConfigError(_format(errors, source, _read(source)))


def _read(source: str) -> str | None:
    try:
        return Path(source).read_text(encoding="utf-8")
    except OSError:
        return None


# --------------------------------------------------------------------------- resolution


def _merge(base: dict, over: dict) -> dict:
    """Recursive dict update (nested sections such as `scst` merge key by key)."""
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = copy.deepcopy(v)
    return base


def enabled_models(cfg: dict) -> dict[str, dict]:
    """Model key -> model entry, for models not switched off with `enabled: false`."""
    return {k: m for k, m in cfg["models"].items() if m.get("enabled", True)}


def model_settings(cfg: dict, model_key: str) -> dict:
    """{'arch', 'schedule', 'stride'} of a model key of the config (what `build_model` needs).
    Only model keys: an architecture name would be ambiguous (mplug_base and mplug_base_4m share
    one) and provenance would record the wrong key."""
    models = cfg.get("models") or {}
    if model_key not in models:
        raise ConfigError(f"model {model_key!r} is not a model key of the run config; its models: "
                          f"{', '.join(models) or 'none'}")
    m = models[model_key]
    return {"arch": m["arch"], "schedule": m.get("schedule", "official"), "stride": m["stride"]}


def scratch_init(cfg: dict, model_key: str) -> dict[str, str] | None:
    """{'clip': path, 'bert': path} a model's first pretrain stage starts from (paper 5.1), or
    None with `pretrained.init: random`."""
    init = cfg["pretrained"].get("init")
    if init == "random":
        return None
    arch = model_settings(cfg, model_key)["arch"]
    if not init or arch not in init.get("clip", {}):
        raise ConfigError(f"no CLIP/BERT init weights for {model_key} ({arch}): set pretrained.init."
                          f"clip.{arch} and pretrained.init.bert, or pretrained.init: random")
    return {"clip": init["clip"][arch], "bert": init["bert"]}


def resource_source(cfg: dict, path: str) -> str | None:
    """The download source whose folder (resources_dir/<source>/) holds `path`, if any."""
    rel = os.path.relpath(path, cfg["data"]["resources_dir"])
    head = rel.split(os.sep, 1)[0]
    if head in ("..", ".") or os.path.isabs(rel):
        return None
    try:
        from mplug.data.sources import SOURCES
    except ImportError:  # like the model registry: optional for config checks
        return None
    return head if head in SOURCES else None


def train_settings(cfg: dict, section: str, name: str, model_key: str) -> dict:
    """Effective training settings of a pretrain stage (section='pretrain') or fine-tuning job
    (section='finetune') for one model: `train`, then `overrides[arch]`, then (with
    `hparams: paper`) `paper`."""
    if section not in ("pretrain", "finetune"):
        raise ConfigError(f"section must be 'pretrain' or 'finetune', not {section!r}")
    job = _get(cfg, (section, name))
    arch = model_settings(cfg, model_key)["arch"]
    out = copy.deepcopy(job["train"])
    _merge(out, job.get("overrides", {}).get(arch, {}))
    if cfg["hparams"] == "paper":
        _merge(out, job.get("paper", {}))
    return out


def eval_settings(cfg: dict, job: str, model_key: str) -> dict:
    """Effective generation/inference settings of an evaluation job for one model."""
    entry = _get(cfg, ("evaluate", job))
    arch = model_settings(cfg, model_key)["arch"]
    out = copy.deepcopy(entry.get("generation", {}))
    _merge(out, entry.get("overrides", {}).get(arch, {}))
    if cfg["hparams"] == "paper":
        _merge(out, entry.get("paper", {}))
    return out


def _get(cfg: dict, path: tuple) -> Any:
    node = cfg
    for i, part in enumerate(path):
        if not isinstance(node, dict) or part not in node:
            have = ", ".join(node) if isinstance(node, dict) else "nothing"
            raise ConfigError(f"{key_path(path[:i + 1])} is not in the run config "
                              f"(defined: {have})")
        node = node[part]
    return node


# ------------------------------------------------------------------------- run layout


def data_root(cfg: dict) -> str:
    """What `--data` gets: a folder with one sub-folder per normalised dataset."""
    return f"data/{cfg['run']}"


def _seed_dir(cfg: dict, seed: int | None) -> str:
    """'' for the run's own seed, else '/seed<N>': a fine-tuning seed's sub-folder."""
    return "" if seed is None or seed == cfg["seed"] else f"/seed{seed}"


def checkpoint_dir(cfg: dict, model_key: str, name: str, seed: int | None = None) -> str:
    """Output folder of a pretrain stage or fine-tuning job of a model; a fine-tuning job run
    with another seed than the run's (evaluate.<job>.seeds) has a sub-folder seed<N>."""
    if name in cfg["pretrain"]:
        return f"results/{cfg['run']}/{model_key}/pretrain/{name}"
    return f"results/{cfg['run']}/{model_key}/finetune/{name}{_seed_dir(cfg, seed)}"


def checkpoint_path(cfg: dict, model_key: str, name: str, seed: int | None = None) -> str:
    return f"{checkpoint_dir(cfg, model_key, name, seed)}/model.safetensors"


def eval_json(cfg: dict, model_key: str, job: str, split: str, seed: int | None = None) -> str:
    """Fine-tuned and zero-shot evaluations share one folder (`eval/`), as the report reads;
    the evaluation of another fine-tuning seed than the run's sits in a sub-folder seed<N>."""
    return f"results/{cfg['run']}/{model_key}/eval/{job}/{split}{_seed_dir(cfg, seed)}/metrics.json"


def eval_seeds(cfg: dict, job: str) -> list[int]:
    """The fine-tuning seeds an evaluation job runs: evaluate.<job>.seeds, else the run's seed."""
    return list(cfg["evaluate"][job].get("seeds") or [cfg["seed"]])


def other_seeds(cfg: dict, job: str) -> list[int]:
    """eval_seeds without the run's own (whose files keep the plain paths)."""
    return [s for s in eval_seeds(cfg, job) if s != cfg["seed"]]


def finetune_seeds(cfg: dict, job: str) -> list[int]:
    """The other seeds than the run's that fine-tuning `job` runs with: those of every
    evaluation whose checkpoint's chain (finetune_chain) holds it."""
    seeds = {s for name, ev in cfg["evaluate"].items() if job in finetune_chain(cfg, ev["checkpoint"])
             for s in other_seeds(cfg, name)}
    return sorted(seeds)


def finetune_chain(cfg: dict, job: str) -> list[str]:
    """The fine-tuning job and the fine-tuning jobs it starts from (init), nearest first."""
    chain = []
    while job in cfg["finetune"]:
        chain.append(job)
        job = cfg["finetune"][job]["init"]
    return chain


def bench_json(cfg: dict, name: str) -> str:
    return f"results/{cfg['run']}/bench/{name}.json"


def data_stats(cfg: dict, dataset: str) -> str:
    return f"data/{cfg['run']}/{dataset}/stats.json"


def synth_manifest(cfg: dict) -> str:
    return f"{data_root(cfg)}/manifest.json"


def rule_log(cfg: dict, rule: str, *parts: str) -> str:
    """Log of one rule's job: `logs/<run>/<rule>/<part>/.../<last part>.log` (the shape `_log`
    in workflow/rules/common.smk gives every rule, e.g. evaluate/<model>/<job>/<split>.log)."""
    return "/".join(("logs", cfg["run"], rule, *parts)) + ".log"


def rule_benchmark(cfg: dict, rule: str, *parts: str) -> str:
    """A job's Snakemake `benchmark:` TSV, beside its log (the rules' `benchmark:` directives)."""
    return "/".join(("logs", cfg["run"], rule, *parts)) + ".bench.tsv"


def rule_resources(cfg: dict, rule_name: str, job_resources: dict | None = None) -> dict:
    """A rule's resources as the workflow uses them: resources.default, then resources.rules.<rule>,
    then the job's own `resources:` (workflow/rules/common.smk's merged_resources calls this)."""
    own = dict(cfg["resources"].get("rules", {}).get(rule_name, {}))
    own.update(job_resources or {})
    res = dict(cfg["resources"]["default"])
    res.update(own)
    res["own_partition"] = bool(own.get("slurm_partition"))
    return res
