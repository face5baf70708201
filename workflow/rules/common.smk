# Helpers the rules share (the validated config, run layout, per-rule resources, the launcher
# for multi-GPU jobs, the table -> inputs map). Plain Python; no rules here.
import hashlib
import json
import os
import shlex
import shutil
import sys
from pathlib import Path

from mplug import config as mcfg
from snakemake.exceptions import WorkflowError
from mplug.report import mapping as report_map

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
    MPLUG = shlex.quote(
        str(_venv_mplug) if _venv_mplug.exists() else (shutil.which("mplug") or "mplug")
    )


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


def root_of(paths, root):
    """Where folder `root` (e.g. results/RUN) is as this job sees its files: the first path
    below it, cut after `root`. Params derived this way stay right when a storage plugin maps the
    inputs/outputs below a local prefix (no shared file system), unlike a hard-coded `root`."""
    root = root.rstrip(os.sep)
    for path in map(str, paths):
        at = path.find(root + os.sep)
        if at >= 0:
            return path[: at + len(root)]
    return root


def ckpt(model, name, seed=None):
    return mcfg.checkpoint_path(config, model, name, seed)


def ckpt_dir(model, name, seed=None):
    return mcfg.checkpoint_dir(config, model, name, seed)


def seeded_init(wc):
    """A seeded fine-tune starts from its init job's run of the same seed (a pretrain stage has
    one run)."""
    init = config["finetune"][wc.job]["init"]
    return ckpt(wc.model, init, int(wc.seed) if init in config["finetune"] else None)


def pretrain_init(model, stage):
    """The previous pretrain stage of this model, or None (start from CLIP-ViT + BERT)."""
    stages = config["models"][model]["pretrain"]
    i = stages.index(stage)
    return ckpt(model, stages[i - 1]) if i > 0 else None


def resource_inputs(paths):
    """Rule inputs for files below resources/: the download job of each file's source folder
    (`mplug data download`, or `mplug data synth-weights` on the synthetic world), else the
    files themselves (a path outside the download layout the user provides)."""
    out = []
    for path in paths:
        source = mcfg.resource_source(config, path)
        out.append(download_marker(source) if source else path)
    return sorted(set(out))


def init_weight_inputs(model, stage):
    """A first pretrain stage's CLIP-ViT + BERT weights (their download jobs); for a later stage
    or with `pretrained.init: random`: none (the trainer reads the paths from the config)."""
    if pretrain_init(model, stage):
        return []
    return resource_inputs((mcfg.scratch_init(config, model) or {}).values())


def tokenizer_inputs():
    """The tokenizer folder's download job (`tokenizer: resources/bert_base_uncased`): every
    training and evaluation job reads it, with or without pretraining here."""
    tok = config.get("tokenizer")
    return resource_inputs([tok]) if tok else []


def official_checkpoint(model, stage):
    return config["pretrained"]["official"][model][stage]


def settings_hash(obj):
    """Short digest of resolved settings: a rule reruns when its own settings change
    (Snakemake's `params` rerun trigger), not when an unrelated key does."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


# ------------------------------------------------------------------------- resources


def merged_resources(rule_name, job_resources=None):
    from mplug.config import rule_resources

    return rule_resources(config, rule_name, job_resources)


CLUSTER = config["resources"].get("cluster", {})
# Snakemake priorities order jobs inside Snakemake only; SLURM gets them as `--nice` (lower
# nice = earlier start) so the critical path (synth, pretraining) is queued ahead of the rest.
PRIORITY = {"synth": 50, "pretrain": 40}
NICE_BASE = max(PRIORITY.values())
# Rules that checkpoint on SIGUSR1 / SIGTERM and exit 75 (mplug.train.EXIT_PREEMPTED).
TRAIN_RULES = ("pretrain", "finetune")


def ranks(res):
    """(tasks per node, total tasks): one rank per GPU, or `tasks_per_node` CPU ranks."""
    per_node = res.get("tasks_per_node") or max(res.get("gpus_per_node", 0), 1)
    return per_node, res.get("nodes", 1) * per_node


def cpus_and_mem(res):
    """(CPUs per task, memory per node in MB): per-GPU values when the rule has GPUs, so a
    request follows the GPU count and fits nodes of any size."""
    gpus = res.get("gpus_per_node", 0)
    cpus = res.get("cpus_per_gpu") if gpus and res.get("cpus_per_gpu") else res["cpus_per_task"]
    mem = res["mem_mb_per_gpu"] * gpus if gpus and res.get("mem_mb_per_gpu") else res["mem_mb"]
    return cpus, mem


def runtime_of(res):
    """Wall time in minutes, capped by resources.cluster.max_runtime (training resumes across
    jobs: it checkpoints on the early signal and requeues itself)."""
    cap = CLUSTER.get("max_runtime")
    return min(res["runtime"], cap) if cap else res["runtime"]


def partition_of(res):
    """A CPU-only job goes to resources.cluster.cpu_partition when one is set (unless its own
    resources name a partition); everything else to slurm_partition."""
    if (
        not res.get("gpus_per_node", 0)
        and CLUSTER.get("cpu_partition")
        and not res.get("own_partition")
    ):
        return CLUSTER["cpu_partition"]
    return res.get("slurm_partition")


def slurm_resources(res, rule_name=None):
    """Config resources -> Snakemake resources for snakemake-executor-plugin-slurm.

    GPUs are requested per node (`gres=gpu[:model]:N`). A job with several ranks gets
    `tasks=nodes*per_node` and `mpi=srun`: the plugin then passes `--ntasks` and runs the rule in
    the batch shell, whose launcher (`launcher()`) starts every rank with explicit geometry.
    `tasks_per_gpu=0` keeps the plugin from adding `--ntasks-per-gpu` (which binds one GPU per
    task and clashes with one process per GPU choosing `cuda:LOCAL_RANK`)."""
    cpus, mem = cpus_and_mem(res)
    out = {
        "nodes": res.get("nodes", 1),
        "mem_mb": mem,
        "runtime": runtime_of(res),
        "cpus_per_task": cpus,
    }
    partition = partition_of(res)
    if partition:
        out["slurm_partition"] = partition
    for key in ("slurm_account", "constraint"):
        if res.get(key):
            out[key] = res[key]
    extra = [res["slurm_extra"]] if res.get("slurm_extra") else []
    per_node, tasks = ranks(res)
    gpus = res.get("gpus_per_node", 0)
    if gpus:
        model = res.get("gpu_model")
        out["gres"] = f"gpu:{model}:{gpus}" if model else f"gpu:{gpus}"
        out["tasks_per_gpu"] = 0
    if tasks > 1:
        out["tasks"] = tasks
        out["mpi"] = "srun"
        extra.append(f"--ntasks-per-node={per_node}")
    nice = NICE_BASE - PRIORITY.get(rule_name, 0)
    if rule_name and nice > 0:
        extra.append(f"--nice={nice}")
    if extra:
        out["slurm_extra"] = " ".join(extra)
    return out


def launcher(res):
    """Prefix that starts every rank; empty for single-process rules.

    srun gets the whole geometry (nodes, tasks, tasks per node, CPUs per task) on its command
    line: the job-step plugin strips the SLURM_* variables of the allocation before the rule
    runs, so a bare `srun` would start one task. `--gpu-bind=none` lets each rank see the
    node's GPUs and pick `cuda:SLURM_LOCALID` (mplug.train.distributed)."""
    gpus, nodes = res.get("gpus_per_node", 0), res.get("nodes", 1)
    per_node, tasks = ranks(res)
    kind = config.get("launcher", "srun")
    if tasks <= 1 or kind == "none":
        return ""
    if kind == "srun":
        cpus, _ = cpus_and_mem(res)
        gpu = f" --gres=gpu:{gpus} --gpu-bind=none" if gpus else ""
        return (
            f"srun --kill-on-bad-exit=1 --nodes={nodes} --ntasks={tasks}"
            f" --ntasks-per-node={per_node} --cpus-per-task={cpus}{gpu}"
        )
    if nodes > 1:
        raise ValueError(
            "launcher torchrun starts ranks on one node only; use launcher: srun "
            f"or resources nodes: 1 (asked for {nodes} nodes)"
        )
    return f"torchrun --standalone --nproc_per_node={per_node} --no-python"


def _cluster_names():
    """[(partition|account, name, config key)] for every partition and account the config names."""
    out = []

    def add(path, res):
        for key, what in (("slurm_partition", "partition"), ("slurm_account", "account")):
            if (res or {}).get(key):
                out.append((what, str(res[key]), f"{path}.{key}"))

    add("resources.default", config["resources"]["default"])
    for name, res in config["resources"].get("rules", {}).items():
        add(f"resources.rules.{name}", res)
    for sec in ("pretrain", "finetune", "evaluate", "bench"):
        for job, entry in config[sec].items():
            add(f"{sec}.{job}.resources", entry.get("resources"))
    if CLUSTER.get("cpu_partition"):
        out.append(("partition", str(CLUSTER["cpu_partition"]), "resources.cluster.cpu_partition"))
    return out


def _query(cmd):
    import subprocess

    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.stdout.split() if res.returncode == 0 else None


def check_cluster(executor):
    """Before the first submission: every partition and account the config names exists on this
    cluster (and a job without a partition has a default one), else one message naming each
    config key: a wrong name would otherwise fail job after job in sbatch."""
    if executor != "slurm":
        return
    import getpass

    parts = _query(["sinfo", "-h", "-o", "%P"])  # the default partition carries a '*'
    known = {
        "partition": {p.rstrip("*") for p in parts} if parts else None,
        "account": _query(
            ["sacctmgr", "-n", "-P", "list", "assoc", f"user={getpass.getuser()}", "format=account"]
        ),
    }
    bad = [
        f"  {key}: {what} {name!r} is not one of this cluster's: "
        + ", ".join(sorted(set(known[what])))
        for what, name, key in _cluster_names()
        if known[what] and name not in known[what]
    ]
    if (
        parts
        and not any(p.endswith("*") for p in parts)
        and not config["resources"]["default"].get("slurm_partition")
    ):
        bad.append(
            "  resources.default.slurm_partition: not set, and this cluster has no "
            "default partition; choose one of " + ", ".join(sorted(known["partition"]))
        )
    if bad:
        raise WorkflowError(
            f"SLURM partition/account check of {CONFIGFILE} failed, nothing "
            "was submitted:\n" + "\n".join(bad)
        )


# Shell pieces shared by the rules. Snakemake deletes a job's log before every run of it (a
# rerun, a retry, a requeued SLURM job), so each attempt's log gets a second name,
# <log>.attempt-<UTC time>-<SLURM job id|local>, a hard link that keeps all it ever holds, even
# when the attempt is killed; <log> itself is the latest attempt.
ATTEMPT = (
    'echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) attempt on $(hostname),'
    ' SLURM job ${{SLURM_JOB_ID:-none}}" >> {log:q}; '
    "ln -f {log:q} {log:q}.attempt-$(date -u +%Y%m%dT%H%M%SZ)-${{SLURM_JOB_ID:-local}}"
    " 2>/dev/null || true; "
)
# A training rule that exited 75 (checkpoint written on the early signal or SIGTERM) inside a
# SLURM job puts the job back into the queue: it restarts with the same job id, resumes from the
# checkpoint, and costs no Snakemake retry. A user's `scancel` ends the job for good instead.
REQUEUE_ON_75 = (
    'if [ "$rc" -eq 75 ] && [ -n "${{SLURM_JOB_ID:-}}" ]; then'
    ' echo "== exit 75: requeueing SLURM job $SLURM_JOB_ID" >> {log:q};'
    ' scontrol requeue "$SLURM_JOB_ID" >> {log:q} 2>&1 && sleep 300; fi; exit $rc'
)


def logged(cmd):
    """A rule's shell command: this attempt's header, then `cmd` with its output appended to the log."""
    return f"{ATTEMPT}{cmd} >> {{log:q}} 2>&1"


def logged_training(cmd):
    """`logged` for a training command, whose exit 75 inside a SLURM job requeues the job."""
    return f"{ATTEMPT}rc=0; {cmd} >> {{log:q}} 2>&1 || rc=$?; {REQUEUE_ON_75}"


def res_fn(rule_name, job_of=None):
    """Snakemake `resources:` for a rule; per-job overrides come from `job_of(wildcards)`."""

    def get(key):
        def fn(wildcards):
            job_res = job_of(wildcards) if job_of else None
            return slurm_resources(merged_resources(rule_name, job_res), rule_name).get(key)

        return fn

    keys = (
        "nodes",
        "mem_mb",
        "runtime",
        "cpus_per_task",
        "slurm_partition",
        "slurm_account",
        "constraint",
        "slurm_extra",
        "gres",
        "tasks_per_gpu",
        "tasks",
        "mpi",
    )
    static = slurm_resources(merged_resources(rule_name), rule_name)
    # a key is declared when the rule-level or any job-level setting uses it
    jobs = [None]
    if job_of is not None:
        jobs += [
            s.get("resources")
            for sec in ("pretrain", "finetune", "evaluate", "bench")
            for s in config[sec].values()
        ]
    used = set(static)
    for j in jobs:
        used |= set(slurm_resources(merged_resources(rule_name, j), rule_name))
    return {k: get(k) for k in keys if k in used}


def threads_of(rule_name, job_of=None):
    def fn(wildcards):
        job_res = job_of(wildcards) if job_of else None
        return cpus_and_mem(merged_resources(rule_name, job_res))[0]

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
    return [
        ckpt(m, j, seed)
        for m, e in MODELS.items()
        for j in e["finetune"]
        for seed in [None, *mcfg.finetune_seeds(config, j)]
    ]


def all_eval_outputs(zeroshot):
    out = []
    for m, e in MODELS.items():
        for job in e["evaluate"]:
            entry = config["evaluate"][job]
            if entry.get("zeroshot", False) == zeroshot:
                out += [
                    mcfg.eval_json(config, m, job, s, seed)
                    for s in entry["splits"]
                    for seed in [None, *mcfg.other_seeds(config, job)]
                ]
    return out


def all_bench_outputs():
    return [mcfg.bench_json(config, b) for b, e in config["bench"].items() if e["enabled"]]


def table_inputs(n):
    """The files the report reads for Table n: the report's own map (mplug.report.mapping.CELLS)
    resolved in this run's layout, so the two cannot disagree."""
    return report_map.table_files(config, n)


def report_inputs():
    out = []
    for n in config["report"]["tables"]:
        out += table_inputs(n)
    if config["report"].get("figures", True):
        out += report_map.figure_files(config)
    return list(dict.fromkeys(out))


# ------------------------------------------------------------------ per-job resources


def _pretrain_job(wc):
    return config["pretrain"][wc.stage].get("resources")


def _finetune_job(wc):
    return config["finetune"][wc.job].get("resources")


def _bench_job(wc):
    return config["bench"][wc.bench].get("resources")


def _eval_job(wc):
    return config["evaluate"][wc.job].get("resources")


def seeded_finetune_jobs():
    return [j for j in config["finetune"] if mcfg.finetune_seeds(config, j)]


def seeded_eval_jobs():
    return [j for j in eval_job_names(zeroshot=False) if mcfg.other_seeds(config, j)]


def eval_job_names(zeroshot):
    return [j for j, e in config["evaluate"].items() if e.get("zeroshot", False) == zeroshot]
