"""Pretraining from scratch starts from CLIP-ViT + BERT-base (paper 5.1) or, only when the config
says `pretrained.init: random`, from random weights: never silently from random weights."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from _toyrun import make_tiny_config
from mplug.cli import main
from mplug.config import load_config
from mplug.errors import ConfigError


def _config(tmp_path: Path, init) -> Path:
    path = make_tiny_config(tmp_path / "c.yaml", max_steps=1)
    cfg = yaml.safe_load(path.read_text())
    cfg["data"]["resources_dir"] = str(tmp_path / "res")
    if init is None:
        cfg["pretrained"].pop("init")
    else:
        cfg["pretrained"]["init"] = init
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def test_a_config_without_init_or_without_an_archs_clip_is_refused_at_planning(tmp_path):
    with pytest.raises(ConfigError, match="pretrained.init: random"):
        load_config(_config(tmp_path, None))
    bert = str(tmp_path / "res" / "bert_base_uncased")
    with pytest.raises(ConfigError, match="no CLIP weights for mplug_tiny"):
        load_config(_config(tmp_path, {"clip": {"mplug_base": "x.tar"}, "bert": bert}))


def test_pretraining_without_the_init_files_names_the_file_and_the_download(world, tmp_path, capsys,
                                                                            dist_env_restored):
    clip = tmp_path / "res" / "clip_vit_b16" / "ViT-B-16.tar"
    config = _config(tmp_path, {"clip": {"mplug_tiny": str(clip)},
                                "bert": str(tmp_path / "res" / "bert_base_uncased")})
    out = tmp_path / "run"
    rc = main(["train", "pretrain", "--config", str(config), "--model", "mplug_tiny", "--stage",
               "pretrain_14m", "--data", str(world), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err, err[-2000:]
    assert str(clip) in err and "mplug data download clip_vit_b16" in err, err[-2000:]
    assert not (out / "model.safetensors").exists()


def test_random_init_only_when_configured_and_recorded(world, tmp_path, dist_env_restored):
    import json

    out = tmp_path / "run"
    rc = main(["train", "pretrain", "--config", str(_config(tmp_path, "random")), "--model",
               "mplug_tiny", "--stage", "pretrain_14m", "--data", str(world), "--out", str(out)])
    assert rc == 0
    assert json.loads((out / "summary.json").read_text())["run"]["init"] == {"random": True}
