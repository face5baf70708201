"""`mplug bench loader`: the job's own training data (as `mplug train` builds it) through a
DataLoader per worker count, on the synthetic world; timings printed, never asserted."""
import json
import math
from pathlib import Path

import pytest

from mplug.cli import main

ROOT = Path(__file__).resolve().parents[2]
SMOKE = str(ROOT / "config" / "smoke.yaml")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from mplug.data.synth import generate

    out = tmp_path_factory.mktemp("world") / "data"
    generate(out, seed=0, scale="tiny", progress=False)
    return out


def _bench(tmp_path, world, *args) -> tuple[int, dict | None]:
    out = tmp_path / "loader.json"
    rc = main(["bench", "loader", "--config", SMOKE, "--data", str(world), "--quick", "--json",
               str(out), *args])
    return rc, (json.loads(out.read_text()) if rc == 0 else None)


def test_loader_bench_times_each_worker_count_against_the_step(tmp_path, world, capsys):
    train = tmp_path / "train.json"
    train.write_text(json.dumps({"rows": [{"setting": "baseline", "samples_per_s": 2.0},
                                          {"setting": "+zero", "samples_per_s": 4.0}]}))
    rc, data = _bench(tmp_path, world, "--job", "pretrain_14m", "--workers", "0,1", "--batch", "4",
                      "--train-json", str(train))
    assert rc == 0
    assert [r["workers"] for r in data["rows"]] == [0, 1]
    assert data["job"]["task"] == "pretrain" and data["job"]["model"] == "mplug_smoke"
    assert data["train_step"] == {"path": str(train), "setting": "+zero", "samples_per_s": 4.0}
    for r in data["rows"]:
        assert r["batch"] == 4 and math.isfinite(r["samples_per_s"]) and r["samples_per_s"] > 0
        assert r["samples_per_s"] == pytest.approx(data["settings"]["batches"] * 4 / r["time_s"])
        assert r["loader_over_step"] == pytest.approx(r["samples_per_s"] / 4.0)
    assert "loader/step" in capsys.readouterr().out


def test_a_fine_tuning_job_uses_its_batch_and_resolution(tmp_path, world):
    from mplug import config as mcfg

    cfg = mcfg.load_config(SMOKE)
    rc, data = _bench(tmp_path, world, "--job", "vqa", "--workers", "0")
    assert rc == 0 and data["job"]["task"] == "vqa"
    train = mcfg.train_settings(cfg, "finetune", "vqa", "mplug_smoke")
    assert data["rows"][0]["batch"] == train["batch_size"] and data["job"]["image_res"] == train["image_res"]


def test_unknown_job_or_model_is_a_clear_error(tmp_path, world, capsys):
    assert _bench(tmp_path, world, "--job", "nope")[0] != 0
    assert "--job nope: not a pretrain or finetune job" in capsys.readouterr().err
    assert _bench(tmp_path, world, "--job", "vqa", "--model", "mplug_large")[0] != 0
    assert "no enabled model runs vqa (those that do: mplug_smoke)" in capsys.readouterr().err


def test_options_the_loader_cannot_honour_are_refused(tmp_path, world, capsys):
    assert _bench(tmp_path, world, "--job", "vqa", "--repeats", "3")[0] != 0
    assert "--repeats 3: the loader bench times one pass per worker count" in capsys.readouterr().err
    assert _bench(tmp_path, world, "--job", "vqa", "--device", "cuda")[0] != 0
    assert "--device cuda: the data path runs on the CPU" in capsys.readouterr().err


def test_a_stream_without_one_batch_is_an_error_not_a_hang():
    import torch

    from mplug.bench.loader import _time_loader
    from mplug.errors import DataError

    class Empty(torch.utils.data.IterableDataset):
        def __iter__(self):
            return iter(())

    with pytest.raises(DataError, match="no batch of 4 in a whole epoch"):
        _time_loader(Empty(), lambda items: items, 4, 0, 2)
