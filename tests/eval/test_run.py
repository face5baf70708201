"""`mplug evaluate` on the synthetic world with a tiny random-init checkpoint: well-formed
metrics JSON with provenance, predictions next to it, official failure modes."""
import json
from pathlib import Path

import pytest

from mplug.cli import main
from mplug.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    assert main(["data", "synth", "--out", str(root), "--scale", "tiny"]) == 0
    return root


def _checkpoint(tmp_path, task, world):
    import torch

    from mplug.data.tokenizer import load_tokenizer
    from mplug.eval.run import EvalSettings, load_model
    from mplug.models.loading import save_state_dict

    torch.manual_seed(0)
    tok = load_tokenizer(world / "vocab.txt")
    model = load_model(task, None, EvalSettings(model="mplug_tiny", device="cpu"), "cpu", tok)
    path = tmp_path / f"{task}.safetensors"
    save_state_dict(model.state_dict(), path)
    return path, model


def _run(args, capsys):
    rc = main(["evaluate", *args, "--model", "mplug_tiny", "--limit", "4", "--batch-size", "4",
               "--device", "cpu"])
    return rc, capsys.readouterr()


@pytest.mark.parametrize("task,model_task,split,keys", [
    ("vqa", "vqa", "val", ("overall", "perAnswerType")),
    ("grounding", "grounding", "val", ("acc@0.5", "mean_iou")),
    ("retrieval_coco", "retrieval", "test", ("txt_r1", "img_r10", "r_mean")),
    ("snli_ve", "snli_ve", "dev", ("accuracy",)),
])
def test_evaluate_writes_metrics_with_provenance(world, tmp_path, capsys, task, model_task, split, keys):
    from mplug.utils.io import sha256_file

    ckpt, _ = _checkpoint(tmp_path, model_task, world)
    out = tmp_path / "eval" / task / split / "metrics.json"
    rc, cap = _run([task, "--checkpoint", str(ckpt), "--data", str(world), "--split", split,
                    "--out", str(out)], capsys)
    assert rc == 0, cap.err[-2000:]
    res = json.loads(out.read_text())
    assert res["task"] == task and res["split"] == split
    for k in keys:
        assert k in res["metrics"]
    prov = res["provenance"]
    assert prov["checkpoint_sha256"] == sha256_file(ckpt)
    assert prov["size"] == 4 and prov["split"] == split and prov["wall_time_s"] > 0
    assert prov["config_hash"] and "hardware" in prov and prov["settings"]["model"] == "mplug_tiny"
    preds = json.loads((out.parent / "metrics.predictions.json").read_text())
    assert len(preds) == 4
    assert json.loads(cap.out.strip().splitlines()[-1])["metrics"] == res["metrics"]


def test_evaluate_caption_paper_decoding_and_cider(world, tmp_path, capsys):
    from mplug.eval.run import EvalSettings, evaluate

    ckpt, _ = _checkpoint(tmp_path, "caption", world)
    s = EvalSettings.paper_caption(model="mplug_tiny", device="cpu", limit=3, batch_size=3,
                                   caption_metrics=("CIDEr",))
    assert (s.caption_beam, s.caption_max_length) == (10, 20)
    res = evaluate("caption", ckpt, world, "test", tmp_path / "m.json", s)
    assert res["metrics"]["CIDEr"] >= 0 and res["provenance"]["settings"]["caption_beam"] == 10
    preds = json.loads((tmp_path / "m.predictions.json").read_text())
    assert {"image_id", "caption"} <= set(preds[0])


def test_vqa_server_split_writes_submission(world, tmp_path):
    """A split without public answers: EvalAI submission file + 'needs server submission'."""
    from mplug.data.formats import read_records, write_records
    from mplug.eval.run import EvalSettings, evaluate

    ds = tmp_path / "vqa"
    ds.mkdir()
    (ds / "images").symlink_to(world / "vqa" / "images")
    recs = read_records(world / "vqa" / "test.jsonl", "vqa")[:3]
    write_records(ds / "test.jsonl", "vqa", [{**r, "answers": []} for r in recs])
    ckpt, _ = _checkpoint(tmp_path, "vqa", world)
    res = evaluate("vqa", ckpt, ds, "test", tmp_path / "m.json",
                   EvalSettings(model="mplug_tiny", device="cpu"), tokenizer=world / "vocab.txt")
    assert res["metrics"]["overall"] is None
    assert res["metrics"]["status"] == "needs server submission"
    sub = json.loads((tmp_path / "m.evalai_submission.json").read_text())
    assert [s["question_id"] for s in sub] == [r["question_id"] for r in recs]


def test_wrong_checkpoint_is_a_clear_error(world, tmp_path, capsys):
    ckpt, _ = _checkpoint(tmp_path, "snli_ve", world)  # no decoder: cannot serve VQA
    rc, cap = _run(["vqa", "--checkpoint", str(ckpt), "--data", str(world), "--split", "val",
                    "--out", str(tmp_path / "m.json")], capsys)
    assert rc == 2 and "missing" in cap.err and "text_decoder" in cap.err
    rc, cap = _run(["vqa", "--data", str(tmp_path), "--split", "val", "--out",
                    str(tmp_path / "m.json")], capsys)
    assert rc == 2 and "val.jsonl" in cap.err


@pytest.mark.parametrize("eval_res", [32, 64])
def test_a_checkpoint_trained_at_another_resolution_evaluates_at_the_asked_one(world, tmp_path, capsys, eval_res):
    """Trained at 48 px, evaluated lower (32) and higher (64): the position embedding is resized
    from the checkpoint's own grid and the provenance says which resolution ran."""
    import torch

    from mplug.data.tokenizer import load_tokenizer
    from mplug.eval.run import EvalSettings, load_model
    from mplug.models.loading import save_state_dict

    tok = load_tokenizer(world / "vocab.txt")
    trained = load_model("vqa", None, EvalSettings(model="mplug_tiny", device="cpu", image_res=48), "cpu", tok)
    assert trained.state_dict()["visual_encoder.positional_embedding"].shape[0] == 1 + 6 * 6
    ckpt = tmp_path / "vqa48.safetensors"
    save_state_dict(trained.state_dict(), ckpt)
    out = tmp_path / "m.json"
    rc, cap = _run(["vqa", "--checkpoint", str(ckpt), "--data", str(world), "--split", "val",
                    "--out", str(out), "--image-res", str(eval_res)], capsys)
    assert rc == 0, cap.err[-2000:]
    prov = json.loads(out.read_text())["provenance"]
    assert prov["resolution"] == {"image_res": eval_res, "checkpoint_image_res": 48, "pos_embed_resized": True}
    again = load_model("vqa", ckpt, EvalSettings(model="mplug_tiny", device="cpu"), "cpu", tok)
    assert again.resolution == {"image_res": 48, "checkpoint_image_res": 48, "pos_embed_resized": False}
    assert torch.equal(again.state_dict()["visual_encoder.positional_embedding"],
                       trained.state_dict()["visual_encoder.positional_embedding"])


def _cli(*argv: str):
    import argparse

    from mplug.commands.evaluate import register

    p = argparse.ArgumentParser()
    register(p)
    return p.parse_args([*argv, "--data", "x", "--split", "val", "--out", "o"])


def test_the_job_and_model_key_resolve_everything_from_the_run_config():
    """`--config C --model KEY --job JOB`: task, dataset, arch and the job's settings for that
    model key (its overrides[arch]); command-line options win."""
    from mplug.commands.evaluate import overrides, resolve
    from mplug.config import load_config

    paper = REPO / "config" / "config.yaml"
    cfg = load_config(paper)
    task, dataset, s, ignored = resolve(_cli("--config", str(paper), "--model", "mplug_base_4m",
                                             "--job", "vqa"), cfg)
    assert (task, dataset, s.model, s.model_key, s.job) == ("vqa", "vqa", "mplug_base", "mplug_base_4m", "vqa")
    assert (s.image_res, s.vqa_beam, s.vqa_max_length, s.stride) == (384, 5, 10, 3)  # overrides.mplug_base
    assert set(ignored) == {"add_ocr", "add_object", "submission"}
    args = _cli("--config", str(paper), "--model", "mplug_large", "--job", "nocaps_zeroshot",
                "--max-length", "9")
    task, dataset, s, _ = resolve(args, cfg)
    s = s.replace(**overrides(args, task))
    assert (task, dataset, s.model, s.image_res, s.caption_max_length, s.nocaps_prompt) == \
        ("nocaps", "nocaps", "mplug_large", 336, 9, "a picture of")
    _, _, s, _ = resolve(_cli("--config", str(paper), "--model", "mplug_base", "--job", "video_qa_msvd"), cfg)
    assert (s.frames_qa, s.rank_k, s.image_res, s.batch_size) == (16, 128, 480, 1)
    cfg["hparams"] = "paper"
    _, _, s, _ = resolve(_cli("--config", str(paper), "--model", "mplug_large", "--job", "vqa"), cfg)
    assert s.image_res == 504


def test_a_model_key_not_in_the_config_or_a_contradicting_task_is_a_named_error():
    from mplug.commands.evaluate import resolve
    from mplug.config import load_config

    paper = REPO / "config" / "config.yaml"
    cfg = load_config(paper)
    with pytest.raises(ConfigError, match="model keys.*got .mplug_tiny."):
        resolve(_cli("--config", str(paper), "--model", "mplug_tiny", "--job", "vqa"), cfg)
    with pytest.raises(ConfigError, match="evaluate.vqa is a vqa job, not caption"):
        resolve(_cli("caption", "--config", str(paper), "--model", "mplug_base", "--job", "vqa"), cfg)
    with pytest.raises(ConfigError, match="no evaluation job 'nope'"):
        resolve(_cli("--config", str(paper), "--model", "mplug_base", "--job", "nope"), cfg)


def test_generation_keys_the_evaluator_cannot_honour_name_the_key():
    from mplug.eval.job import generation_settings

    assert generation_settings("grounding", {"mode": "greedy", "max_length": 4}, "g") == ({}, {})
    for task, gen, key in (("vqa", {"mode": "greedy"}, "mode"),
                           ("caption", {"length_penalty": 1.0}, "length_penalty"),
                           ("retrieval_coco", {"score": "itc"}, "score"),
                           ("grounding", {"max_length": 6}, "max_length")):
        with pytest.raises(ConfigError, match=f"evaluate.j.generation.{key}="):
            generation_settings(task, gen, "evaluate.j.generation")
    over, ignored = generation_settings("nlvr2", {"beam_size": 3, "image_res": 64}, "g")
    assert over == {"image_res": 64} and "not used by nlvr2" in ignored["beam_size"]


def test_grounding_bins_come_from_the_checkpoints_training_summary(world, tmp_path, capsys):
    """A grounding model trained with N bins must be decoded with N bins: boxes decoded with the
    default 337 from a 33-bin model land near the origin. The bins travel in summary.json."""
    from mplug.data.tokenizer import load_tokenizer
    from mplug.eval.run import EvalSettings, load_model, trained_grounding_bins

    tok = load_tokenizer(world / "vocab.txt")
    ckpt, _ = _checkpoint(tmp_path, "grounding", world)
    assert trained_grounding_bins(ckpt) is None  # no summary: the model config's bins
    model = ckpt.with_name("model.safetensors")
    ckpt.rename(model)
    model.with_name("summary.json").write_text(json.dumps(
        {"run": {"settings": {"grounding": {"bins": 33, "loss_weighting": "official"}}}}))
    assert trained_grounding_bins(model) == 33
    tiny = EvalSettings(model="mplug_tiny", device="cpu")
    assert load_model("grounding", model, tiny, "cpu", tok).bins == 33
    assert load_model("grounding", model, tiny.replace(grounding_bins=50), "cpu", tok).bins == 50
    out = tmp_path / "m.json"
    rc, cap = _run(["grounding", "--checkpoint", str(model), "--data", str(world), "--split",
                    "val", "--out", str(out), "--bins", "33"], capsys)
    assert rc == 0, cap.err[-2000:]
    rc, cap = _run(["vqa", "--checkpoint", str(model), "--data", str(world), "--split", "val",
                    "--out", str(out), "--bins", "33"], capsys)
    assert rc != 0 and "--bins applies to grounding" in cap.err


@pytest.mark.parametrize("name", ["config.yaml", "smoke.yaml"])
@pytest.mark.parametrize("hparams", ["official", "paper"])
def test_every_evaluation_job_of_the_shipped_configs_resolves(name, hparams):
    from mplug.config import enabled_models, load_config
    from mplug.eval.job import resolve_job
    from mplug.eval.run import EvalSettings

    cfg = load_config(REPO / "config" / name)
    cfg["hparams"] = hparams
    for key, model in enabled_models(cfg).items():
        for job in model["evaluate"]:
            resolved = resolve_job(cfg, job, key)
            s = EvalSettings().replace(**resolved.settings)
            assert (s.model_key, s.job, s.model) == (key, job, model["arch"])
