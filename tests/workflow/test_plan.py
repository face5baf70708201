"""`mplug plan`: GPUs from the config's resources, durations only from a measured bench JSON
(start-up + samples x the job's FLOPs / the bench's FLOP/s), and plan vs actual against the
Snakemake `benchmark:` TSVs."""
import json
from pathlib import Path

import pytest

from mplug import config as mcfg
from mplug import plan
from mplug.cli import main
from mplug.errors import DataError

ROOT = Path(__file__).resolve().parents[2]
PAPER = ROOT / "config" / "config.yaml"
SMOKE = ROOT / "config" / "smoke.yaml"
BENCH = {"hardware_name": "test", "startup_s": 10.0,
         "rows": [{"setting": "baseline", "samples_per_s": 2.0, "flops_per_sample": 1e9},
                  {"setting": "+zero", "samples_per_s": 5.0, "flops_per_sample": 1e9}]}
RATE = 5.0 * 1e9  # the best row's samples/s x its FLOPs per sample
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
    fps = plan.flops_per_sample(cfg, row["model"], "pretrain", job)
    assert row["compute_s"] == pytest.approx(row["samples"] * fps / (RATE * gpus))
    assert row["wall_hours"] == pytest.approx((10.0 + row["compute_s"]) / 3600)
    assert row["gpu_hours"] == pytest.approx(row["wall_hours"] * gpus)
    assert "bench" in row["source"] and "+zero" in row["source"]
    vqa = next(r for r in result["rows"] if r["job"] == "vqa" and r["rule"] == "finetune")
    assert vqa["gpu_hours"] is None and "missing" in vqa["source"]
    evaluation = next(r for r in result["rows"] if r["rule"] == "evaluate")
    assert evaluation["gpu_hours"] is None and "not evaluation" in evaluation["source"]
    assert result["total_gpu_hours"] == pytest.approx(sum(r["gpu_hours"] for r in rows))


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


def test_scst_has_no_estimate(tmp_path, monkeypatch):
    cfg, bench = _setup(tmp_path, monkeypatch, SMOKE)
    _stats(cfg, "coco_caption", train=200, val=40, test=40)
    rows = {r["job"]: r for r in plan.make_plan(cfg, bench)["rows"] if r["rule"] == "finetune"}
    assert cfg["finetune"]["caption_scst"]["train"]["scst"]
    assert rows["caption_scst"]["wall_hours"] is None and "beam search" in rows["caption_scst"]["source"]
    assert rows["caption_ce"]["wall_hours"] is not None  # same data, plain steps


def test_cli_json_and_no_bench(tmp_path, monkeypatch, capsys):
    _setup(tmp_path, monkeypatch)
    out = tmp_path / "plan.json"
    assert main(["plan", "--config", str(PAPER), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "no bench JSON given" in text and "a limit, not an estimate" in text
    assert json.loads(out.read_text())["total_gpu_hours"] is None


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
