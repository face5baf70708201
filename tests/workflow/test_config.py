"""Run-config validation (issue 8 item 4): bad configs stop before any work, naming the key.

Both entry points read the same schema: `mplug.config.load_config` (every `mplug` verb) and the
Snakefile (`snakemake` refuses to build a DAG)."""
from __future__ import annotations

import copy

import pytest
import yaml

from _dryrun import ROOT, snakemake
from mplug.config import eval_settings, load_config, model_settings, train_settings
from mplug.errors import ConfigError
from mplug.report.mapping import table_files

SMOKE = ROOT / "config" / "smoke.yaml"
PAPER = ROOT / "config" / "config.yaml"


def _write(tmp_path, cfg, name="bad.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture
def smoke():
    return yaml.safe_load(SMOKE.read_text())


def _rejects(tmp_path, cfg, *needles):
    path = _write(tmp_path, cfg)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert str(path) in msg
    for needle in needles:
        assert needle in msg, msg
    return msg


def test_shipped_configs_are_valid():
    for path in (PAPER, SMOKE):
        assert load_config(path)["run"] in ("paper", "smoke")


def test_unknown_key(tmp_path, smoke):
    smoke["finetune"]["vqa"]["train"]["learning_rate"] = 1e-4
    msg = _rejects(tmp_path, smoke, "finetune.vqa.train.learning_rate", "unknown key",
                   "lr_text")  # names what is allowed
    assert "(line " in msg


def test_unknown_top_level_key_with_line(tmp_path):
    text = SMOKE.read_text().replace("seed: 0\n", "seed: 0\nsede: 1\n", 1)
    path = tmp_path / "typo.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"sede \(line 10\): unknown key 'sede'"):
        load_config(path)


def test_wrong_type(tmp_path, smoke):
    smoke["pretrain"]["pretrain_14m"]["train"]["batch_size"] = "thirty-two"
    _rejects(tmp_path, smoke, "pretrain.pretrain_14m.train.batch_size", "wrong type", "integer")


def test_missing_required_value(tmp_path, smoke):
    del smoke["finetune"]["nlvr2"]["init"]
    _rejects(tmp_path, smoke, "finetune.nlvr2", "'init' is required")
    smoke2 = yaml.safe_load(SMOKE.read_text())
    smoke2["run"] = None
    _rejects(tmp_path, smoke2, "run", "wrong type")


def test_unknown_task_name(tmp_path, smoke):
    smoke["finetune"]["vqa"]["task"] = "vqa2"
    _rejects(tmp_path, smoke, "finetune.vqa.task", "unknown task 'vqa2'", "snli_ve")
    smoke2 = yaml.safe_load(SMOKE.read_text())
    smoke2["evaluate"]["video_caption"]["task"] = "video_captions"
    _rejects(tmp_path, smoke2, "evaluate.video_caption.task", "unknown task")


def test_impossible_stride(tmp_path, smoke):
    smoke["models"]["mplug_smoke"]["stride"] = 4   # mplug_smoke has 3 fusion layers
    _rejects(tmp_path, smoke, "models.mplug_smoke.stride", "impossible", "1..3")
    smoke["models"]["mplug_smoke"]["stride"] = 0
    _rejects(tmp_path, smoke, "models.mplug_smoke.stride")


def test_unknown_model_and_broken_references(tmp_path, smoke):
    bad = copy.deepcopy(smoke)
    bad["models"]["mplug_smoke"]["arch"] = "mplug_hugee"
    _rejects(tmp_path, bad, "models.mplug_smoke.arch", "unknown model 'mplug_hugee'")
    bad = copy.deepcopy(smoke)
    bad["models"]["mplug_smoke"]["finetune"].remove("caption_ce")   # SCST starts from it
    _rejects(tmp_path, bad, "starts from 'caption_ce'")
    bad = copy.deepcopy(smoke)
    bad["evaluate"]["vqa"]["dataset"] = "vqa3"
    _rejects(tmp_path, bad, "evaluate.vqa.dataset", "unknown dataset 'vqa3'")
    bad = copy.deepcopy(smoke)
    bad["pretrain"]["pretrain_5m"] = bad["pretrain"]["pretrain_14m"]
    _rejects(tmp_path, bad, "pretrain_5m", "pretrain_14m")


def test_seeds_need_a_fine_tuned_checkpoint_and_seed_paths(tmp_path, smoke):
    from mplug import config as mcfg

    bad = copy.deepcopy(smoke)
    bad["evaluate"]["nocaps_zeroshot"]["seeds"] = [0, 1]
    _rejects(tmp_path, bad, "evaluate.nocaps_zeroshot.seeds", "zero-shot")
    bad = copy.deepcopy(smoke)
    bad["evaluate"]["vqa"]["checkpoint"] = "pretrain_4m"
    bad["evaluate"]["vqa"]["seeds"] = [0, 1]
    _rejects(tmp_path, bad, "evaluate.vqa.seeds", "'pretrain_4m' is not a fine-tuning job")
    bad = copy.deepcopy(smoke)
    bad["evaluate"]["vqa"]["seeds"] = [1, 1]
    _rejects(tmp_path, bad, "evaluate.vqa.seeds")
    cfg = copy.deepcopy(smoke)
    cfg["evaluate"]["caption"]["seeds"] = [3, 0]  # the run's seed (0) keeps the plain paths
    assert mcfg.other_seeds(cfg, "caption") == [3] and mcfg.eval_seeds(cfg, "vqa") == [0]
    assert mcfg.finetune_chain(cfg, "caption_scst") == ["caption_scst", "caption_ce"]
    assert mcfg.finetune_seeds(cfg, "caption_ce") == [3] and mcfg.finetune_seeds(cfg, "vqa") == []
    assert mcfg.checkpoint_dir(cfg, "m", "caption_ce", 3) == "results/smoke/m/finetune/caption_ce/seed3"
    assert mcfg.checkpoint_dir(cfg, "m", "caption_ce", 0) == mcfg.checkpoint_dir(cfg, "m", "caption_ce")
    assert mcfg.eval_json(cfg, "m", "caption", "test", 3) == "results/smoke/m/eval/caption/test/seed3/metrics.json"
    assert "results/smoke/mplug_smoke/eval/caption/test/seed3/metrics.json" in table_files(cfg, 1)


def test_official_source_needs_checkpoints(tmp_path):
    cfg = yaml.safe_load(PAPER.read_text())
    cfg["pretrained"]["source"] = "official"
    _rejects(tmp_path, cfg, "pretrained.official.mplug_base_4m", "enabled: false")


def test_real_data_downloads_cover_what_preprocessing_reads(tmp_path):
    """Issue 14: the VQA test images were never downloaded; a config that leaves out a source a
    dataset's preprocessing reads (or names an unknown one) stops at planning."""
    cfg = yaml.safe_load(PAPER.read_text())
    cfg["data"]["datasets"]["vqa"]["downloads"] = ["vqa_v2", "coco", "vg"]
    cfg["data"]["datasets"]["nlvr2"]["downloads"] = ["nlvr2", "nlvr3"]
    _rejects(tmp_path, cfg, "data.datasets.vqa.downloads", "lacks coco_test2015",
             "data.datasets.nlvr2.downloads", "unknown download source 'nlvr3'")


def test_yaml_syntax_error_names_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("run: smoke\ndata: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken.yaml line \d+"):
        load_config(path)


def test_snakefile_stops_before_any_work(tmp_path, smoke):
    smoke["finetune"]["snli_ve"]["train"]["epoch"] = 3
    path = _write(tmp_path, smoke)
    res = snakemake("all", "-n", "--configfile", str(path))
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "finetune.snli_ve.train.epoch" in out and "unknown key 'epoch'" in out
    assert "Job stats" not in out


def test_settings_resolution():
    cfg = load_config(PAPER)
    base = train_settings(cfg, "finetune", "vqa", "mplug_base")
    large = train_settings(cfg, "finetune", "vqa", "mplug_large")
    assert (base["batch_size"], base["image_res"]) == (1024, 384)
    assert (large["batch_size"], large["image_res"], large["lr_text"]) == (2048, 336, 3e-5)
    scst = train_settings(cfg, "finetune", "caption_scst", "mplug_large")
    assert scst["lr_text"] == 1e-6 and scst["scst"]["baseline"] == "beam_mean"
    pre = train_settings(cfg, "pretrain", "pretrain_14m", "mplug_large")
    assert (pre["image_res"], pre["lr_vision"], pre["queue_size"], pre["momentum"],
            pre["batch_size"], pre["epochs"]) == (224, 5e-6, 65536, 0.995, 1024, 30)
    assert model_settings(cfg, "mplug_base_4m") == {"arch": "mplug_base",
                                                     "schedule": "official", "stride": 3}
    assert eval_settings(cfg, "caption", "mplug_large")["beam_size"] == 5
    paper = dict(cfg, hparams="paper")
    assert train_settings(paper, "finetune", "vqa", "mplug_large")["image_res"] == 504
    assert eval_settings(paper, "caption", "mplug_large")["beam_size"] == 10
    assert eval_settings(paper, "video_caption", "mplug_large")["prompt"] == "a video of"
    # Table 3 needs exactly the two fine-tuned retrieval evaluations
    assert table_files(cfg, 3) == [
        "results/paper/mplug_large/eval/retrieval_coco/test/metrics.json",
        "results/paper/mplug_large/eval/retrieval_flickr/test/metrics.json"]
