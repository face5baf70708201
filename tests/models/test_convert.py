"""Official checkpoint conversion, on state dicts synthesised from the official key lists.

Two kinds of synthetic checkpoints:
* real names AND real shapes (tests/models/fixtures/official-keys/*.txt: state-dict keys and shapes
  of the official fine-tuning models, dumped from the official code with random weights) as meta tensors,
  converted against our real configs built on the meta device: proves every official key maps
  or is a documented drop, every one of our keys is covered, and every shape agrees;
* our tiny model's weights renamed to the official layout (with dead weights added), converted
  by the CLI and loaded back strictly: proves the values land in the right place.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from mplug.cli import main as cli_main
from mplug.errors import CheckpointError
from mplug.models.convert import convert_official, init_from_clip_bert, rename_official_key
from mplug.models.loading import load_into, load_state_dict_safe
from mplug.models.tasks import build_model

torch.set_num_threads(1)
KEYS_DIR = Path(__file__).parent / "fixtures" / "official-keys"


def official_meta_state(name: str) -> dict[str, torch.Tensor]:
    state = {}
    for line in (KEYS_DIR / name).read_text().splitlines():
        if line.strip():
            key, shape = line.split("\t")
            state[key] = torch.empty(ast.literal_eval(shape), device="meta")
    return state


def meta_target(model: str, task: str, **over) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return build_model(model, task, **over).state_dict()


@pytest.mark.parametrize("keys,model,task", [
    ("keys_vqa_base.txt", "mplug_base", "vqa"),
    ("keys_vqa_large.txt", "mplug_large", "vqa"),
    ("keys_cap_large.txt", "mplug_large", "caption"),
    ("keys_ret_large.txt", "mplug_large", "retrieval"),
    ("keys_grd_large.txt", "mplug_large", "grounding"),
])
def test_official_keys_and_shapes_convert_exactly(keys, model, task):
    state = official_meta_state(keys)
    target = meta_target(model, task)
    out, report = convert_official(state, target, task=task)
    assert report.ok, report.format()
    assert set(out) == set(target)
    assert not report.filled, report.format(verbose=True)  # nothing had to be invented
    dropped = {k for keys in report.dropped.values() for k in keys}
    # the dead weights the official code never runs are dropped, never loaded
    assert "visual_encoder.visual.proj" in dropped and "fusion_encoder.encoder.layer.0.output.dense.weight" in dropped
    assert ("fusion_encoder.encoder.layer.6.attention.self.query.weight",
            "fusion_encoder.encoder.layer.0.attention.self.query.weight") in report.renamed


def _pretrain_style(state: dict) -> dict:
    """Add the pre-training wrappers: text_encoder.bert., fusion_encoder.fusion., MLM head."""
    out = {}
    for k, v in state.items():
        for plain, wrapped in (("text_encoder.", "text_encoder.bert."), ("text_encoder_m.", "text_encoder_m.bert."),
                               ("fusion_encoder.", "fusion_encoder.fusion."),
                               ("fusion_encoder_m.", "fusion_encoder_m.fusion.")):
            if k.startswith(plain):
                k = wrapped + k[len(plain):]
                break
        out[k] = v
    return out


def test_pretrain_checkpoint_converts_for_pretrain_and_finetuning():
    ret = official_meta_state("keys_ret_large.txt")
    cap = official_meta_state("keys_cap_large.txt")
    state = dict(ret, **{k: v for k, v in cap.items() if k.startswith("text_decoder.")})
    state = _pretrain_style(state)
    for k, v in cap.items():  # the BertForMaskedLM head of the pre-training text encoder
        if k.startswith("text_decoder.cls."):
            state["text_encoder." + k[len("text_decoder."):]] = v
    assert "text_encoder.bert.embeddings.word_embeddings.weight" in state
    out, report = convert_official(state, meta_target("mplug_large", "pretrain"), task="pretrain")
    assert report.ok and "mlm_head.predictions.transform.dense.weight" in out
    # the same checkpoint initialises fine-tuning (official loaders strip the wrappers)
    for task in ("vqa", "caption", "retrieval", "grounding"):
        target = meta_target("mplug_large", task)
        out, report = convert_official(state, target, task=task)
        assert report.ok and set(out) == set(target), (task, report.format())


def test_rename_rules():
    assert rename_official_key("visual_encoder.visual.conv1.weight", 6) == ("visual_encoder.conv1.weight", "")
    assert rename_official_key("visual_encoder_m.visual.ln_post.bias", 6) == ("visual_encoder_m.ln_post.bias", "")
    assert rename_official_key("visual_encoder.token_embedding.weight", 6)[0] is None
    assert rename_official_key("fusion_encoder.fusion.encoder.layer.11.output.dense.bias", 6) == (
        "fusion_encoder.encoder.layer.5.output.dense.bias", "")
    assert rename_official_key("fusion_encoder.encoder.layer.5.output.dense.bias", 6)[0] is None
    assert rename_official_key("text_encoder.bert.encoder.layer.0.output.dense.bias", 6)[0] == \
        "text_encoder.encoder.layer.0.output.dense.bias"
    assert rename_official_key("text_encoder.cls.predictions.bias", 6)[0] == "mlm_head.predictions.bias"
    assert rename_official_key("text_decoder.bert.encoder.layer.11.attention.self.key.bias", 6)[0] == \
        "text_decoder.bert.encoder.layer.11.attention.self.key.bias"
    assert rename_official_key("temp", 6) == ("temp", "")
    assert rename_official_key("bbox_prob_mask", 6)[0] is None


# ----------------------------------------------------------------------------- with values
def to_official(state: dict, n_fusion: int, dead_fusion: int = 2) -> dict:
    """Our tiny state dict -> the official layout, with the dead weights the official code has."""
    out = {}
    for k, v in state.items():
        if k.startswith(("visual_encoder.", "visual_encoder_m.")):
            top, rest = k.split(".", 1)
            k = f"{top}.visual.{rest}"
        elif k.startswith("fusion_encoder.encoder.layer."):
            idx, rest = k[len("fusion_encoder.encoder.layer."):].split(".", 1)
            k = f"fusion_encoder.encoder.layer.{int(idx) + dead_fusion}.{rest}"
            if int(idx) < dead_fusion:  # a never-run copy (official builds 12, runs the last 6)
                out[f"module.fusion_encoder.encoder.layer.{idx}.{rest}"] = torch.randn_like(v)
        out["module." + k] = v.clone()
    out["module.visual_encoder.visual.proj"] = torch.randn(4, 4)
    out["module.visual_encoder.token_embedding.weight"] = torch.randn(7, 4)
    out["module.fusion_encoder.embeddings.word_embeddings.weight"] = torch.randn(7, 4)
    out["module.text_encoder.embeddings.position_ids"] = torch.arange(8)[None]
    return out


@pytest.fixture()
def tiny_vqa():
    torch.manual_seed(0)
    return build_model("mplug_tiny", "vqa")


def test_cli_convert_roundtrip(tmp_path, tiny_vqa, capsys):
    ours = tiny_vqa.state_dict()
    torch.save({"model": to_official(ours, 4), "epoch": 1}, tmp_path / "official.pth")
    rc = cli_main(["convert", "--model", "mplug_tiny", "--task", "vqa",
                   str(tmp_path / "official.pth"), str(tmp_path / "out.safetensors")])
    assert rc == 0
    text = capsys.readouterr().out
    assert "missing: 0" in text and "unexpected: 0" in text and "shape-mismatched: 0" in text
    state = load_state_dict_safe(tmp_path / "out.safetensors")
    torch.manual_seed(1)
    fresh = build_model("mplug_tiny", "vqa")
    assert load_into(fresh, state).ok
    for key in ("fusion_encoder.encoder.layer.3.output.dense.weight", "visual_encoder.conv1.weight",
                "text_decoder.bert.encoder.layer.1.crossattention.self.key.weight"):
        assert torch.equal(fresh.state_dict()[key], ours[key]), key
    assert fresh.text_decoder.cls.predictions.decoder.weight.data_ptr() == \
        fresh.text_decoder.bert.embeddings.word_embeddings.weight.data_ptr()  # tie survives


def test_cli_resizes_position_embedding(tmp_path, tiny_vqa):
    torch.save(to_official(tiny_vqa.state_dict(), 4), tmp_path / "o.pth")
    assert cli_main(["convert", "--model", "mplug_tiny", "--image-res", "48",
                     str(tmp_path / "o.pth"), str(tmp_path / "o.safetensors")]) == 0
    pos = load_state_dict_safe(tmp_path / "o.safetensors")["visual_encoder.positional_embedding"]
    old = tiny_vqa.visual_encoder.positional_embedding.detach()
    assert pos.shape == (1 + 6 * 6, old.shape[1])
    assert torch.equal(pos[0], old[0])  # the CLS row is kept as is


def test_errors_name_the_key(tmp_path, tiny_vqa):
    target = {k: v for k, v in tiny_vqa.state_dict().items()}
    official = to_official(target, 4)
    official = {k[len("module."):]: v for k, v in official.items()}
    bad = dict(official)
    bad["text_encoder.encoder.layer.1.output.dense.weight"] = torch.zeros(3, 3)
    with pytest.raises(CheckpointError, match=r"text_encoder\.encoder\.layer\.1\.output\.dense\.weight"):
        convert_official(bad, target)
    with pytest.raises(CheckpointError, match="surprise.weight"):
        convert_official(dict(official, **{"surprise.weight": torch.zeros(1)}), target)
    missing = {k: v for k, v in official.items() if "text_decoder.bert.encoder.layer.0.output" not in k}
    with pytest.raises(CheckpointError, match=r"missing key text_decoder\.bert\.encoder\.layer\.0\.output"):
        convert_official(missing, target)


def test_malicious_checkpoint_refused_by_cli(tmp_path, capsys):
    import os

    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    torch.save({"model": {"w": torch.zeros(1)}, "x": Evil()}, tmp_path / "evil.pth")
    rc = cli_main(["convert", "--model", "mplug_tiny", str(tmp_path / "evil.pth"), str(tmp_path / "o.safetensors")])
    assert rc != 0 and "refused" in capsys.readouterr().err
    assert not (tmp_path / "o.safetensors").exists()


def test_momentum_and_queues_filled_when_checkpoint_lacks_them(tiny_vqa):
    official = {k[len("module."):]: v for k, v in to_official(tiny_vqa.state_dict(), 4).items()}
    torch.manual_seed(2)
    target = build_model("mplug_tiny", "retrieval").state_dict()
    src = {k: v for k, v in official.items() if not k.startswith("text_decoder")}
    src.update({k: target[k].clone() for k in ("vision_proj.weight", "vision_proj.bias", "text_proj.weight",
                                               "text_proj.bias", "itm_head.weight", "itm_head.bias", "temp")})
    out, report = convert_official(src, target, task="retrieval")
    assert torch.equal(out["visual_encoder_m.conv1.weight"], out["visual_encoder.conv1.weight"])
    assert torch.equal(out["idx_queue"], torch.full_like(target["idx_queue"], -100))
    assert torch.allclose(out["image_queue"].norm(dim=0), torch.ones(target["image_queue"].shape[1]))
    assert any("momentum" in how for how in report.filled)


# ----------------------------------------------------------------------------- CLIP + BERT init
def clip_bert_states(ms: dict, cfg) -> tuple[dict, dict]:
    """Synthetic OpenAI-CLIP and HF-BERT state dicts shaped for our model state `ms`."""
    n_bert = cfg.text_layers + cfg.fusion_layers
    g = torch.Generator().manual_seed(3)
    clip = {"visual." + k[len("visual_encoder."):]: torch.randn(v.shape, generator=g)
            for k, v in ms.items() if k.startswith("visual_encoder.")}
    clip["visual.positional_embedding"] = torch.randn(1 + 9 * 9, cfg.vision.width, generator=g)  # other res
    clip.update({"visual.proj": torch.randn(2, 2), "token_embedding.weight": torch.randn(5, 2),
                 "logit_scale": torch.tensor(1.0)})
    bert = {}
    layer0 = {k[len("text_encoder.encoder.layer.0."):]: v for k, v in ms.items()
              if k.startswith("text_encoder.encoder.layer.0.")}
    for i in range(max(n_bert, cfg.decoder_layers)):
        for name, v in layer0.items():
            bert[f"bert.encoder.layer.{i}.{name}"] = torch.randn(v.shape, generator=g)
    for k, v in ms.items():
        if k.startswith("text_encoder.embeddings."):
            bert["bert." + k[len("text_encoder."):]] = torch.randn(v.shape, generator=g)
        if k.startswith("mlm_head."):
            bert["cls." + k[len("mlm_head."):]] = torch.randn(v.shape, generator=g)
    bert["bert.pooler.dense.weight"] = torch.randn(2, 2)
    return clip, bert


def test_init_from_clip_and_bert():
    torch.manual_seed(0)
    model = build_model("mplug_tiny", "pretrain")
    cfg = model.cfg
    ms = model.state_dict()
    clip, bert = clip_bert_states(ms, cfg)
    out, report = init_from_clip_bert(ms, clip, bert, text_layers=cfg.text_layers)
    assert report.ok, report.format()
    assert torch.equal(out["visual_encoder.conv1.weight"], clip["visual.conv1.weight"])
    assert out["visual_encoder.positional_embedding"].shape == ms["visual_encoder.positional_embedding"].shape
    assert torch.equal(out["text_encoder.encoder.layer.1.output.dense.weight"],
                       bert["bert.encoder.layer.1.output.dense.weight"])
    t = cfg.text_layers
    assert torch.equal(out["fusion_encoder.encoder.layer.0.attention.self.query.weight"],
                       bert[f"bert.encoder.layer.{t}.attention.self.query.weight"])
    assert torch.equal(out["fusion_encoder.encoder.layer.0.crossattention.self.query.weight"],
                       ms["fusion_encoder.encoder.layer.0.crossattention.self.query.weight"])  # random
    assert torch.equal(out["text_decoder.bert.encoder.layer.0.intermediate.dense.weight"],
                       bert["bert.encoder.layer.0.intermediate.dense.weight"])
    assert torch.equal(out["text_decoder.bert.embeddings.word_embeddings.weight"],
                       bert["bert.embeddings.word_embeddings.weight"])
    assert torch.equal(out["text_encoder_m.encoder.layer.0.output.dense.bias"],
                       out["text_encoder.encoder.layer.0.output.dense.bias"])
    assert "visual.proj" in report.dropped["CLIP weights not used (text tower, proj, logit_scale)"]
    assert load_into(model, out).ok


def test_cli_init_from_clip_bert(tmp_path, capsys):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = build_model("mplug_tiny", "pretrain")
    clip, bert = clip_bert_states(model.state_dict(), model.cfg)
    torch.save(clip, tmp_path / "ViT-B-16.tar")
    (tmp_path / "bert").mkdir()
    save_file(bert, str(tmp_path / "bert" / "model.safetensors"))
    rc = cli_main(["convert", "--model", "mplug_tiny", "--clip", str(tmp_path / "ViT-B-16.tar"),
                   "--bert", str(tmp_path / "bert"), str(tmp_path / "init.safetensors")])
    assert rc == 0 and "random init" in capsys.readouterr().out
    state = load_state_dict_safe(tmp_path / "init.safetensors")
    assert torch.equal(state["visual_encoder.conv1.weight"], clip["visual.conv1.weight"])
    assert load_into(build_model("mplug_tiny", "pretrain"), state).ok


@pytest.mark.parametrize("keys,model,task", [
    ("keys_vqa_base.txt", "mplug_base", "vqa"),
    ("keys_ret_large.txt", "mplug_large", "retrieval"),
])
def test_modelscope_model_prefix_converts_like_unprefixed(keys, model, task):
    """ModelScope's fine-tuned checkpoints: a flat state dict, every official key prefixed `model.`."""
    state = official_meta_state(keys)
    target = meta_target(model, task)
    plain_out, plain_report = convert_official(state, target, task=task)
    prefixed = {"model." + k: v for k, v in state.items()}
    out, report = convert_official(prefixed, target, task=task)
    assert report.ok, report.format()
    assert set(out) == set(plain_out) == set(target)
    assert report.renamed == plain_report.renamed and report.dropped == plain_report.dropped
    assert all(out[k].shape == plain_out[k].shape for k in out)


def test_mixed_model_prefix_is_an_error_naming_keys():
    state = official_meta_state("keys_vqa_base.txt")
    mixed = {("model." + k if i % 2 else k): v for i, (k, v) in enumerate(state.items())}
    with pytest.raises(CheckpointError, match=r"model\.") as err:
        convert_official(mixed, meta_target("mplug_base", "vqa"), task="vqa")
    assert "mixes keys prefixed 'model.'" in str(err.value)
