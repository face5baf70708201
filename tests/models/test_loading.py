"""Safe checkpoint loading: containers, prefixes, refusal of code pickles, corrupt files."""
from __future__ import annotations

import os
import pickle

import pytest
import torch
from torch import nn

from mplug.errors import CheckpointError
from mplug.models.loading import load_into, load_state_dict_safe, save_state_dict

torch.set_num_threads(1)


def _state():
    return {"a.weight": torch.randn(3, 4), "a.bias": torch.zeros(3)}


@pytest.mark.parametrize("wrap", ["bare", "model", "module", "prefixed"])
def test_containers_and_module_prefix(tmp_path, wrap):
    state = _state()
    obj = {"bare": state, "model": {"model": state, "epoch": 3, "config": {"lr": 1e-5}},
           "module": {"module": state, "ds_version": "0.5.8"},
           "prefixed": {"module." + k: v for k, v in state.items()}}[wrap]
    path = tmp_path / "ckpt.pth"
    torch.save(obj, path)
    loaded = load_state_dict_safe(path)
    assert sorted(loaded) == sorted(state)
    assert torch.equal(loaded["a.weight"], state["a.weight"])


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_code_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "payload": _Evil()}, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_state_dict_safe(path)
    legacy = tmp_path / "evil_legacy.pth"  # old non-zip format goes through the same check
    with open(legacy, "wb") as fh:
        pickle.dump(_Evil(), fh)
    with pytest.raises(CheckpointError, match=str(legacy.name)):
        load_state_dict_safe(legacy)


def test_truncated_and_missing_files(tmp_path):
    path = tmp_path / "ok.pth"
    torch.save(_state(), path)
    data = path.read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.pth"):
        load_state_dict_safe(cut)
    with pytest.raises(CheckpointError, match="not found"):
        load_state_dict_safe(tmp_path / "nope.pth")
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_state_dict_safe(tmp_path / "empty.pth")


def test_safetensors_roundtrip_with_tied_weights(tmp_path):
    emb = nn.Embedding(5, 4)
    head = nn.Linear(4, 5, bias=False)
    head.weight = emb.weight  # tied: safetensors refuses shared storage unless we copy
    state = {"emb.weight": emb.weight, "head.weight": head.weight}
    path = tmp_path / "m.safetensors"
    save_state_dict(state, path)
    loaded = load_state_dict_safe(path)
    assert torch.equal(loaded["emb.weight"], loaded["head.weight"])
    corrupt = tmp_path / "bad.safetensors"
    corrupt.write_bytes(path.read_bytes()[:40])
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        load_state_dict_safe(corrupt)


def test_load_into_names_keys():
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    good = {k: v.clone() + 1 for k, v in model.state_dict().items()}
    report = load_into(model, good)
    assert report.ok and torch.equal(model[0].bias, good["0.bias"])
    bad_shape = dict(good, **{"1.weight": torch.zeros(2, 5)})
    with pytest.raises(CheckpointError, match=r"1\.weight"):
        load_into(model, bad_shape)
    missing = {k: v for k, v in good.items() if k != "0.bias"}
    with pytest.raises(CheckpointError, match=r"0\.bias"):
        load_into(model, missing)
    assert load_into(model, missing, allow_missing=("0.b",)).missing == ["0.bias"]
    with pytest.raises(CheckpointError, match=r"0\.bias"):
        load_into(model, missing, allow_missing=("1.",))
    with pytest.raises(CheckpointError, match="extra.weight"):
        load_into(model, dict(good, **{"extra.weight": torch.zeros(1)}))
    report = load_into(model, dict(good, **{"extra.weight": torch.zeros(1)}), strict=False)
    assert report.unexpected == ["extra.weight"]


def test_non_tensor_entry_is_named(tmp_path):
    path = tmp_path / "odd.pth"
    torch.save({"w": torch.zeros(1), "step": 3}, path)
    with pytest.raises(CheckpointError, match="'step'"):
        load_state_dict_safe(path)
