"""The report finds every result at the paths the workflow writes (one map: mplug.report.mapping,
resolved with mplug.config's layout helpers). A rename of a job, split, metric key or folder on
either side makes a mapped cell come out empty here.

Metric values are TEST FIXTURES (made-up numbers, see layout.py), not results.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from .layout import fake_run, write_json
from mplug import config as mcfg
from mplug.cli import main
from mplug.report import mapping
from mplug.report.published import load_published

REPO = Path(__file__).resolve().parents[2]
SMOKE, PAPER = REPO / "config/smoke.yaml", REPO / "config/config.yaml"
FILLED = {"match", "differs", "info", "pipeline"}


def _report(root: Path, config: Path, run: str) -> Path:
    out = root / "reports" / run
    assert main(["report", "--config", str(config), "--results", str(root / "results" / run),
                 "--out", str(out)]) == 0
    return out


def _csv(out: Path, n: int) -> pd.DataFrame:
    return pd.read_csv(out / "tables" / f"table{n:02d}.csv", keep_default_na=False, dtype=str)


def _expected(cfg: dict, cell: mapping.CellMap, model: str, split: str, written: dict) -> float:
    """The written value; over several fine-tuning seeds (evaluate.<job>.seeds) their mean."""
    values = []
    for seed in mcfg.eval_seeds(cfg, cell.job):
        metrics = written[mcfg.eval_json(cfg, model, cell.job, split, seed)]
        values.append(next(metrics[k] for k in cell.keys if k in metrics))
    return pytest.approx(sum(values) / len(values))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = tmp_path_factory.mktemp("smoke_project")
    cfg = mcfg.load_config(SMOKE)
    written = fake_run(root, cfg)
    manifest = {"datasets": {"pretrain_4m": {"images": 11, "texts": 22, "notes": "fixture 4M-like"},
                             "pretrain_14m": {"images": 33, "texts": 44, "notes": "fixture"}}}
    write_json(root / mcfg.synth_manifest(cfg), manifest)
    return cfg, written, _report(root, SMOKE, cfg["run"])


@pytest.mark.parametrize("table", (1, 3, 4, 5, 7, 8, 9, 10))
def test_smoke_tree_fills_every_mapped_cell(smoke, table):
    cfg, written, out = smoke
    df = _csv(out, table).set_index(["model", "pretrain_data", "setting", "metric"])
    for cell in mapping.cells_for_table(table):
        row = df.loc[(cell.model, cell.pretrain_data, cell.setting, cell.metric)]
        assert row.status in FILLED, (cell, row.reason)
        assert float(row.reproduced) == _expected(cfg, cell, "mplug_smoke", cell.split, written)
        assert row.source.endswith(mcfg.eval_json(cfg, "mplug_smoke", cell.job, cell.split))


def test_smoke_vqa_val_stands_in_for_the_server_splits(smoke):
    cfg, written, out = smoke
    t2 = _csv(out, 2).set_index(["model", "pretrain_data", "setting"])
    for cell in mapping.cells_for_table(2):
        row = t2.loc[(cell.model, cell.pretrain_data, cell.setting)]
        if cell.variant == "base":  # the smoke run has no ViT-B model
            assert row.status == "not_run" and "mplug_base" in row.reason
            continue
        assert row.status in FILLED
        assert float(row.reproduced) == _expected(cfg, cell, "mplug_smoke", "val", written)
        assert "stands in for 'test'" in row.reason


def test_smoke_bench_and_hparams_tables(smoke):
    cfg, _, out = smoke
    t6 = _csv(out, 6).set_index("model")
    assert (t6.status != "not_run").all(), t6.reason.tolist()
    t11 = _csv(out, 11)
    assert set(t11.status) <= {"match", "differs"}, t11.reason.tolist()
    vqa = t11.set_index(["model", "metric"]).loc[("VQA", "batch size")]
    assert vqa.reproduced == str(cfg["finetune"]["vqa"]["train"]["batch_size"])
    assert vqa.source.endswith("results/smoke/mplug_smoke/finetune/vqa/summary.json")
    epochs = t11.set_index(["model", "metric"]).loc[("VQA", "epochs")]
    steps = cfg["finetune"]["vqa"]["train"]["max_steps"]
    assert f"max_steps {steps} caps training" in epochs.reason
    grounding = t11.set_index(["model", "metric"]).loc[("Visual Grounding", "epochs")]
    assert "grounding_mixed/summary.json" in grounding.source


def test_smoke_table12_says_why_the_synthetic_world_has_no_corpus_counts(smoke):
    _, _, out = smoke
    t12 = _csv(out, 12)
    assert len(t12) == len(load_published(12))
    assert (t12.status == "not_run").all()
    assert t12.reason.str.contains("synthetic world.*pretrain_4m: 11 images / 22 texts").all()


def test_every_table_row_survives_and_labels_agree(smoke):
    cfg, _, out = smoke
    html = (out / "report.html").read_text()
    for n in range(1, 13):
        assert len(_csv(out, n)) == len(load_published(n)), n
    assert "Run config label out of date" not in html
    assert mapping.tables_label_mismatches(cfg) == []


# ------------------------------------------------------------------- the paper's run config


@pytest.fixture(scope="module")
def paper(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper_project")
    cfg = mcfg.load_config(PAPER)
    written = fake_run(root, cfg)
    # VQA test: the evaluator's pending block, then both server phases imported for ViT-L
    pending = {"overall": None, "status": "needs server submission",
               "submission_file": "metrics.evalai_submission.json"}
    for model in ("mplug_base", "mplug_base_4m"):
        write_json(root / mcfg.eval_json(cfg, model, "vqa", "test"),
                   {"task": "vqa", "split": "test", "metrics": pending})
    write_json(root / mcfg.eval_json(cfg, "mplug_large", "vqa", "test"),
               {"task": "vqa", "split": "test", "metrics": {
                   "test-dev": {"overall": 81.27}, "test-std": {"overall": 70.0}}})  # fixture
    comps = {c: {"images_obtained": 1000 + i, "texts_obtained": 2000 + i}  # fixture counts
             for i, c in enumerate(mapping.TABLE12_SOURCES.values())}
    write_json(root / mcfg.data_stats(cfg, "pretrain_14m"), {"components": comps})
    return cfg, written, _report(root, PAPER, cfg["run"])


def test_paper_tree_fills_main_rows_from_the_large_model(paper):
    cfg, written, out = paper
    for table in (1, 3, 4, 5, 7, 8, 9):
        df = _csv(out, table).set_index(["model", "pretrain_data", "setting", "metric"])
        for cell in mapping.cells_for_table(table):
            row = df.loc[(cell.model, cell.pretrain_data, cell.setting, cell.metric)]
            assert row.status in FILLED, (cell, row.reason)
            assert float(row.reproduced) == _expected(cfg, cell, "mplug_large", cell.split, written)


def test_paper_video_qa_comes_from_the_base_model(paper):
    cfg, written, out = paper
    t10 = _csv(out, 10)
    t10 = t10[t10.model == "mPLUG"].set_index("setting")
    assert t10.loc["MSRVTT-QA"].source.endswith("mplug_base/eval/video_qa_msrvtt/test/metrics.json")
    assert t10.loc["VATEX-Cap"].source.endswith("mplug_large/eval/video_caption/test/metrics.json")


def test_paper_vqa_server_phases(paper):
    _, _, out = paper
    t2 = _csv(out, 2).set_index(["model", "pretrain_data", "setting"])
    assert t2.loc[("mPLUGViT-L", "14M", "VQA v2 test-dev")].reproduced == "81.27"
    assert t2.loc[("mPLUGViT-L", "14M", "VQA v2 test-std")].reproduced == "70.0"
    for data, model in (("4M", "mplug_base_4m"), ("14M", "mplug_base")):
        row = t2.loc[("mPLUGViT-B", data, "VQA v2 test-dev")]
        assert row.status == "server" and "metrics.evalai_submission.json" in row.reason
        assert row.source.endswith(f"results/paper/{model}/eval/vqa/test/metrics.json")


def test_paper_table12_reads_preprocess_components(paper):
    _, _, out = paper
    t12 = _csv(out, 12).set_index(["model", "metric"])
    assert t12.loc[("COCO", "image")].reproduced.startswith("1,000")
    assert t12.loc[("CC12M", "text")].reproduced.startswith("2,004")
    assert t12.loc[("COCO", "image")].source.endswith("data/paper/pretrain_14m/stats.json")


def test_paper_summary_settings_match_table11_where_official_equals_paper(paper):
    _, _, out = paper
    t11 = _csv(out, 11).set_index(["model", "metric"])
    assert t11.loc[("NLVR2", "LR (ViT-L/BERTbase)")].status == "match"  # no official recipe
    assert t11.loc[("VQA", "LR (ViT-L/BERTbase)")].status == "differs"  # official 3e-5
    assert t11.loc[("VQA", "LR (ViT-L/BERTbase)")].reproduced == "3e-05/5e-06"


def test_report_without_config_says_what_to_pass(tmp_path, capsys):
    (tmp_path / "results" / "x").mkdir(parents=True)
    rc = main(["report", "--results", str(tmp_path / "results/x"), "--out", str(tmp_path / "o")])
    assert rc != 0
    assert "--config" in capsys.readouterr().err


def test_json_reads_only_table_inputs(paper):
    """table_inputs (the DAG's tableNN inputs) lists exactly the files the report cites."""
    cfg, _, out = paper
    for n in (1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12):
        cited = {s for src in _csv(out, n).source if src for s in src.split("; ")}
        inputs = set(mapping.table_files(cfg, n))
        assert {c for c in cited if any(c.endswith(i) for i in inputs)} == cited, n
    assert json.dumps(mapping.table_files(cfg, 6)) == '["results/paper/bench/train.json"]'
