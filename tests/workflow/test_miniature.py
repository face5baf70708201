"""The paper run in miniature (mplug/miniature.py): config/config.yaml with only sizes shrunk.
Its end-to-end run is tests/e2e/test_miniature_dag.py; here: that it cannot drift from the paper
config, that its architectures are the paper's in miniature, and that both `hparams` variants
and both pretrained sources resolve and plan."""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import yaml

from _dryrun import ROOT, job_stats, snakemake
from mplug.config import enabled_models, load_config, model_settings, train_settings, validate_config
from mplug.miniature import miniaturise, structural_differences
from mplug.models.registry import MINIATURE, get_config

PAPER = ROOT / "config" / "config.yaml"


@pytest.fixture(scope="module")
def paper() -> dict:
    return load_config(PAPER)


@pytest.mark.parametrize("hparams", ["official", "paper"])
def test_the_miniature_differs_from_the_paper_config_only_in_sizes(paper, hparams):
    base = dict(paper, hparams=hparams)
    mini = miniaturise(paper, hparams)
    assert structural_differences(base, mini) == []
    validate_config(mini, source="miniature")
    # what it keeps, spelled out: model keys and stages, jobs and splits, resolutions, init files
    assert mini["models"].keys() == paper["models"].keys()
    for key, model in paper["models"].items():
        for part in ("pretrain", "finetune", "evaluate", "stride", "schedule"):
            assert mini["models"][key][part] == model[part], (key, part)
    for job, entry in paper["evaluate"].items():
        assert mini["evaluate"][job]["splits"] == entry["splits"]
        assert mini["evaluate"][job]["generation"].get("image_res") == entry["generation"].get("image_res")
    assert mini["pretrained"]["official"] == paper["pretrained"]["official"]
    assert sorted(mini["pretrained"]["init"]["clip"].values()) == sorted(paper["pretrained"]["init"]["clip"].values())
    assert mini["tokenizer"] == paper["tokenizer"] and mini["data"]["datasets"] == paper["data"]["datasets"]
    # Table 6 searches its batch as the paper run does, up to a miniature's batch
    assert mini["bench"]["train"]["args"] == [*paper["bench"]["train"]["args"], "--max-batch", "2"]


@pytest.mark.parametrize("change", [
    ("evaluate", "vqa", "splits", ["val"]),
    ("finetune", "vqa", "train", "image_res", 224),
    ("finetune", "caption_scst", "train", "scst", "grad_path", "sample"),
    ("models", "mplug_base", "stride", 2),
    ("pretrained", "source", "official"),
    ("bench", "train", "args", ["--batch", "8"]),
])
def test_a_structural_change_is_reported(paper, change):
    mini = miniaturise(paper)
    node = mini
    *path, last, value = change
    for key in path:
        node = node[key]
    node[last] = value
    wrong = structural_differences(paper, mini)
    assert len(wrong) >= 1 and wrong[0].startswith(".".join(map(str, change[:-1]))), wrong


def test_an_architecture_outside_the_miniature_twins_is_reported(paper):
    mini = miniaturise(paper)
    mini["models"]["mplug_base"]["arch"] = "mplug_smoke"
    assert structural_differences(paper, mini) == ["models.mplug_base.arch: 'mplug_base' -> 'mplug_smoke'"]


SIZE_FIELDS = {"name", "width", "hidden", "layers", "heads", "intermediate", "vocab_size", "text_layers",
               "decoder_layers", "embed_dim", "queue_size"}


def _structure(cfg) -> dict:
    flat = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            flat.update({f"{f.name}.{k}": v for k, v in _structure(value).items()})
        elif f.name not in SIZE_FIELDS:
            flat[f.name] = value
    return flat


@pytest.mark.parametrize("arch", sorted(MINIATURE))
def test_each_miniature_architecture_is_its_paper_architecture_but_smaller(arch):
    paper, mini = get_config(arch), get_config(MINIATURE[arch])
    assert _structure(mini) == _structure(paper)  # patch, position grid, fusion layers, stride ...
    assert mini.use_visn_fc == paper.use_visn_fc
    assert mini.vision.width < paper.vision.width and mini.text.hidden < paper.text.hidden


def _train_jobs(cfg):
    for key, model in enabled_models(cfg).items():
        for stage in model["pretrain"]:
            yield "pretrain", stage, key
        for job in model["finetune"]:
            yield "finetune", job, key


@pytest.mark.parametrize("hparams", ["official", "paper"])
def test_every_job_of_both_variants_resolves_to_a_model_it_can_build(paper, hparams):
    """Training settings and every evaluation job resolve (mplug.eval.job.resolve_job) and give a
    model config that builds at the job's resolution, for the paper run and its miniature."""
    from mplug.eval.job import resolve_job
    from mplug.models import heads
    from mplug.train.settings import parse_train_settings

    head_fields = {f.name for f in dataclasses.fields(heads.HeadOptions)}

    for cfg in (dict(paper, hparams=hparams), miniaturise(paper, hparams)):
        for section, name, key in _train_jobs(cfg):
            where = f"{section}.{name} ({key})"
            settings = parse_train_settings(train_settings(cfg, section, name, key), cfg["seed"], where)
            over = {k: v for k, v in settings.model_overrides.items() if k not in head_fields}
            get_config(model_settings(cfg, key)["arch"], **over)
        for key, model in enabled_models(cfg).items():
            for job in model["evaluate"]:
                resolved = resolve_job(cfg, job, key)
                res = resolved.settings.get("image_res")
                get_config(resolved.arch, **({"image_res": res} if res else {}))


@pytest.fixture(scope="module")
def miniature_configs(tmp_path_factory, paper) -> dict[tuple[str, str], Path]:
    out = {}
    root = tmp_path_factory.mktemp("miniature")
    for hparams in ("official", "paper"):
        for source in ("train", "official"):
            mini = miniaturise(paper, hparams)
            mini["pretrained"]["source"] = source
            if source == "official":  # no 4M-only base checkpoint was released
                mini["models"]["mplug_base_4m"]["enabled"] = False
            path = root / f"{hparams}-{source}.yaml"
            path.write_text(yaml.safe_dump(mini, sort_keys=False))
            out[hparams, source] = path
    return out


@pytest.mark.parametrize("hparams", ["official", "paper"])
@pytest.mark.parametrize("source", ["train", "official"])
def test_both_variants_and_both_pretrained_sources_plan(miniature_configs, hparams, source):
    res = snakemake("all", "-n", "-p", "--configfile", str(miniature_configs[hparams, source]))
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    stats = job_stats(out)
    assert stats["finetune"] == 13 - (source == "official") and stats["report"] == 1, stats
    if source == "train":
        assert stats["pretrain"] == 5 and "convert_official" not in stats, stats
        assert stats["synth_weights"] == 3, stats  # CLIP B/16, CLIP L/14, BERT
    else:
        assert stats["convert_official"] == 4 and "pretrain" not in stats, stats
        assert stats["synth_weights"] == 4, stats  # mplug_base, mplug_large, mplug_large_v2, BERT
        assert "mplug data synth-weights mplug_large_v2" in out


def test_the_command_writes_a_config_the_snakefile_takes(tmp_path):
    from mplug.cli import main

    out = tmp_path / "mini.yaml"
    assert main(["miniature", "--config", str(PAPER), "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# GENERATED by `mplug miniature")
    cfg = load_config(out)
    assert cfg["run"] == "miniature" and cfg["models"]["mplug_large"]["arch"] == "mplug_large_mini"
    assert structural_differences(load_config(PAPER), copy.deepcopy(cfg)) == []
