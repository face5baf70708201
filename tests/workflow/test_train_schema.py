"""Training keys of the run-config schema (issue 4): the learning-rate schedule (albef_epoch +
warmup_epochs), SCST's grad_path, VQA's train_splits; the paper config's schedules; download
names that resolve in the source registry."""
from __future__ import annotations

import pytest
import yaml

from _dryrun import ROOT
from mplug.config import load_config, train_settings
from mplug.errors import ConfigError
from mplug.train.settings import parse_train_settings

PAPER = ROOT / "config" / "config.yaml"
SMOKE = ROOT / "config" / "smoke.yaml"
# schedular.warmup_epochs of each official fine-tuning config (AliceMind mPLUG/configs/*.yaml)
OFFICIAL_WARMUP_EPOCHS = {"vqa": 4, "caption_ce": 4, "caption_scst": 4, "retrieval_coco": 1,
                          "retrieval_flickr": 1, "grounding_mixed": 20, "grounding_refcoco": 20}


@pytest.fixture
def smoke():
    return yaml.safe_load(SMOKE.read_text())


def _rejects(tmp_path, cfg, *needles):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    for needle in needles:
        assert needle in str(err.value), str(err.value)


def _settings(cfg, job, hparams="official"):
    cfg = dict(cfg, hparams=hparams)
    return parse_train_settings(train_settings(cfg, "finetune", job, "mplug_large"), 0, job)


def test_paper_config_fine_tunes_use_the_official_albef_epoch_schedule():
    cfg = load_config(PAPER)
    for job, warmup in OFFICIAL_WARMUP_EPOCHS.items():
        s = _settings(cfg, job)
        assert (s.optim.schedule, s.optim.warmup_epochs) == ("albef_epoch", warmup), job
        assert _settings(cfg, job, "paper").optim.schedule == "cosine", job  # paper 5.1 / Table 11
    for job in ("nlvr2", "snli_ve"):  # no official script: Table 11's cosine
        assert _settings(cfg, job).optim.schedule == "cosine"
    scst = _settings(cfg, "caption_scst")
    assert scst.loop.eval_every == 1500 and scst.scst["grad_path"] == "beam"
    assert _settings(cfg, "vqa").train_splits == ("train", "val", "vg_qa")


def test_schedule_keys_are_selectable_and_validated(tmp_path, smoke):
    train = smoke["finetune"]["caption_ce"]["train"]
    train.update(scheduler="albef_epoch", warmup_epochs=2)
    path = tmp_path / "ok.yaml"
    path.write_text(yaml.safe_dump(smoke, sort_keys=False))
    s = parse_train_settings(train_settings(load_config(path), "finetune", "caption_ce",
                                            next(iter(smoke["models"]))), 0)
    assert (s.optim.schedule, s.optim.warmup_epochs) == ("albef_epoch", 2)

    train["scheduler"] = "step"
    _rejects(tmp_path, smoke, "finetune.caption_ce.train.scheduler", "albef_epoch")
    train.update(scheduler="albef_epoch", warmup_epochs=-1)
    _rejects(tmp_path, smoke, "finetune.caption_ce.train.warmup_epochs")


@pytest.mark.parametrize("job, key, value", [
    ("caption_scst", "scst", {"grad_path": "sample"}),
    ("vqa", "train_splits", ["train", "test"]),
    ("vqa", "train_splits", []),
])
def test_training_option_errors_name_the_key(tmp_path, smoke, job, key, value):
    train = smoke["finetune"][job]["train"]
    train[key] = {**train.get(key, {}), **value} if isinstance(value, dict) else value
    _rejects(tmp_path, smoke, f"finetune.{job}.train.{key}")


def test_every_download_name_in_the_shipped_configs_resolves():
    from mplug.data.sources import SOURCES

    for path in (PAPER, SMOKE):
        datasets = load_config(path)["data"]["datasets"]
        names = {d for entry in datasets.values() for d in entry["downloads"]}
        unknown = sorted(names - set(SOURCES))
        assert not unknown, f"{path.name}: download names not in mplug/data/sources.py: {unknown}"
