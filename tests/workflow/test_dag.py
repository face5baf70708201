"""Dry runs of the DAG: the paper's run on SLURM, the smoke run, one table, the official path."""
from __future__ import annotations

import re

import yaml

from _dryrun import ROOT, job_stats, snakemake

PAPER_FINETUNE = ("vqa", "caption_ce", "caption_scst", "retrieval_coco", "retrieval_flickr",
                  "grounding_mixed", "grounding_refcoco", "grounding_refcoco_plus",
                  "grounding_refcocog", "nlvr2", "snli_ve")


def test_paper_run_lists_every_stage(paper_dry_run):
    out = paper_dry_run
    stats = job_stats(out)
    for rule in ("download", "preprocess", "pretrain", "finetune", "evaluate", "zeroshot",
                 "bench", "report", "all"):
        assert stats.get(rule, 0) > 0, f"rule {rule} missing from the paper DAG: {stats}"
    assert "synth" not in stats and "convert_official" not in stats
    # 14M pretraining then continued 4M pretraining from it
    assert "results/paper/mplug_large/pretrain/pretrain_14m/model.safetensors" in out
    assert re.search(r"--stage pretrain_4m --data data/paper --out results/paper/mplug_large/"
                     r"pretrain/pretrain_4m --init results/paper/mplug_large/pretrain/"
                     r"pretrain_14m/model.safetensors", out)
    for job in PAPER_FINETUNE:
        assert f"results/paper/mplug_large/finetune/{job}/model.safetensors" in out, job
    # SCST starts from the CE model; per-dataset grounding from the mixed one
    assert re.search(r"--stage caption_scst .* --init results/paper/mplug_large/finetune/"
                     r"caption_ce/model.safetensors", out)
    assert re.search(r"--stage grounding_refcocog .* --init results/paper/mplug_large/finetune/"
                     r"grounding_mixed/model.safetensors", out)
    for path in ("mplug_large/eval/caption/test", "mplug_large/eval/nlvr2/test_p",
                 "mplug_large/eval/grounding_refcocog/test_u", "mplug_base/eval/vqa/test",
                 "mplug_base_4m/eval/vqa/test", "mplug_large/eval/video_retrieval/test",
                 "mplug_base/eval/video_qa_msvd/test", "mplug_large/eval/video_caption/test"):
        assert f"results/paper/{path}/metrics.json" in out, path
    for bench in ("fusion", "train", "generate", "retrieval"):
        assert re.search(rf"mplug bench {bench} [^\n]*--json results/paper/bench/{bench}.json", out)
    assert re.search(r"mplug bench train +--batch auto ", out)  # Table 6 as the paper ran it
    assert re.search(r"mplug report --config \S*config/config.yaml --results results/paper", out)


def test_first_pretrain_stages_wait_for_the_clip_and_bert_downloads(paper_dry_run):
    """The init weights are rule inputs made by the download rule (one layout: resources/<source>/),
    not files looked for when the DAG is built."""
    for source in ("clip_vit_b16", "clip_vit_l14", "bert_base_uncased"):
        assert f"resources/{source}/download.json" in paper_dry_run, source
    block = paper_dry_run.split("wildcards: model=mplug_large, stage=pretrain_14m", 1)[0]
    inputs = block.rsplit("rule pretrain:", 1)[1].split("input:", 1)[1].split("\n", 1)[0]
    assert "resources/clip_vit_l14/download.json" in inputs and "resources/bert_base_uncased/download.json" in inputs


def test_every_rule_passes_the_model_key_and_the_job(paper_dry_run):
    """Training and evaluation commands name the config's model key (mplug_base_4m is not
    mplug_base, though both are arch mplug_base) and the job; the CLI resolves the rest."""
    commands = re.findall(r"mplug (?:train \w+|evaluate)\b[^\n]*", paper_dry_run)
    assert len(commands) > 40, commands[:3]
    for cmd in commands:
        model = re.search(r"--model (\S+)", cmd)
        job = re.search(r"--(?:job|stage) (\S+)", cmd)
        assert model and model.group(1) in ("mplug_large", "mplug_base", "mplug_base_4m"), cmd
        assert job, cmd
    assert any("evaluate" in c and "--model mplug_base_4m --job vqa" in c for c in commands)
    assert any("finetune vqa" in c and "--model mplug_base_4m --stage vqa" in c for c in commands)
    assert not any(re.search(r"--(beam|k-test|frames|prompt) ", c) for c in commands)  # from the config


def test_paper_run_slurm_resources(paper_dry_run):
    """Pretraining: 2 nodes x 8 A100, 8 tasks per node (no --ntasks-per-gpu: each rank picks
    cuda:LOCAL_RANK itself), ranks started by srun inside the job."""
    block = paper_dry_run.split("wildcards: model=mplug_large, stage=pretrain_14m", 1)[1]
    resources = block.split("resources:", 1)[1].split("\n", 1)[0]
    for item in ("nodes=2", "gres=gpu:a100:8", "tasks_per_gpu=0", "tasks=16", "mpi=srun",
                 "--ntasks-per-node=8",
                 # 3 days asked, capped by resources.cluster.max_runtime: the trainer checkpoints
                 # 600 s before the limit (its own SIGALRM) and the job requeues itself
                 "runtime=1440", "slurm_partition=gpu"):
        assert item in resources, (item, resources)
    # sbatch --signal would reach the job step's snakemake, which USR1 kills (tests/slurm)
    assert "--signal" not in resources
    assert "srun --kill-on-bad-exit=1 " in block.split("Shell command:", 1)[1].split("\n", 1)[0]


def test_only_gpu_rules_ask_for_gpus(paper_dry_run):
    """A CPU rule asking for a GPU burns a GPU slot for hours (download, preprocess, report); a GPU
    rule without one cannot run. Every job of the paper DAG's dry run, by its rule."""
    gpu_rules = {"pretrain", "finetune", "evaluate", "zeroshot", "bench"}
    seen = set()
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", paper_dry_run)[1:]:
        rule = re.match(r"(?:local)?rule (\w+):", block).group(1)
        res = re.search(r"\n\s+resources: ([^\n]*)", block)
        if res is None:
            continue
        seen.add(rule)
        asks_gpu = re.search(r"gres=gpu:a100:\d+", res.group(1)) is not None
        assert asks_gpu == (rule in gpu_rules), (rule, res.group(1))
        if "slurm_partition" not in res.group(1):  # a local rule: the aggregating targets only
            assert rule in ("all", "figures") or rule.startswith("table"), (rule, res.group(1))
        elif not asks_gpu:
            assert "slurm_partition=cpu" in res.group(1), (rule, res.group(1))
    assert gpu_rules | {"download", "preprocess", "report"} <= seen, seen


def test_local_rules_are_the_tiny_ones(monkeypatch):
    """Only targets run on the submit host. Downloads are CPU-partition jobs (img2dataset's
    processes do not belong on a login node); training, evaluation, preprocessing too."""
    from pathlib import Path

    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

    monkeypatch.chdir(ROOT)
    with SnakemakeApi(OutputSettings(quiet=True)) as api:
        wf = api.workflow(snakefile=Path("Snakefile"), resource_settings=ResourceSettings(),
                          config_settings=ConfigSettings())
        local = set(wf._workflow._localrules)
    assert {"all", "table03"} <= local
    assert not {"download", "pretrain", "finetune", "evaluate", "preprocess"} & local


def test_smoke_run_uses_the_synthetic_world(smoke_dry_run):
    stats = job_stats(smoke_dry_run)
    assert stats["synth"] == 1 and stats["pretrain"] == 2 and stats["finetune"] == 11
    assert "download" not in stats and "preprocess" not in stats
    assert stats["evaluate"] + stats["zeroshot"] == 26 and stats["bench"] == 4
    # evaluate.snli_ve.seeds [0, 1]: snli_ve fine-tuned once more (seed 1) and evaluated on both splits
    assert stats["finetune_seed"] == 1 and stats["evaluate_seed"] == 2
    assert "--stage snli_ve --data data/smoke --init results/smoke/mplug_smoke/pretrain/pretrain_14m/" \
           "model.safetensors --out results/smoke/mplug_smoke/finetune/snli_ve/seed1 --resume latest --seed 1" \
        in smoke_dry_run
    assert "--out results/smoke/mplug_smoke/eval/snli_ve/test/seed1/metrics.json" in smoke_dry_run
    assert "mplug data synth --out data/smoke --seed 0 --scale tiny" in smoke_dry_run
    assert " --quick " in smoke_dry_run
    assert "--smoke" in smoke_dry_run  # report banner
    assert "srun" not in smoke_dry_run and "torchrun" not in smoke_dry_run


def test_seeded_chain_starts_each_seed_from_its_own_init_job(tmp_path):
    """evaluate.caption.seeds: caption_scst starts from caption_ce, so both run once more per
    seed, the seed's SCST from the seed's cross-entropy run; pretraining runs once."""
    cfg = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    cfg["evaluate"]["caption"]["seeds"] = [0, 7]
    path = tmp_path / "seeds.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = snakemake("table01", "-n", "-p", "--profile", "profiles/smoke", "--configfile", str(path))
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    stats = job_stats(out)
    assert stats["finetune_seed"] == 2 and stats["evaluate_seed"] == 1, stats
    assert stats["pretrain"] == 2 and stats["finetune"] == 2, stats  # each stage and job once, as without seeds
    assert "--init results/smoke/mplug_smoke/finetune/caption_ce/seed7/model.safetensors " \
           "--out results/smoke/mplug_smoke/finetune/caption_scst/seed7 --resume latest --seed 7" in out
    assert "eval/caption/test/seed7/metrics.json" in out and "eval/caption_ce/test/seed7" not in out


def test_table03_builds_only_what_it_needs():
    res = snakemake("table03", "-n", "--profile", "profiles/smoke", "--configfile",
                    "config/smoke.yaml")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    stats = job_stats(out)
    assert set(stats) == {"synth", "pretrain", "finetune", "evaluate", "table03"}, stats
    assert stats["pretrain"] == 1 and stats["finetune"] == 2 and stats["evaluate"] == 2
    assert "finetune/retrieval_coco/" in out and "finetune/retrieval_flickr/" in out
    assert "pretrain_4m" not in out and "finetune/vqa/" not in out


def test_official_checkpoints_skip_pretraining(tmp_path):
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg["pretrained"]["source"] = "official"
    cfg["models"]["mplug_base_4m"]["enabled"] = False   # no released 4M-only base checkpoint
    for model, stages in cfg["pretrained"]["official"].items():
        for stage in stages:
            pth = tmp_path / f"{model}_{stage}.pth"
            pth.write_bytes(b"")
            stages[stage] = str(pth)
    path = tmp_path / "official.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = snakemake("table01", "-n", "-p", "--configfile", str(path))
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    stats = job_stats(out)
    assert "pretrain" not in stats and stats["convert_official"] == 1, stats
    assert f"mplug convert --config {path} --model mplug_large {tmp_path}/mplug_large_pretrain_4m.pth " \
           "results/paper/mplug_large/pretrain/pretrain_4m/model.safetensors" in out
    assert "mplug_base_4m" not in out


# Documented exceptions (config/README.md, "Lint"): shared-filesystem folder arguments of the CLI
# contract, and helper functions kept in common.smk.
ALLOWED_LINTS = ("is a prefix of input or output file but hardcoded",
                 "Mixed rules and functions in same snakefile")


def test_lint_clean_but_documented_exceptions():
    for args in ((), ("--configfile", "config/smoke.yaml")):
        res = snakemake("--lint", *args)
        findings = re.findall(r"^    \* (.+?):?$", res.stdout + res.stderr, re.M)
        unexpected = [f for f in findings if not any(a in f for a in ALLOWED_LINTS)]
        assert not unexpected, unexpected
