# Helpers shared by every rule file: the validated config, run layout, per-rule resources,
# the launcher for multi-GPU rules and the table -> inputs map. Plain Python; no rules here.
import hashlib
import json
import os
import shlex
import shutil
import sys
from pathlib import Path

from mplug import config as mcfg

mcfg.check_semantics(config, CONFIGFILE)

RUN = config["run"]
MODELS = mcfg.enabled_models(config)
RESOURCES_DIR = config["data"]["resources_dir"]
DATA_ROOT = mcfg.data_root(config)
SYNTH = config["data"]["source"] == "synth"
OFFICIAL = config["pretrained"]["source"] == "official"
# The mplug command: the one installed beside the Python running Snakemake (a venv need not be
# activated); with --use-conda, the repository on PYTHONPATH inside the rule's env.
_CONDA = "conda" in str(getattr(workflow.deployment_settings, "deployment_method", ""))
if _CONDA:
    MPLUG = f"PYTHONPATH={shlex.quote(str(Path(workflow.basedir).resolve()))} python -m mplug.cli"
else:
    _venv_mplug = Path(sys.executable).parent / "mplug"
    MPLUG = str(_venv_mplug) if _venv_mplug.exists() else (shutil.which("mplug") or "mplug")


def _alt(names):
    """Wildcard regex matching exactly these names ('+' and friends escaped)."""
    import re

    return "|".join(re.escape(n) for n in sorted(set(names))) or "NO_MATCH"


def _log(rule_name, *parts):
    return os.path.join("logs", RUN, rule_name, *parts[:-1], parts[-1] + ".log")


# ------------------------------------------------------------------------------ data


def dataset_inputs(datasets):
    """Files that prove the datasets are ready (synth: the world's manifest)."""
    if SYNTH:
        return [mcfg.synth_manifest(config)]
    return [mcfg.data_stats(config, d) for d in datasets]


def download_marker(name):
    return f"{RESOURCES_DIR}/{name}/download.json"


# ------------------------------------------------------------------------ checkpoints


def ckpt(model, name):
    return mcfg.checkpoint_path(config, model, name)


def ckpt_dir(model, name):
    return mcfg.checkpoint_dir(config, model, name)


def pretrain_init(model, stage):
    """The previous pretrain stage of this model, or None (start from CLIP-ViT + BERT)."""
    stages = config["models"][model]["pretrain"]
    i = stages.index(stage)
    return ckpt(model, stages[i - 1]) if i > 0 else None


def scratch_init_flags(model, stage):
    """`--clip/--bert` for a first pretrain stage when both weights are present on disk (the
    trainer then starts from CLIP-ViT + BERT-base, as the paper; otherwise from random init,
    which its log states)."""
    if pretrain_init(model, stage):
        return ""
    init = config["pretrained"].get("init", {})
    clip = init.get("clip", {}).get(config["models"][model]["arch"])
    bert = init.get("bert")
    if clip and bert and Path(clip).exists() and Path(bert).exists():
        return f"--clip {shlex.quote(clip)} --bert {shlex.quote(bert)}"
    return ""


def settings_hash(obj):
    """Short digest of resolved settings: a rule reruns when its own settings change
    (Snakemake's `params` rerun trigger), not when an unrelated key does."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


# ------------------------------------------------------------------------- resources


def merged_resources(rule_name, job_resources=None):
    res = dict(config["resources"]["default"])
    res.update(config["resources"].get("rules", {}).get(rule_name, {}))
    res.update(job_resources or {})
    return res


def slurm_resources(res):
    """Config resources -> Snakemake resources for snakemake-executor-plugin-slurm.

    GPUs are requested per node (`gres=gpu[:model]:N`); multi-GPU rules get one task per GPU
    (`tasks_per_gpu=1`, `tasks=nodes*gpus`) and `mpi=srun`, which tells the plugin not to wrap
    the command in `srun -n1`: the rule's own launcher starts every rank."""
    out = {"nodes": res.get("nodes", 1), "mem_mb": res["mem_mb"], "runtime": res["runtime"],
           "cpus_per_task": res["cpus_per_task"]}
    for key in ("slurm_partition", "slurm_account", "constraint", "slurm_extra"):
        if res.get(key):
            out[key] = res[key]
    gpus = res.get("gpus_per_node", 0)
    if gpus:
        model = res.get("gpu_model")
        out["gres"] = f"gpu:{model}:{gpus}" if model else f"gpu:{gpus}"
        out["tasks_per_gpu"] = 1
        out["tasks"] = out["nodes"] * gpus
        if out["tasks"] > 1 and config.get("launcher", "srun") == "srun":
            out["mpi"] = "srun"
    return out


def launcher(res):
    """Prefix that starts one rank per GPU; empty for single-process rules."""
    gpus, nodes = res.get("gpus_per_node", 0), res.get("nodes", 1)
    kind = config.get("launcher", "srun")
    if gpus * nodes <= 1 or kind == "none":
        return ""
    if kind == "srun":
        # inherits the allocation's --ntasks; each rank reads SLURM_PROCID/SLURM_NTASKS
        return "srun --kill-on-bad-exit=1"
    if nodes > 1:
        raise ValueError("launcher torchrun starts ranks on one node only; use launcher: srun "
                         f"or resources nodes: 1 (asked for {nodes} nodes)")
    return f"torchrun --standalone --nproc_per_node={gpus} --no-python"


def res_fn(rule_name, job_of=None):
    """Snakemake `resources:` for a rule; per-job overrides come from `job_of(wildcards)`."""

    def get(key):
        def fn(wildcards):
            job_res = job_of(wildcards) if job_of else None
            return slurm_resources(merged_resources(rule_name, job_res)).get(key)

        return fn

    keys = ("nodes", "mem_mb", "runtime", "cpus_per_task", "slurm_partition", "slurm_account",
            "constraint", "slurm_extra", "gres", "tasks_per_gpu", "tasks", "mpi")
    static = slurm_resources(merged_resources(rule_name))
    # a key is declared when the rule-level or any job-level setting uses it
    jobs = [None]
    if job_of is not None:
        jobs += [s.get("resources") for sec in ("pretrain", "finetune", "evaluate", "bench")
                 for s in config[sec].values()]
    used = set(static)
    for j in jobs:
        used |= set(slurm_resources(merged_resources(rule_name, j)))
    return {k: get(k) for k in keys if k in used}


def threads_of(rule_name, job_of=None):
    def fn(wildcards):
        job_res = job_of(wildcards) if job_of else None
        return merged_resources(rule_name, job_res)["cpus_per_task"]

    return fn


def launcher_of(rule_name, job_of=None):
    def fn(wildcards):
        job_res = job_of(wildcards) if job_of else None
        return launcher(merged_resources(rule_name, job_res))

    return fn


# ------------------------------------------------------------------------- targets


def all_pretrain_outputs():
    return [ckpt(m, s) for m, e in MODELS.items() for s in e["pretrain"]]


def all_finetune_outputs():
    return [ckpt(m, j) for m, e in MODELS.items() for j in e["finetune"]]


def all_eval_outputs(zeroshot):
    out = []
    for m, e in MODELS.items():
        for job in e["evaluate"]:
            entry = config["evaluate"][job]
            if entry.get("zeroshot", False) == zeroshot:
                out += [mcfg.eval_json(config, m, job, s) for s in entry["splits"]]
    return out


def all_bench_outputs():
    return [mcfg.bench_json(config, b) for b, e in config["bench"].items() if e["enabled"]]


def table_inputs(n):
    """The files the report reads for Table n: mplug.config.table_inputs resolves the report's
    own map (mplug.report.mapping.CELLS) in this run's layout, so the two cannot disagree."""
    return mcfg.table_inputs(config, n)


def report_inputs():
    out = []
    for n in config["report"]["tables"]:
        out += table_inputs(n)
    if config["report"].get("figures", True):
        out += mcfg.figure_inputs(config)
    return list(dict.fromkeys(out))


# ------------------------------------------------------------------------ evaluation

_GEN_TASKS = ("vqa", "caption", "nocaps", "video_caption")
_PROMPT_TASKS = ("caption", "nocaps", "video_caption")
_VIDEO_TASKS = ("video_retrieval", "video_caption", "video_qa_msrvtt", "video_qa_msvd")


def eval_flags(job, model):
    """`mplug evaluate` flags from the job's resolved generation settings (only the flags the
    task accepts; the rest of the settings are the evaluator's official defaults)."""
    task = config["evaluate"][job]["task"]
    gen = mcfg.eval_settings(config, job, model)
    flags = []

    def add(flag, key):
        if gen.get(key) is not None:
            flags.extend([flag, shlex.quote(str(gen[key]))])

    if task in _GEN_TASKS:
        add("--beam", "beam_size")
        add("--max-length", "max_length")
        add("--min-length", "min_length")
    if task in _PROMPT_TASKS:
        add("--prompt", "prompt")
    if task in _VIDEO_TASKS:
        add("--frames", "num_frames")
    add("--k-test", "k_test")
    add("--batch-size", "batch_size")
    add("--limit", "limit")
    if config.get("tokenizer"):
        flags.extend(["--tokenizer", shlex.quote(config["tokenizer"])])
    return " ".join(flags)


def _pretrain_job(wc):
    return config["pretrain"][wc.stage].get("resources")


def _finetune_job(wc):
    return config["finetune"][wc.job].get("resources")


def _bench_job(wc):
    return config["bench"][wc.bench].get("resources")


def _eval_job(wc):
    return config["evaluate"][wc.job].get("resources")


def eval_job_names(zeroshot):
    return [j for j, e in config["evaluate"].items() if e.get("zeroshot", False) == zeroshot]
