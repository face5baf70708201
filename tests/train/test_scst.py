"""SCST (official mPLUG/caption_mplug_scst.py): backprop through beam search (official) vs teacher-forced
rescoring of the same hypotheses. Without dropout they must give the same beam scores, the same
loss and the same gradients; the length penalty and the [CLS]-inclusive token count included."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mplug.errors import ConfigError
from mplug.train.scst import ScstConfig, decode_with_grad, generated_lengths, rescore, scst_step


@pytest.fixture(scope="module")
def caption_setup(world):
    from types import SimpleNamespace

    from mplug.data.collate import Collator
    from mplug.data.datasets import build_dataset
    from mplug.data.tokenizer import find_vocab, load_tokenizer, vocab_overrides
    from mplug.models import build_model

    tok = load_tokenizer(find_vocab(world))
    torch.manual_seed(0)
    model = build_model("mplug_tiny", "caption", image_res=32, **vocab_overrides(tok, "mplug_tiny"))
    ds = build_dataset("caption", world, "train", tok, 32, True)
    batch = Collator("caption", tok)([ds[i] for i in range(3)])
    return tok, model, batch, SimpleNamespace(module=model)


def _reward(hyps, ids):
    """A deterministic reward that differs between beams (so the advantage is not zero)."""
    return np.array([(sum(map(ord, h)) % 7) / 6.0 for h in hyps])


def _grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def test_beam_and_rescore_give_the_same_loss_and_gradients_without_dropout(caption_setup):
    tok, model, batch, engine = caption_setup
    model.eval()
    try:
        cfg = ScstConfig(beam_size=3, min_length=2, max_length=7)
        ids, beam_scores = decode_with_grad(model, batch, cfg)
        assert beam_scores.requires_grad  # the official path really differentiates beam search
        valid = torch.isfinite(beam_scores)
        same = rescore(model, batch, ids, cfg)
        torch.testing.assert_close(same[valid], beam_scores[valid], rtol=1e-4, atol=1e-5)
        # without the length penalty the scores would differ (the old rescore path's gap)
        plain = rescore(model, batch, ids, ScstConfig(beam_size=3, min_length=2, max_length=7,
                                                      length_penalty=0.0))
        assert not torch.allclose(plain[valid], beam_scores[valid], rtol=1e-3)

        out = {}
        for path in ("beam", "rescore"):
            model.zero_grad(set_to_none=True)
            res = scst_step(tok, _reward, {"beam_size": 3, "min_length": 2, "max_length": 7,
                                           "grad_path": path})(engine, batch, None)
            res["loss"].backward()
            out[path] = (res["loss"].detach(), _grads(model))
        (lb, gb), (lr, gr) = out["beam"], out["rescore"]
        assert lb.abs() > 0
        torch.testing.assert_close(lr, lb, rtol=1e-4, atol=1e-7)
        assert set(gb) == set(gr) and any(n.startswith("visual_encoder") for n in gb)
        for name in gb:
            torch.testing.assert_close(gr[name], gb[name], rtol=1e-3, atol=1e-6, msg=name)
    finally:
        model.zero_grad(set_to_none=True)
        model.train()


def test_generated_lengths_count_up_to_the_last_token():
    ids = torch.tensor([[5, 6, 102, 0, 0], [5, 102, 7, 102, 0], [5, 6, 7, 8, 9], [0, 0, 0, 0, 0]])
    assert generated_lengths(ids, pad=0).tolist() == [3, 4, 5, 0]


@pytest.mark.parametrize("bad, match", [({"grad_path": "sample"}, r"train.scst.grad_path='sample'"),
                                        ({"beam_size": 0}, r"train.scst.beam_size=0"),
                                        ({"min_length": 30}, r"train.scst.min_length=30"),
                                        ({"beams": 5}, r"unknown key train.scst.beams")])
def test_scst_config_errors_name_the_key(bad, match):
    with pytest.raises(ConfigError, match=match):
        ScstConfig.from_dict(bad)
