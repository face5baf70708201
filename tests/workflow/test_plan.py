"""`mplug plan`: GPUs from the config's resources, durations from a measured bench JSON
(start-up + samples x the job's FLOPs / the bench's FLOP/s) or, without one, from the datasheet
peak x an assumed MFU; samples from stats.json or the datasets' documented sizes; plan vs actual
against the Snakemake `benchmark:` TSVs."""
import json
import math
from pathlib import Path

import pytest

from mplug import config as mcfg
from mplug import plan
from mplug.cli import main
from mplug.errors import ConfigError, DataError

from _dryrun import job_stats

ROOT = Path(__file__).resolve().parents[2]
PAPER = ROOT / "config" / "config.yaml"
SMOKE = ROOT / "config" / "smoke.yaml"
BENCH = {"hardware_name": "test", "startup_s": 10.0,
         "rows": [{"setting": "baseline", "samples_per_s": 2.0, "flops_per_sample": 1e9},
                  {"setting": "+zero", "samples_per_s": 5.0, "flops_per_sample": 1e9}]}
RATE = 5.0 * 1e9  # no row names its settings: the fastest row's samples/s x its FLOPs per sample
# the first lines of a Snakemake `benchmark:` file, as the smoke run writes them
TSV = ("s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
       "{s}\t0:01:31\t757.19\t3709.91\t412.02\t482.30\t9.50\t0.07\t41.69\t35.63\n")


def _stats(cfg, dataset: str, **splits: int) -> None:
    p = Path(mcfg.data_stats(cfg, dataset))
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps({"dataset": dataset, "splits": splits}))


def _setup(tmp_path, monkeypatch, config=PAPER):
    cfg = mcfg.load_config(config)
    monkeypatch.chdir(tmp_path)
    for ds in cfg["pretrain"]["pretrain_14m"]["datasets"]:
        _stats(cfg, ds, train=1000, val=50)
    bench = tmp_path / "train.json"
    bench.write_text(json.dumps(BENCH))
    return cfg, str(bench)


def _gpus(cfg, rule: str, job: dict) -> int:
    res = mcfg.rule_resources(cfg, rule, job.get("resources"))
    return res["nodes"] * res["gpus_per_node"]


def test_pretrain_hours_from_bench_flops_and_resources(tmp_path, monkeypatch):
    cfg, bench = _setup(tmp_path, monkeypatch)
    result = plan.make_plan(cfg, bench)
    job = cfg["pretrain"]["pretrain_14m"]
    rows = [r for r in result["rows"] if r["job"] == "pretrain_14m"]
    assert {r["model"] for r in rows} == {k for k, m in mcfg.enabled_models(cfg).items()
                                          if "pretrain_14m" in m.get("pretrain", [])}
    row = rows[0]
    gpus = _gpus(cfg, "pretrain", job)
    assert row["gpus"] == gpus
    assert row["samples"] == 1000 * job["train"]["epochs"]  # the train split only, not val
    fps = plan.flops_per_sample(cfg, row["model"], "pretrain",
                                plan.model_job(cfg, "pretrain", "pretrain_14m", job, row["model"]))
    assert row["compute_s"] == pytest.approx(row["samples"] * fps / (RATE * gpus))
    assert row["wall_hours"] == pytest.approx((10.0 + row["compute_s"]) / 3600)
    assert row["gpu_hours"] == pytest.approx(row["wall_hours"] * gpus)
    assert "bench" in row["source"] and "+zero" in row["source"]
    vqa = next(r for r in result["rows"] if r["job"] == "vqa" and r["rule"] == "finetune")
    assert "documented size" in vqa["source"] and "bench" in vqa["source"]  # no stats.json for vqa
    evaluation = next(r for r in result["rows"] if r["rule"] == "evaluate")
    assert evaluation["gpu_hours"] is None and "not evaluation" in evaluation["source"]
    train = [r for r in result["rows"] if r["gpu_hours"] is not None]
    assert not any(r["assumed"] for r in train)  # a bench JSON wins over the assumed MFU
    assert result["total_gpu_hours"] == pytest.approx(sum(r["gpu_hours"] for r in train))


def test_each_model_runs_its_own_overrides(tmp_path, monkeypatch):
    """mplug_large pretrains at 224 px (overrides), mplug_base fine-tunes VQA at batch 1024 / 384 px:
    the plan costs each model's job as the training rule runs it."""
    cfg = mcfg.load_config(PAPER)
    monkeypatch.chdir(tmp_path)
    rows = {(r["job"], r["model"]): r for r in plan.make_plan(cfg)["rows"] if r["rule"] in plan.TRAIN_RULES}
    for rule, name, model in (("pretrain", "pretrain_14m", "mplug_large"), ("finetune", "vqa", "mplug_base")):
        job = plan.model_job(cfg, rule, name, cfg[rule][name], model)
        assert job["train"] == mcfg.train_settings(cfg, rule, name, model) != cfg[rule][name]["train"]
        fps = plan.flops_per_sample(cfg, model, rule, job)
        assert fps != plan.flops_per_sample(cfg, model, rule, cfg[rule][name])
        peak = 312e12 * plan.ASSUMED_MFU * rows[name, model]["gpus"]  # A100 bf16 (PEAK_TFLOPS)
        assert rows[name, model]["compute_s"] == pytest.approx(rows[name, model]["samples"] * fps / peak)


def test_finetune_steps_cost_their_own_flops(tmp_path, monkeypatch):
    """A fine-tuning step runs one head, a pretraining step four objectives: the plan must not
    time both at the pretraining bench's samples/s (the smoke run showed a 3x gap)."""
    cfg = mcfg.load_config(SMOKE)
    key = next(iter(mcfg.enabled_models(cfg)))
    pre = plan.flops_per_sample(cfg, key, "pretrain", cfg["pretrain"]["pretrain_14m"])
    for name in ("vqa", "caption_ce", "grounding_mixed", "snli_ve"):
        assert plan.flops_per_sample(cfg, key, "finetune", cfg["finetune"][name]) < pre / 2, name


def test_max_steps_sets_the_samples_and_vqa_counts_vg_qa(tmp_path, monkeypatch):
    cfg, bench = _setup(tmp_path, monkeypatch, SMOKE)
    rows = {r["job"]: r for r in plan.make_plan(cfg, bench)["rows"] if r["rule"] != "evaluate"}
    t = cfg["finetune"]["vqa"]["train"]
    assert rows["vqa"]["samples"] == t["max_steps"] * t["batch_size"]  # max_steps overrides epochs
    vqa = dict(cfg["finetune"]["vqa"], train={k: v for k, v in t.items() if k != "max_steps"})
    _stats(cfg, "vqa", train=600, val=120, test=120, vg_qa=200)
    assert plan.train_samples(cfg, "finetune", vqa, 0, Path(".")) == 800 * t["epochs"]  # train + vg_qa


def test_each_job_gets_the_bench_row_that_runs_as_it_does(tmp_path):
    """The fastest row is not every job's: an fp32 job gets the fp32 row even where bf16 is
    faster, a bf16 + recompute + ZeRO job its own row; a different micro batch is named."""
    rows = [{"setting": s, "precision": p, "grad_checkpointing": c, "zero_stage": z, "batch": 32,
             "samples_per_s": sps, "flops_per_sample": 1e9}
            for s, p, c, z, sps in (("baseline", "fp32", False, 0, 2.0), ("+bf16", "bf16", False, 0, 9.0),
                                    ("+grad_ckpt", "bf16", True, 0, 6.0), ("+zero", "bf16", True, 2, 7.0))]
    path = tmp_path / "train.json"
    path.write_text(json.dumps({"hardware_name": "test", "startup_s": 1.0, "rows": rows}))
    bench = plan.read_bench(str(path))
    fp32 = bench.rate({"precision": "fp32", "grad_checkpointing": False, "zero_stage": 2, "batch_size": 32})
    assert fp32.flops_per_s == 2.0e9 and "(baseline, test)" in fp32.source  # zero 2 on one device
    paper = bench.rate({"precision": "bf16", "grad_checkpointing": True, "zero_stage": 2, "batch_size": 64})
    assert paper.flops_per_s == 7.0e9 and "+zero, micro batch 32 vs the job's 64" in paper.source
    recompute = bench.rate({"precision": "bf16", "grad_checkpointing": True, "zero_stage": 0, "batch_size": 32})
    assert recompute.flops_per_s == 6.0e9


def test_scst_has_no_estimate(tmp_path, monkeypatch):
    cfg, bench = _setup(tmp_path, monkeypatch, SMOKE)
    _stats(cfg, "coco_caption", train=200, val=40, test=40)
    rows = {r["job"]: r for r in plan.make_plan(cfg, bench)["rows"] if r["rule"] == "finetune"}
    assert cfg["finetune"]["caption_scst"]["train"]["scst"]
    assert rows["caption_scst"]["wall_hours"] is None and "beam search" in rows["caption_scst"]["source"]
    assert rows["caption_ce"]["wall_hours"] is not None  # same data, plain steps


def test_paper_plan_without_data_or_bench_is_assumed(tmp_path, monkeypatch):
    """No stats.json, no bench: every plain training job gets documented sizes x epochs and the
    configured GPU's datasheet peak x the assumed MFU, labelled assumed."""
    from mplug.bench.mfu import PEAK_TFLOPS, gpu_key
    from mplug.data.sources import documented_train_size

    cfg = mcfg.load_config(PAPER)
    monkeypatch.chdir(tmp_path)
    result = plan.make_plan(cfg)
    train = [r for r in result["rows"] if r["rule"] in plan.TRAIN_RULES]
    jobs = {**cfg["pretrain"], **cfg["finetune"]}
    for r in train:
        job = plan.model_job(cfg, r["rule"], r["job"], jobs[r["job"]], r["model"])
        if job["train"].get("scst"):
            assert r["gpu_hours"] is None and "beam search" in r["source"]
            continue
        assert r["assumed"] and "documented size" in r["source"] and "assumed: A100" in r["source"]
        examples = 0
        for ds in job["datasets"]:
            size = documented_train_size(ds, cfg["data"]["datasets"][ds].get("downloads", []))
            keep = ("train", "val", "vg_qa") if r["job"] == "vqa" else ("train",)
            examples += sum(n for s, n in size.splits.items() if s in keep)
        assert r["samples"] == examples * job["train"]["epochs"]
        peak = PEAK_TFLOPS[gpu_key(r["gpu_model"])][job["train"]["precision"]] * 1e12
        gpus = _gpus(cfg, r["rule"], job)
        wall = r["samples"] * plan.flops_per_sample(cfg, r["model"], r["rule"], job) / (
            gpus * peak * plan.ASSUMED_MFU)
        assert r["gpu_hours"] == pytest.approx(wall / 3600 * gpus)
    stages = {t["stage"]: t for t in result["stage_gpu_hours"]}
    assert stages["pretraining"]["assumed"] and stages["pretraining"]["gpu_hours"] > 0
    assert result["total_assumed"]
    assert result["total_gpu_hours"] == pytest.approx(sum(r["gpu_hours"] or 0 for r in train))
    assert "(assumed)" in plan.render(result)


def test_stats_json_overrides_the_documented_size(tmp_path, monkeypatch):
    cfg = mcfg.load_config(PAPER)
    monkeypatch.chdir(tmp_path)
    _stats(cfg, "nlvr2", train=100, dev=10)
    row = next(r for r in plan.make_plan(cfg)["rows"] if r["job"] == "nlvr2")
    assert row["samples"] == 100 * cfg["finetune"]["nlvr2"]["train"]["epochs"]
    assert "nlvr2: stats.json" in row["source"] and "documented" not in row["source"]


def test_caption_jobs_count_captions_not_images(tmp_path, monkeypatch):
    """stats.json `splits` counts records (a caption record is an image with its 5 captions);
    training iterates per caption, counted in `split_texts`."""
    cfg = mcfg.load_config(PAPER)
    monkeypatch.chdir(tmp_path)
    epochs = cfg["finetune"]["caption_ce"]["train"]["epochs"]
    _stats(cfg, "coco_caption", train=100, val=10)
    row = next(r for r in plan.make_plan(cfg)["rows"] if r["job"] == "caption_ce")
    assert row["samples"] == 100 * epochs and "no split_texts" in row["source"]
    stats = Path(mcfg.data_stats(cfg, "coco_caption"))
    stats.write_text(json.dumps({"splits": {"train": 100}, "split_texts": {"train": 500}}))
    row = next(r for r in plan.make_plan(cfg)["rows"] if r["job"] == "caption_ce")
    assert row["samples"] == 500 * epochs and "coco_caption: stats.json)" in row["source"]


def test_assume_mfu_must_be_a_fraction(tmp_path, monkeypatch, capsys):
    cfg = mcfg.load_config(PAPER)
    monkeypatch.chdir(tmp_path)
    half = plan.make_plan(cfg, assume_mfu=0.5)["rows"][0]
    base = plan.make_plan(cfg)["rows"][0]
    assert half["gpu_hours"] == pytest.approx(base["gpu_hours"] * plan.ASSUMED_MFU / 0.5)
    assert "MFU 0.5" in half["source"]
    for bad in ("0", "1.5", "-0.2", "x"):
        with pytest.raises(SystemExit):
            main(["plan", "--config", str(PAPER), "--assume-mfu", bad])
        assert "(0, 1]" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"\(0, 1\]"):
        plan.make_plan(cfg, assume_mfu=0.0)


def test_cli_json_and_no_bench(tmp_path, monkeypatch, capsys):
    _setup(tmp_path, monkeypatch)
    out = tmp_path / "plan.json"
    assert main(["plan", "--config", str(PAPER), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "assumed: A100" in text and "a limit, not an estimate" in text
    data = json.loads(out.read_text())
    assert data["total_gpu_hours"] > 0 and data["total_assumed"]


def test_bad_bench_is_a_clear_error(tmp_path, monkeypatch, capsys):
    cfg, bench = _setup(tmp_path, monkeypatch)
    Path(bench).write_text(json.dumps({"rows": []}))
    with pytest.raises(DataError, match="samples_per_s"):
        plan.make_plan(cfg, bench)
    assert main(["plan", "--config", str(PAPER), "--bench", bench]) != 0
    assert "samples_per_s" in capsys.readouterr().err


def test_benchmark_seconds_reads_the_s_column(tmp_path):
    path = tmp_path / "job.bench.tsv"
    assert plan.benchmark_seconds(path) is None
    path.write_text(TSV.format(s=91.2))
    assert plan.benchmark_seconds(path) == pytest.approx(91.2)
    path.write_text(TSV.format(s=10.0) + TSV.format(s=20.0).splitlines()[1] + "\n")  # repeat(): the mean
    assert plan.benchmark_seconds(path) == pytest.approx(15.0)


def test_plan_vs_actual_reads_snakemake_benchmarks(tmp_path, monkeypatch):
    cfg, bench = _setup(tmp_path, monkeypatch, SMOKE)
    Path(mcfg.bench_json(cfg, "train")).parent.mkdir(parents=True)
    Path(mcfg.bench_json(cfg, "train")).write_text(Path(bench).read_text())
    key = next(iter(mcfg.enabled_models(cfg)))
    tsv = Path(mcfg.rule_benchmark(cfg, "pretrain", key, "pretrain_14m"))
    tsv.parent.mkdir(parents=True)
    tsv.write_text(TSV.format(s=100.0))
    summ = Path(mcfg.checkpoint_dir(cfg, key, "pretrain_14m")) / "summary.json"
    summ.parent.mkdir(parents=True)
    summ.write_text(json.dumps({"wall_seconds": 80.0}))
    rows = plan.plan_vs_actual(cfg, tmp_path)
    assert [(r["job"], r["model"]) for r in rows] == [("pretrain_14m", key)]  # jobs not run: no row
    job = cfg["pretrain"]["pretrain_14m"]
    compute = (job["train"]["max_steps"] * job["train"]["batch_size"]
               * plan.flops_per_sample(cfg, key, "pretrain", job) / RATE)
    r = rows[0]
    assert r["snakemake_s"] == 100.0 and r["trainer_s"] == 80.0
    assert r["startup_s"] == 10.0 and r["compute_s"] == pytest.approx(compute)
    assert r["planned_s"] == pytest.approx(10.0 + compute)
    assert r["ratio"] == pytest.approx((10.0 + compute) / 100.0)


def test_seeded_fine_tunes_are_planned_and_compared(tmp_path, monkeypatch):
    """evaluate.snli_ve.seeds [0, 1] (config/smoke.yaml): snli_ve runs twice, both are planned
    (the GPU-hours count both) and the seed-1 run is read from its own benchmark and summary."""
    cfg, bench = _setup(tmp_path, monkeypatch, SMOKE)
    assert mcfg.finetune_seeds(cfg, "snli_ve") == [1]
    rows = [r for r in plan.make_plan(cfg, bench)["rows"] if r["job"] == "snli_ve" and r["rule"] == "finetune"]
    assert [r["seed"] for r in rows] == [None, 1] and rows[0]["gpu_hours"] == rows[1]["gpu_hours"]
    assert "snli_ve seed 1" in plan.render(plan.make_plan(cfg, bench))
    Path(mcfg.bench_json(cfg, "train")).parent.mkdir(parents=True)
    Path(mcfg.bench_json(cfg, "train")).write_text(Path(bench).read_text())
    key = next(iter(mcfg.enabled_models(cfg)))
    tsv = Path(mcfg.rule_benchmark(cfg, "finetune", key, "snli_ve", "seed1"))
    tsv.parent.mkdir(parents=True)
    tsv.write_text(TSV.format(s=42.0))
    (actual,) = plan.plan_vs_actual(cfg, tmp_path)
    assert (actual["job"], actual["seed"], actual["snakemake_s"]) == ("snli_ve", 1, 42.0)


def test_plan_counts_the_jobs_the_dag_runs(tmp_path, monkeypatch, paper_dry_run, smoke_dry_run):
    """Per rule, the plan's jobs are the dry run's: every download, preprocessing, training,
    evaluation split, seed, bench and the report (`all` and `synth` are local rules)."""
    monkeypatch.chdir(tmp_path)
    for config, out in ((PAPER, paper_dry_run), (SMOKE, smoke_dry_run)):
        stats = job_stats(out)
        stats.pop("all"), stats.pop("synth", None)
        assert plan.dag_jobs(plan.make_plan(mcfg.load_config(config))) == stats, config


def test_a_job_longer_than_its_time_limit_is_resubmitted(tmp_path, monkeypatch):
    cfg = mcfg.load_config(PAPER)
    monkeypatch.chdir(tmp_path)
    cfg["pretrain"]["pretrain_14m"].setdefault("resources", {})["runtime"] = 600  # 10 h
    result = plan.make_plan(cfg)
    row = next(r for r in result["rows"] if r["job"] == "pretrain_14m" and r["model"] == "mplug_large")
    assert row["wall_hours"] > 10
    assert row["slurm_jobs"] == math.ceil(row["wall_hours"] / 10) > 1
    assert result["total_slurm_jobs"] == sum(r["slurm_jobs"] for r in result["rows"]) \
        + sum(result["support_jobs"].values())
    assert f"SLURM jobs: {result['total_slurm_jobs']}" in plan.render(result)


def test_official_checkpoints_plan_conversions_not_pretraining(tmp_path, monkeypatch):
    cfg = mcfg.load_config(PAPER)
    monkeypatch.chdir(tmp_path)
    cfg["pretrained"]["source"] = "official"
    cfg["models"].pop("mplug_base_4m")  # no released 4M-only base checkpoint
    rows = [r for r in plan.make_plan(cfg)["rows"] if r["stage"].endswith("pretraining")]
    assert rows and all(r["rule"] == "convert_official" and r["gpu_hours"] is None for r in rows)


def test_training_disk_counts_checkpoints_kept_and_weights(tmp_path, monkeypatch):
    from mplug.plan_disk import KEEP_CHECKPOINTS, checkpoint_bytes, meta_task_model, weights_bytes

    cfg = mcfg.load_config(PAPER)
    monkeypatch.chdir(tmp_path)
    rows = {(r["rule"], r["job"], r["model"]): r for r in plan.make_plan(cfg)["rows"]}
    for name, copies in (("vqa", 1), ("caption_scst", 3)):  # SCST keeps its best model too
        job = plan.model_job(cfg, "finetune", name, cfg["finetune"][name], "mplug_large")
        assert bool(job["train"].get("eval_every")) == (copies == 3) and job["train"]["save_every"]
        net = meta_task_model(cfg, "mplug_large", "finetune", job)
        tag = checkpoint_bytes(net, job["train"]["precision"], job["train"]["zero_stage"])
        assert rows["finetune", name, "mplug_large"]["disk_bytes"] == \
            KEEP_CHECKPOINTS * tag + copies * weights_bytes(net)
    # the caption model trains no text encoder / fusion (official): fewer Adam states than VQA's
    assert rows["finetune", "caption_scst", "mplug_large"]["checkpoint_bytes"] < \
        rows["finetune", "vqa", "mplug_large"]["checkpoint_bytes"]


def test_downloads_are_measured_where_present_else_documented(tmp_path, monkeypatch):
    from mplug.data.sources import SOURCES
    from mplug.plan_disk import WEBSCALE_BYTES_PER_SAMPLE, download_disk

    cfg = mcfg.load_config(PAPER)
    monkeypatch.chdir(tmp_path)
    coco = tmp_path / cfg["data"]["resources_dir"] / "coco"
    coco.mkdir(parents=True)
    (coco / "download.json").write_text("{}")
    (coco / "train2014.zip").write_bytes(b"x" * 1000)
    disk = {d["source"]: d for d in download_disk(cfg)}
    assert disk["coco"] == {"source": "coco", "bytes": 1002, "basis": "measured", "undocumented_files": 0}
    vg = SOURCES["vg"].files  # every file an archive, kept beside its contents
    assert disk["vg"]["bytes"] == 2 * sum(f.size for f in vg) and disk["vg"]["basis"] == "documented"
    cc12m = SOURCES["cc12m"]
    assert disk["cc12m"]["bytes"] == cc12m.files[0].size + cc12m.paper_counts["images"] * WEBSCALE_BYTES_PER_SAMPLE
    assert disk["coco_test2015"]["undocumented_files"] == 1 and disk["coco_test2015"]["bytes"] == 0
    assert set(disk) >= {"clip_vit_b16", "clip_vit_l14", "bert_base_uncased"}  # the pretraining init


def test_the_dag_plan_target_writes_the_plan(tmp_path, monkeypatch, capsys):
    """`snakemake plan`: results/<run>/plan.{txt,json}, the text `mplug plan` prints."""
    import subprocess

    from _dryrun import ROOT as REPO
    from _dryrun import SNAKEMAKE

    res = subprocess.run([str(SNAKEMAKE), "plan", "--profile", "profiles/smoke", "--configfile",
                          "config/smoke.yaml", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path)],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    out = tmp_path / "results" / "smoke"
    saved = json.loads((out / "plan.json").read_text())
    monkeypatch.chdir(tmp_path)  # what the DAG's job saw: no stats.json, no bench
    assert main(["plan", "--config", str(SMOKE)]) == 0
    printed = capsys.readouterr().out
    assert (out / "plan.txt").read_text() == printed
    assert f"SLURM jobs: {saved['total_slurm_jobs']}" in printed
