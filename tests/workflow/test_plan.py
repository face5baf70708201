"""`mplug plan`: GPUs from the config's resources, durations only from a measured bench JSON."""
import json
from pathlib import Path

import pytest

from mplug import config as mcfg
from mplug import plan
from mplug.cli import main
from mplug.errors import DataError

ROOT = Path(__file__).resolve().parents[2]


def _setup(tmp_path, monkeypatch):
    cfg = mcfg.load_config(ROOT / "config" / "config.yaml")
    monkeypatch.chdir(tmp_path)
    for ds in cfg["pretrain"]["pretrain_14m"]["datasets"]:
        p = Path(mcfg.data_stats(cfg, ds))
        p.parent.mkdir(parents=True)
        p.write_text(json.dumps({"examples": 1000}))
    bench = tmp_path / "train.json"
    bench.write_text(json.dumps({"hardware": "test", "rows": [{"setting": "baseline", "samples_per_s": 2.0},
                                                              {"setting": "+zero", "samples_per_s": 5.0}]}))
    return cfg, str(bench)


def test_pretrain_hours_from_bench_and_resources(tmp_path, monkeypatch):
    cfg, bench = _setup(tmp_path, monkeypatch)
    result = plan.make_plan(cfg, bench)
    row = next(r for r in result["rows"] if r["job"] == "pretrain_14m")
    res = cfg["resources"]["rules"]["pretrain"]
    gpus = res["nodes"] * res["gpus_per_node"]
    epochs = cfg["pretrain"]["pretrain_14m"]["train"]["epochs"]
    assert row["gpus"] == gpus
    assert row["samples"] == 1000 * epochs
    assert row["wall_hours"] == pytest.approx(1000 * epochs / (5.0 * gpus) / 3600)
    assert row["gpu_hours"] == pytest.approx(row["wall_hours"] * gpus)
    assert "bench" in row["source"] and "+zero" in row["source"]
    vqa = next(r for r in result["rows"] if r["job"] == "vqa" and r["rule"] == "finetune")
    assert vqa["gpu_hours"] is None and "missing" in vqa["source"]
    assert result["total_gpu_hours"] == pytest.approx(row["gpu_hours"])


def test_cli_json_and_no_bench(tmp_path, monkeypatch, capsys):
    _setup(tmp_path, monkeypatch)
    out = tmp_path / "plan.json"
    assert main(["plan", "--config", str(ROOT / "config" / "config.yaml"), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "no bench JSON given" in text and "a limit, not an estimate" in text
    assert json.loads(out.read_text())["total_gpu_hours"] is None


def test_bad_bench_is_a_clear_error(tmp_path, monkeypatch, capsys):
    cfg, bench = _setup(tmp_path, monkeypatch)
    Path(bench).write_text(json.dumps({"rows": []}))
    with pytest.raises(DataError, match="samples_per_s"):
        plan.make_plan(cfg, bench)
    assert main(["plan", "--config", str(ROOT / "config" / "config.yaml"), "--bench", bench]) != 0
    assert "samples_per_s" in capsys.readouterr().err


def test_plan_vs_actual_reads_summary_wall_seconds(tmp_path, monkeypatch):
    cfg, bench = _setup(tmp_path, monkeypatch)
    Path(mcfg.bench_json(cfg, "train")).parent.mkdir(parents=True)
    Path(mcfg.bench_json(cfg, "train")).write_text(Path(bench).read_text())
    key = next(iter(mcfg.enabled_models(cfg)))
    summ = Path(mcfg.checkpoint_dir(cfg, key, "pretrain_14m")) / "summary.json"
    summ.parent.mkdir(parents=True)
    summ.write_text(json.dumps({"wall_seconds": 100.0}))
    rows = plan.plan_vs_actual(cfg, tmp_path)
    assert [(r["job"], r["model"]) for r in rows] == [("pretrain_14m", key)]
    gpus = cfg["resources"]["rules"]["pretrain"]["nodes"] * cfg["resources"]["rules"]["pretrain"]["gpus_per_node"]
    planned = 1000 * cfg["pretrain"]["pretrain_14m"]["train"]["epochs"] / (5.0 * gpus)
    assert rows[0]["actual_s"] == 100.0 and rows[0]["planned_s"] == pytest.approx(planned)
    assert rows[0]["ratio"] == pytest.approx(planned / 100.0)
