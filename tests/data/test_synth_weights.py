"""Weight sources written for runs on the synthetic world (mplug/data/synth_weights.py): the files
sit where `mplug data download` puts them, in the formats the real files have, and the real
loaders take them - CLIP + BERT for pretraining init, the official layout for `mplug convert`."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mplug.config import load_config
from mplug.data.synth_weights import write_source
from mplug.errors import ConfigError
from mplug.miniature import miniaturise
from mplug.models.convert import _load_bert, convert_checkpoint, init_from_clip_bert
from mplug.models.loading import load_state_dict_safe
from mplug.models.registry import get_config
from mplug.models.tasks import build_model

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    cfg = miniaturise(load_config(REPO / "config" / "config.yaml"))
    cfg["data"]["resources_dir"] = str(root / "resources")
    cfg["pretrained"]["init"]["clip"] = {a: p.replace("resources", str(root / "resources"), 1)
                                         for a, p in cfg["pretrained"]["init"]["clip"].items()}
    cfg["pretrained"]["init"]["bert"] = str(root / "resources" / "bert_base_uncased")
    for stages in cfg["pretrained"]["official"].values():
        for stage, path in stages.items():
            stages[stage] = path.replace("resources", str(root / "resources"), 1)
    vocab = root / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]"] + [f"[unused{i}]" for i in range(99)]
                               + ["[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "red", "cube"]) + "\n")
    return cfg, root / "resources", vocab


def test_clip_and_bert_initialise_the_miniature_large_model(mini):
    cfg, res, vocab = mini
    write_source(cfg, "clip_vit_l14", res, vocab)
    write_source(cfg, "bert_base_uncased", res, vocab)
    assert json.loads((res / "clip_vit_l14" / "download.json").read_text())["archs"] == ["mplug_large_mini"]
    bert_dir = res / "bert_base_uncased"
    assert {p.name for p in bert_dir.iterdir()} >= {"model.safetensors", "config.json", "vocab.txt",
                                                     "tokenizer_config.json", "download.json"}
    from transformers import BertForPreTraining, BertTokenizer

    BertForPreTraining.from_pretrained(bert_dir)  # the HF library reads its own format back
    assert BertTokenizer.from_pretrained(bert_dir).tokenize("a red cube") == ["a", "red", "cube"]
    net = build_model("mplug_large_mini", "pretrain")
    clip = load_state_dict_safe(res / "clip_vit_l14" / "ViT-L-14.tar")
    _, report = init_from_clip_bert(net.state_dict(), clip, _load_bert(bert_dir),
                                    text_layers=get_config("mplug_large_mini").text_layers)
    vit = [k for k in net.state_dict() if k.startswith("visual_encoder.")]
    assert report.kept >= len(vit) + 50 and not report.mismatched


def test_official_checkpoints_convert_with_nothing_missing(mini, tmp_path):
    cfg, res, vocab = mini
    manifest = write_source(cfg, "mplug_large_v2", res, vocab)
    assert manifest["files"][0]["name"] == "mplug_large_v2.pth"
    raw = torch.load(res / "mplug_large_v2" / "mplug_large_v2.pth", weights_only=True)
    assert "visual_encoder.visual.conv1.weight" in raw["model"]
    assert "fusion_encoder.fusion.encoder.layer.11.crossattention.self.query.weight" in raw["model"]
    report = convert_checkpoint(res / "mplug_large_v2" / "mplug_large_v2.pth", tmp_path / "out.safetensors",
                                "mplug_large_mini", task="pretrain")
    assert report.ok and report.kept > 100, report.format()


def test_a_source_the_config_does_not_read_is_an_error(mini):
    cfg, res, vocab = mini
    cfg = dict(cfg, pretrained=dict(cfg["pretrained"], official={}))
    with pytest.raises(ConfigError, match="no file of the run config is in mplug_base/"):
        write_source(cfg, "mplug_base", res, vocab)
