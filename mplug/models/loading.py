"""Safe checkpoint loading and saving.

* `load_state_dict_safe(path)` reads `.safetensors` or a torch pickle with `weights_only=True`, so
  a pickle that would run code is refused. Truncated or corrupt files become a `CheckpointError`
  naming the file instead of a crash deep inside torch. Training containers (`{"model": ...}`,
  DeepSpeed's `{"module": ...}`, `{"state_dict": ...}`) are unwrapped and `module.` prefixes
  (DDP/DeepSpeed wrappers) are stripped.
* `load_into(model, state, strict=True)` checks shapes first and names every missing, unexpected
  and shape-mismatched key before anything is copied.
* `save_state_dict(state, path)` writes safetensors atomically; tied weights (shared storage) are
  stored as separate copies because safetensors refuses aliased tensors.
"""
from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping

from mplug.errors import CheckpointError
from mplug.utils.io import atomic_path

if TYPE_CHECKING:  # pragma: no cover
    import torch

# Keys under which training scripts nest the weights (official: `model`; DeepSpeed: `module`).
CONTAINER_KEYS = ("model", "module", "state_dict")
_SAFETENSORS_SUFFIXES = (".safetensors", ".st")
_LIST_LIMIT = 20  # how many keys an error message lists before "... and N more"


def _short_list(keys: Iterable[str]) -> str:
    keys = list(keys)
    shown = ", ".join(keys[:_LIST_LIMIT])
    return shown + (f", ... and {len(keys) - _LIST_LIMIT} more" if len(keys) > _LIST_LIMIT else "")


def _is_safetensors(path: Path) -> bool:
    if path.suffix in _SAFETENSORS_SUFFIXES:
        return True
    # A safetensors file starts with an 8-byte little-endian header length then '{'.
    with open(path, "rb") as fh:
        head = fh.read(9)
    return len(head) == 9 and head[8:9] == b"{" and not zipfile.is_zipfile(path)


def _read_safetensors(path: Path) -> dict:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as err:  # safetensors raises its own SafetensorError and OSErrors
        raise CheckpointError(f"{path}: not a readable safetensors file ({err}); "
                              "the file may be truncated, re-download or re-convert it") from None


def _read_torch(path: Path) -> object:
    import torch

    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # weights_only=True raises UnpicklingError for any global outside torch's allowlist:
        # that is exactly a pickle that could run code on load.
        raise CheckpointError(
            f"{path}: refused to load: the pickle references objects outside the tensor/"
            f"container allowlist, so loading it could run code ({str(err).splitlines()[0]}). "
            "Only load checkpoints you trust; re-save the weights as a plain state dict or "
            "safetensors.") from None
    except (EOFError, RuntimeError, zipfile.BadZipFile, ValueError, OSError, KeyError) as err:
        raise CheckpointError(f"{path}: cannot read the checkpoint ({type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else 'no detail'}); the file "
                              "is truncated or corrupt, download it again") from None


def unwrap_state_dict(obj: object, source: str = "<state>") -> dict:
    """Return the tensor dict inside a training container, with `module.` prefixes stripped."""
    import torch

    if isinstance(obj, Mapping):
        for key in CONTAINER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner:
                obj = inner
                break
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source}: expected a state dict (a mapping of names to tensors) or "
                              f"a container with one of {CONTAINER_KEYS}, got {type(obj).__name__}")
    state: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{source}: entry {key!r} is a {type(value).__name__}, not a tensor; expected a "
                f"state dict or a container with one of the keys {CONTAINER_KEYS}")
        name = key[len("module."):] if key.startswith("module.") else key
        if name in state:
            raise CheckpointError(f"{source}: key {name!r} appears both with and without the "
                                  "'module.' prefix")
        state[name] = value
    if not state:
        raise CheckpointError(f"{source}: the state dict is empty")
    return state


def load_state_dict_safe(path: str | os.PathLike) -> dict:
    """Load a state dict from `.safetensors` or a torch checkpoint, safely (see module doc)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: checkpoint file is empty")
    raw = _read_safetensors(path) if _is_safetensors(path) else _read_torch(path)
    return unwrap_state_dict(raw, source=str(path))


@dataclass
class LoadReport:
    """What `load_into` found; each list holds state-dict keys."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # key, ckpt, model

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def format(self) -> str:
        lines = [f"missing: {len(self.missing)}", f"unexpected: {len(self.unexpected)}",
                 f"shape-mismatched: {len(self.mismatched)}"]
        lines += [f"  missing     {k}" for k in self.missing]
        lines += [f"  unexpected  {k}" for k in self.unexpected]
        lines += [f"  mismatched  {k}: checkpoint {tuple(a)} vs model {tuple(b)}"
                  for k, a, b in self.mismatched]
        return "\n".join(lines)


def compare_state(expected: Mapping[str, "torch.Tensor"], state: Mapping[str, "torch.Tensor"],
                  ) -> LoadReport:
    """Compare a state dict against a reference one (e.g. a model's, possibly on meta)."""
    report = LoadReport()
    report.missing = [k for k in expected if k not in state]
    report.unexpected = [k for k in state if k not in expected]
    report.mismatched = [(k, tuple(state[k].shape), tuple(v.shape)) for k, v in expected.items()
                         if k in state and tuple(state[k].shape) != tuple(v.shape)]
    return report


def load_into(model: "torch.nn.Module", state: Mapping[str, "torch.Tensor"], strict: bool = True,
              source: str = "<state>", allow_missing: Iterable[str] = ()) -> LoadReport:
    """Copy `state` into `model`, naming any key problem.

    Shape mismatches are always an error. With `strict`, missing and unexpected keys are errors,
    except missing keys containing one of the `allow_missing` substrings (a fresh task head such
    as `cls_head.`, or NLVR2's `crossattention2.`, which `init_crossattention2` then fills).
    """
    report = compare_state(model.state_dict(), state)
    if report.mismatched:
        raise CheckpointError(f"{source}: shape mismatch for "
                              + _short_list(f"{k} (checkpoint {a} vs model {b})"
                                            for k, a, b in report.mismatched))
    patterns = tuple(allow_missing)
    hard_missing = [k for k in report.missing if not any(p in k for p in patterns)]
    if strict and hard_missing:
        raise CheckpointError(f"{source}: {len(hard_missing)} model keys missing from the "
                              f"checkpoint: {_short_list(hard_missing)}")
    if strict and report.unexpected:
        raise CheckpointError(f"{source}: {len(report.unexpected)} checkpoint keys the model does "
                              f"not have: {_short_list(report.unexpected)}")
    model.load_state_dict(dict(state), strict=False)
    return report


def save_state_dict(state: Mapping[str, "torch.Tensor"], path: str | os.PathLike,
                    metadata: Mapping[str, str] | None = None) -> None:
    """Write `state` as safetensors atomically (aliased tensors are copied)."""
    from safetensors.torch import save_file

    seen: set[int] = set()
    out = {}
    for key, value in state.items():
        tensor = value.detach().to("cpu")
        ident = tensor.untyped_storage().data_ptr()  # any overlap in storage counts as shared
        if ident in seen or not tensor.is_contiguous():
            tensor = tensor.contiguous().clone()
        seen.add(ident)
        out[key] = tensor
    with atomic_path(path) as tmp:
        save_file(out, str(tmp), metadata=dict(metadata or {}))
