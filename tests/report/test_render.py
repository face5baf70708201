"""Rendering: every table and row survives empty, partial and malformed results.

The metrics files written here are TEST FIXTURES with made-up values, not results.
"""
import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mplug import config as mcfg
from mplug.cli import main
from mplug.report.published import load_published

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "config/smoke.yaml"
PAPER = REPO / "config/config.yaml"
CFG = mcfg.load_config(SMOKE)
RUN = CFG["run"]


PAPER_CFG = mcfg.load_config(PAPER)


def _eval(job, split, cfg=CFG, model="mplug_smoke"):
    """Where the workflow writes an evaluation of `model` (relative to the root)."""
    return mcfg.eval_json(cfg, model, job, split)

FIXTURE_PROV = {"commit": "fixture-commit", "config_hash": "fixturehash", "checkpoint": "fixture.safetensors",
                "hardware": {"accelerator": "cpu", "cpu": "FixtureCPU", "threads": 1},
                "date": "2026-01-01T00:00:00+00:00", "note": "test fixture"}


def _metrics(path, metrics, task="t", split="s"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"task": task, "split": split, "metrics": metrics, "provenance": FIXTURE_PROV}))


def _report(tmp_path, *extra, config=SMOKE):
    run = mcfg.load_config(config)["run"]
    results = tmp_path / "results" / run
    results.mkdir(parents=True, exist_ok=True)
    out = tmp_path / "reports" / run
    assert main(["report", "--config", str(config), "--results", str(results), "--out", str(out),
                 *extra]) == 0
    return results, out, (out / "report.html").read_text()


def _csv(out, n):
    return pd.read_csv(out / "tables" / f"table{n:02d}.csv", keep_default_na=False, dtype=str)


def test_empty_results_keep_every_table_and_row(tmp_path):
    _, out, html = _report(tmp_path, config=PAPER)
    for n in range(1, 13):
        assert f'id="table{n:02d}"' in html
        df = _csv(out, n)
        assert len(df) == len(load_published(n)), n  # no published row dropped
        mine = df[df.status != ""]
        assert len(mine) > 0
        assert set(mine.status) == {"not_run"}, (n, set(mine.status))
        assert (mine.reason != "").all()
    t1 = _csv(out, 1)
    assert t1[t1.model == "mPLUG"].reason.str.contains(
        "missing file .*results/paper/mplug_large/eval/caption/test/metrics.json").any()
    assert "SMOKE RUN" not in html


def test_fixture_values_give_deltas_and_statuses(tmp_path):
    """A paper run is judged (a smoke run never is: test_smoke_numbers_are_pipeline_checks)."""
    # Published mPLUG NLVR2 dev 84.58, test-P 84.95: one within 1.0, one not.
    def paper(job, split):
        return tmp_path / _eval(job, split, PAPER_CFG, "mplug_large")

    _metrics(paper("nlvr2", "dev"), {"accuracy": 84.0})
    _metrics(paper("nlvr2", "test_p"), {"accuracy": 80.95})
    _metrics(paper("snli_ve", "dev"), {"accuracy": "high"})       # malformed value
    bad = paper("snli_ve", "test")
    bad.parent.mkdir(parents=True)
    bad.write_text('{"task": "snli_ve", "metrics": {')  # bad JSON
    log = tmp_path / "logs" / PAPER_CFG["run"] / "evaluate/mplug_large/caption/test.log"  # rule `evaluate`
    log.parent.mkdir(parents=True)
    log.write_text("step 1\nRuntimeError: fixture failure\n")
    _, out, html = _report(tmp_path, "--tolerance", "1.0", config=PAPER)
    t5 = _csv(out, 5).set_index(["model", "setting"])
    assert t5.loc[("mPLUG", "NLVR2 dev"), "status"] == "match"
    assert float(t5.loc[("mPLUG", "NLVR2 dev"), "delta"]) == pytest.approx(-0.58)
    assert t5.loc[("mPLUG", "NLVR2 test-P"), "status"] == "differs"
    assert float(t5.loc[("mPLUG", "NLVR2 test-P"), "delta"]) == pytest.approx(-4.0)
    assert t5.loc[("mPLUG", "SNLI-VE dev"), "status"] == "not_run"
    assert "is not a number" in t5.loc[("mPLUG", "SNLI-VE dev"), "reason"]
    assert t5.loc[("mPLUG", "SNLI-VE test"), "status"] == "not_run"
    assert "malformed result" in t5.loc[("mPLUG", "SNLI-VE test"), "reason"]
    assert len(t5) == 33 and (t5.loc[("OFA[35]", "SNLI-VE dev"), "value"] == "90.30")
    t1 = _csv(out, 1)
    assert t1[t1.setting.str.contains("CIDEr opt")].reason.str.contains(
        r"rule failed.*caption/test.log: RuntimeError: fixture failure").any()
    assert "84.00" in html and "-0.58" in html and "fixture-commit" in html  # value, delta, provenance


def test_smoke_numbers_are_pipeline_checks(tmp_path):
    """Synthetic data: the number and its delta are shown, never called a match or a miss."""
    _metrics(tmp_path / _eval("nlvr2", "dev"), {"accuracy": 84.0})
    _, out, html = _report(tmp_path, "--tolerance", "1.0")
    cell = _csv(out, 5).set_index(["model", "setting"]).loc[("mPLUG", "NLVR2 dev")]
    assert cell.status == "pipeline" and float(cell.delta) == pytest.approx(-0.58)
    assert "pipeline check" in html


def test_table2_rows_need_their_model(tmp_path):
    """A run with only a ViT-B model (14M) fills only that row; the others say what they need."""
    cfg = yaml.safe_load(PAPER.read_text())
    cfg["models"] = {"b": dict(cfg["models"]["mplug_base"], evaluate=["vqa"])}
    path = tmp_path / "base_only.yaml"
    path.write_text(yaml.safe_dump(cfg))
    _metrics(tmp_path / mcfg.eval_json(cfg, "b", "vqa", "test"), {"test-dev": {"overall": 79.5},
                                                                  "overall": None})
    _, out, _ = _report(tmp_path, config=path)
    t2 = _csv(out, 2).set_index(["model", "pretrain_data", "setting"])
    assert t2.loc[("mPLUGViT-B", "14M", "VQA v2 test-dev"), "status"] == "match"
    assert t2.loc[("mPLUGViT-B", "14M", "VQA v2 test-std"), "status"] == "server"
    assert "needs a mplug_large" in t2.loc[("mPLUGViT-L", "14M", "VQA v2 test-dev"), "reason"]
    assert "pre-trained on 4M" in t2.loc[("mPLUGViT-B", "4M", "VQA v2 test-dev"), "reason"]


def test_smoke_banner(tmp_path):
    _, out, html = _report(tmp_path)
    assert re.search(r'class="banner".*synthetic world.*NOT comparable', html)
    assert "synthetic world" in (out / "tables/table03.html").read_text()


def test_bench_tables_and_figures(tmp_path):
    bench = tmp_path / mcfg.bench_json(CFG, "fusion")
    bench.parent.mkdir(parents=True)
    bench.write_text(json.dumps({"hardware": "FixtureGPU", "n_samples": 100, "rows": [
        {"network": "connected", "stride": None, "time_s": 8.0, "flops": 1e12},
        {"network": "two_stream", "stride": None, "time_s": 9.0},
        {"network": "asymmetric", "stride": None, "time_s": 1.5},
        *[{"network": "skip", "stride": s, "time_s": t} for s, t in ((1, 10.0), (2, 4.0), (3, 2.6), (6, 2.0))],
    ]}))
    (tmp_path / mcfg.bench_json(CFG, "train")).write_text(json.dumps({"hardware": "FixtureGPU", "rows": [
        {"setting": "baseline", "samples_per_s": 10.0, "peak_mem_gb": 3.0},
        {"setting": "+bf16", "samples_per_s": 14.7},
        {"setting": "+grad_ckpt"}]}))  # missing samples_per_s -> not run, row kept
    _, out, html = _report(tmp_path)
    for n in (1, 3, 4):
        assert (out / "figures" / f"fig{n}.png").read_bytes()[:4] == b"\x89PNG"
    assert html.count("data:image/png;base64,") == 3
    assert "FixtureGPU" in html
    t6 = _csv(out, 6).set_index("model")
    assert t6.loc["baseline", "status"] == "match"                 # speed-up 1.0 vs 1.0
    assert t6.loc["+ BFloat16", "status"] == "match"               # 1.47 vs 182.7/124 = 1.47
    assert t6.loc["+ Gradient Checkpoint", "status"] == "not_run"
    assert t6.loc["+ ZeRO", "status"] == "not_run" and len(t6) == 4


def test_hparams_and_stats(tmp_path):
    cfg = mcfg.load_config(PAPER)
    for job, hp in {"vqa": {"run": {"settings": {"lr_text": 2e-5, "lr_vision": 5e-6,
                                                 "batch_size": 1024, "epochs": 8}}},
                    "nlvr2": {"hparams": {"lr": 1e-4, "batch_size": 256, "epochs": 15}}}.items():
        p = tmp_path / mcfg.checkpoint_dir(cfg, "mplug_large", job) / "summary.json"
        p.parent.mkdir(parents=True)
        p.write_text(json.dumps(hp))
    stats = tmp_path / mcfg.data_stats(cfg, "pretrain_14m")
    stats.parent.mkdir(parents=True)
    stats.write_text(json.dumps({"dataset": "pretrain_14m", "source": "fixture", "splits": {"train": 5},
                                 "components": {"coco": {"images_obtained": 113000,
                                                         "texts_obtained": 500000}}}))
    _, out, html = _report(tmp_path, config=PAPER)
    t11 = _csv(out, 11).set_index(["model", "metric"])
    assert t11.loc[("VQA", "LR (ViT-L/BERTbase)"), "status"] == "match"
    assert t11.loc[("VQA", "batch size"), "status"] == "match"
    assert t11.loc[("NLVR2", "LR (ViT-L/BERTbase)"), "status"] == "differs"
    assert t11.loc[("NLVR2", "epochs"), "status"] == "match"
    assert t11.loc[("SNLI-VE", "epochs"), "status"] == "not_run"
    assert "snli_ve/summary.json (not run yet)" in t11.loc[("SNLI-VE", "epochs"), "reason"]
    t12 = _csv(out, 12).set_index(["model", "metric"])
    assert t12.loc[("COCO", "image"), "status"] == "match"
    assert t12.loc[("COCO", "text"), "status"] == "differs"
    assert t12.loc[("CC12M", "image"), "status"] == "not_run"
    assert "pretrain_14m" in html


def test_columns_follow_the_paper_order(tmp_path):
    _, out, _ = _report(tmp_path)
    html = (out / "tables/table01.html").read_text()
    heads = re.findall(r"<th colspan=\"(\d+)\">([^<]+)</th>", html)
    assert [h for _, h in heads][2:5] == ["COCO Karpathy test, cross-entropy",
                                          "COCO Karpathy test, CIDEr optimization", "NoCaps val"]
    metrics = re.findall(r"<th colspan=\"1\">([^<]*)</th>", html)
    assert metrics[-10:] == ["B@4", "M", "C", "S", "B@4", "M", "C", "S", "C", "S"]
    html3 = (out / "tables/table03.html").read_text()
    assert html3.index("MSCOCO 5K test") < html3.index("Flickr30K 1K test")


def test_results_outside_the_layout_are_not_picked_up(tmp_path):
    """Only the workflow's layout counts: a file under another folder is not a result."""
    _metrics(tmp_path / "results" / RUN / "eval/nlvr2/dev/metrics.json", {"accuracy": 84.5})
    _, out, _ = _report(tmp_path)
    t5 = _csv(out, 5).set_index(["model", "setting"])
    assert t5.loc[("mPLUG", "NLVR2 dev"), "status"] == "not_run"
    assert "mplug_smoke/eval/nlvr2/dev/metrics.json" in t5.loc[("mPLUG", "NLVR2 dev"), "reason"]


def test_differences_show_the_run_config_keys(tmp_path):
    _, _, html = _report(tmp_path)
    assert "models.mplug_smoke.stride" in html and "finetune.vqa.train.distill" in html
    assert "hparams: official" in html


def test_unavailable_metric_shows_its_reason_not_malformed(tmp_path):
    """SPICE without its CoreNLP models: the evaluator writes None + a reason; the cell says so."""
    why = "Stanford CoreNLP models missing (fixture)"
    _metrics(tmp_path / _eval("caption", "test"),
             {"Bleu_4": 40.0, "METEOR": 30.0, "CIDEr": 130.0, "SPICE": None,
              "unavailable": {"SPICE": why}})
    _, out, _ = _report(tmp_path)
    t1 = _csv(out, 1)
    spice = t1[(t1.model == "mPLUG") & t1.setting.str.contains("CIDEr opt") & (t1.metric == "S")]
    assert len(spice) == 1
    row = spice.iloc[0]
    assert row.status == "not_run"
    assert "SPICE unavailable" in row.reason and why in row.reason
    assert "malformed" not in row.reason


def test_plan_vs_actual_section_against_smoke_config(tmp_path):
    """The plan section: start-up + compute = planned, beside Snakemake's benchmark seconds and
    the trainer's wall_seconds, and their ratio."""
    from mplug.plan import flops_per_sample

    job, spec = next(iter(CFG["pretrain"].items()))
    bench = tmp_path / mcfg.bench_json(CFG, "train")
    bench.parent.mkdir(parents=True, exist_ok=True)
    bench.write_text(json.dumps({"hardware_name": "fixture", "startup_s": 5.0, "rows": [
        {"setting": "baseline", "samples_per_s": 3.0, "flops_per_sample": 1e8}]}))
    tsv = tmp_path / mcfg.rule_benchmark(CFG, "pretrain", "mplug_smoke", job)
    tsv.parent.mkdir(parents=True, exist_ok=True)
    tsv.write_text("s\th:m:s\tmax_rss\n60.0\t0:01:00\t700.0\n")
    summ = tmp_path / mcfg.checkpoint_dir(CFG, "mplug_smoke", job) / "summary.json"
    summ.parent.mkdir(parents=True, exist_ok=True)
    summ.write_text(json.dumps({"wall_seconds": 50.0}))
    _, _, html = _report(tmp_path)
    section = html.split('id="plan"')[1].split("<h2")[0]
    assert f"<td>{job}</td><td>mplug_smoke</td>" in section
    compute = (spec["train"]["max_steps"] * spec["train"]["batch_size"]  # a CPU job: 1 process
               * flops_per_sample(CFG, "mplug_smoke", "pretrain", spec) / (3.0 * 1e8))
    for value in (5.0, compute, 5.0 + compute, 60.0, 50.0):
        assert f'<td class="num">{value:.1f}</td>' in section, value
    assert f'<td class="num">{(5.0 + compute) / 60.0:.2f}</td>' in section
    # above the table: the run plan's totals, made with the same bench
    from mplug.plan import make_plan

    result = make_plan(CFG, str(bench), tmp_path)
    totals = section.split('class="plan-totals">')[1].split("</p>")[0]
    assert f"<b>{result['total_slurm_jobs']} SLURM jobs</b>" in totals
    assert f"<b>{result['total_gpu_hours']:,.3g} GPU-hours</b> (from the measured train bench" in totals
    assert f"training outputs {result['training_disk_bytes'] / 1e9:.3g} GB" in totals
    assert "downloads" not in totals  # the synthetic world downloads nothing


def test_fine_tuning_seeds_show_mean_std_and_each_run(tmp_path):
    """evaluate.<job>.seeds: the cell is the seeds' mean +- sample std, each run's value and
    interval on hover; judged with the envelope of the runs' intervals; a missing seed's run
    leaves the cell "not run", naming the seed."""
    cfg = yaml.safe_load(PAPER.read_text())
    cfg["evaluate"]["snli_ve"]["seeds"] = [42, 1, 2]  # 42: the run's seed, plain paths
    config = tmp_path / "seeds.yaml"
    config.write_text(yaml.safe_dump(cfg))
    cfg = mcfg.load_config(config)
    _, out, _ = _report(tmp_path, config=config)
    published = float(_csv(out, 5).set_index(["model", "setting"]).loc[("mPLUG", "SNLI-VE dev"), "value"])
    for seed, offset in ((42, -0.5), (1, 0.1), (2, 0.4)):
        v = published + offset
        _metrics(tmp_path / mcfg.eval_json(cfg, "mplug_large", "snli_ve", "dev", seed),
                 {"accuracy": v, "ci95": {"accuracy": [v - 0.3, v + 0.3]}})
    _, out, html = _report(tmp_path, config=config)
    cell = _csv(out, 5).set_index(["model", "setting"]).loc[("mPLUG", "SNLI-VE dev")]
    assert float(cell.reproduced) == pytest.approx(published)
    assert float(cell.seed_std) == pytest.approx(0.4583, abs=1e-3) and cell.seeds == "3"  # a count, not 3.0
    assert cell.status == "match"  # the published value lies inside seed 1's interval
    assert float(cell.ci95_lo) == pytest.approx(published - 0.8)  # the runs' intervals' envelope
    assert float(cell.ci95_hi) == pytest.approx(published + 0.7)
    assert "±0.46 sd, 3 seeds" in html and f"seed 1: {published + 0.1:.2f}, 95% CI" in html
    (tmp_path / mcfg.eval_json(cfg, "mplug_large", "snli_ve", "dev", 2)).unlink()
    _, out, _ = _report(tmp_path, config=config)
    cell = _csv(out, 5).set_index(["model", "setting"]).loc[("mPLUG", "SNLI-VE dev")]
    assert cell.status == "not_run" and "fine-tuning seed 2: missing file" in cell.reason
    assert "snli_ve/dev/seed2/metrics.json" in cell.reason
