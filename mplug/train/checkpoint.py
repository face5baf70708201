"""Atomic training checkpoints and resumption.

Layout under `OUT/checkpoints/`:
```
latest                      text: the tag of the newest complete checkpoint (written last, atomically)
step_00000100/              one DeepSpeed checkpoint (model incl. buffers such as the ITC queues and
  mp_rank_00_model_states.pt  the momentum encoders, optimizer, scheduler; ZeRO shards per rank)
  *_optim_states.pt
  trainer_state.json        epoch, step, batch position in the epoch, seed, samples seen
  rng_rank{R}.json          python / numpy / torch (/ cuda) RNG states of rank R
```
Every rank writes into `.tmp_step_N/`; after a barrier rank 0 renames it to `step_N/` and then
rewrites `latest`. A process killed at any point leaves either the previous complete checkpoint
or the new one, never a half-written directory that `latest` points to.

Loading goes through DeepSpeed's `load_checkpoint` with its unpickler swapped for
`torch.load(weights_only=True)`; the DeepSpeed objects its checkpoints contain (an enum, a named
tuple, the loss scaler) are allow-listed by name, anything else is refused.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import random
import shutil
from pathlib import Path
from typing import Any, Iterator

from mplug.errors import CheckpointError, OutputError, RunLockedError
from mplug.train.distributed import barrier
from mplug.utils.io import WRITE_ERRNOS, atomic_write_json, atomic_write_text, read_json
from mplug.utils.logging import get_logger

log = get_logger("mplug.train.checkpoint")

CHECKPOINT_DIR = "checkpoints"
LATEST = "latest"
STATE_FILE = "trainer_state.json"
TAG_PREFIX = "step_"


def tag_for(step: int) -> str:
    return f"{TAG_PREFIX}{step:08d}"


# ----------------------------------------------------------------------------- safe loading
def _deepspeed_safe_globals() -> list:
    """Non-tensor classes DeepSpeed pickles into its checkpoints (plain data, no code on load)."""
    out: list = []
    try:
        from deepspeed.runtime.zero.config import ZeroStageEnum

        out.append(ZeroStageEnum)
    except ImportError:  # pragma: no cover - older DeepSpeed
        pass
    try:
        from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler

        out += [LossScaler, DynamicLossScaler]
    except ImportError:  # pragma: no cover
        pass
    try:
        from deepspeed.utils.tensor_fragment import fragment_address

        out.append(fragment_address)
    except ImportError:  # pragma: no cover
        pass
    return out


def safe_torch_load(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """`torch.load(weights_only=True)` with DeepSpeed's data classes allowed; errors name the file."""
    import pickle

    import torch

    try:
        with torch.serialization.safe_globals(_deepspeed_safe_globals()):
            return torch.load(str(path), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(f"{path}: refused to load: it references objects outside the "
                              f"allow-list, so loading it could run code ({str(err).splitlines()[0]})"
                              ) from None
    except (EOFError, RuntimeError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: cannot read the checkpoint ({type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else 'no detail'}); it is "
                              "truncated or corrupt: delete this checkpoint directory and resume "
                              "from an older one") from None


def SafeTorchCheckpointEngine():  # noqa: N802 - a class factory: deepspeed is imported lazily
    """DeepSpeed's torch checkpoint engine with `load` done by `safe_torch_load`."""
    from deepspeed.runtime.checkpoint_engine.torch_checkpoint_engine import TorchCheckpointEngine

    class _Safe(TorchCheckpointEngine):
        def load(self, path: str, map_location=None):
            return safe_torch_load(path, map_location=map_location or "cpu")

    return _Safe()


# ----------------------------------------------------------------------------- RNG states
def capture_rng() -> dict[str, Any]:
    """Every RNG the training step can draw from, as JSON-safe lists."""
    import numpy as np
    import torch

    np_state = np.random.get_state(legacy=False)
    state = {
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy": {"bit_generator": np_state["bit_generator"],
                  "key": np_state["state"]["key"].tolist(), "pos": int(np_state["state"]["pos"]),
                  "has_gauss": int(np_state["has_gauss"]), "gauss": float(np_state["gauss"])},
        "torch": torch.get_rng_state().tolist(),
    }
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state({"bit_generator": n["bit_generator"],
                         "state": {"key": np.array(n["key"], dtype=np.uint32), "pos": n["pos"]},
                         "has_gauss": n["has_gauss"], "gauss": n["gauss"]})
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


# ----------------------------------------------------------------------------- save / find / load
def save_checkpoint(engine, out_dir: str | os.PathLike, step: int, trainer_state: dict[str, Any],
                    rank: int = 0, keep: int = 2) -> Path:
    """Write `OUT/checkpoints/step_N/` atomically on every rank; returns its path."""
    root = Path(out_dir) / CHECKPOINT_DIR
    tag = tag_for(step)
    tmp_tag = f".tmp_{tag}"
    if rank == 0:
        shutil.rmtree(root / tmp_tag, ignore_errors=True)  # left by a killed save
    barrier()
    try:
        engine.save_checkpoint(str(root), tag=tmp_tag, save_latest=False)
    except (OSError, RuntimeError) as err:
        # torch's C++ writer reports a full disk as a RuntimeError ("file write failed")
        if isinstance(err, OSError) and err.errno not in WRITE_ERRNOS:
            raise
        if isinstance(err, RuntimeError) and "write" not in str(err).lower():
            raise
        shutil.rmtree(root / tmp_tag, ignore_errors=True)
        why = (f"{err.strerror}, {errno.errorcode.get(err.errno, '?')}" if isinstance(err, OSError)
               else str(err))
        raise OutputError(f"{root / tmp_tag}: cannot write the checkpoint ({why}); free space on "
                          f"that disk and rerun with --resume latest") from None
    atomic_write_json(root / tmp_tag / f"rng_rank{rank}.json", capture_rng(), indent=0)
    if rank == 0:
        atomic_write_json(root / tmp_tag / STATE_FILE, {**trainer_state, "step": step, "tag": tag})
    barrier()
    if rank == 0:
        final = root / tag
        if final.exists():  # the same step saved again (a preemption right after a periodic save)
            shutil.rmtree(final)
        os.replace(root / tmp_tag, final)
        atomic_write_text(root / LATEST, tag + "\n")
        _prune(root, keep)
    barrier()
    return root / tag


def _prune(root: Path, keep: int) -> None:
    if keep <= 0:
        return
    tags = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(TAG_PREFIX))
    for old in tags[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


LOCK_FILE = ".lock"


@contextlib.contextmanager
def run_lock(out_dir: str | os.PathLike, enabled: bool = True) -> Iterator[None]:
    """Hold an exclusive flock on `OUT/.lock` for the whole run; a second run on the same folder
    gets RunLockedError (it would resume from the first one's live checkpoints and overwrite its
    results). The kernel drops the lock when the holder exits, SIGKILL included, so a stale lock
    file never blocks a rerun. `enabled=False` on ranks other than 0."""
    if not enabled:
        yield
        return
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "a process"
            raise RunLockedError(f"{out}: another training run ({holder}) is using this folder (it "
                                 f"holds {path}); wait for it to finish, or choose another --out") from None
        except OSError as err:  # a file system without flock (some network mounts): go on unlocked
            log.warning("%s: cannot lock (%s); make sure no other run uses this folder", path, err)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def find_checkpoint(out_dir: str | os.PathLike, resume: str | None) -> Path | None:
    """Resolve `--resume`: None -> None; 'latest' -> the newest complete checkpoint under
    OUT/checkpoints or None when there is none yet; a path -> that checkpoint directory."""
    if not resume:
        return None
    if resume == "latest":
        root = Path(out_dir) / CHECKPOINT_DIR
        latest = root / LATEST
        if not latest.is_file():
            return None
        tag = latest.read_text(encoding="utf-8").strip()
        path = root / tag
        if not (path / STATE_FILE).is_file():
            raise CheckpointError(f"{latest} names {tag!r} but {path / STATE_FILE} is missing; "
                                  "delete the 'latest' file to start over or point --resume at "
                                  "another checkpoint directory")
        return path
    path = Path(resume)
    if not (path / STATE_FILE).is_file():
        raise CheckpointError(f"--resume {resume}: not a training checkpoint directory (no "
                              f"{STATE_FILE}); use 'latest' or a path like OUT/{CHECKPOINT_DIR}/step_00000100")
    return path


def load_checkpoint(engine, path: str | os.PathLike, rank: int = 0) -> dict[str, Any]:
    """Restore model, optimizer, scheduler and this rank's RNG; return the trainer state."""
    path = Path(path)
    state = _read_checkpoint_json(path / STATE_FILE)
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        raise CheckpointError(f"{path / STATE_FILE}: not a trainer state (no integer 'step'); "
                              f"resume from another checkpoint or delete {path}")
    load_path, _ = engine.load_checkpoint(str(path.parent), tag=path.name, load_optimizer_states=True,
                                          load_lr_scheduler_states=True)
    if load_path is None:
        raise CheckpointError(f"{path}: DeepSpeed found no checkpoint files here; the directory "
                              "is incomplete, resume from an older one")
    rng_file = path / f"rng_rank{rank}.json"
    if rng_file.is_file():
        rng = _read_checkpoint_json(rng_file)
        try:
            restore_rng(rng)
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise CheckpointError(f"{rng_file}: not a valid RNG state ({type(err).__name__}: "
                                  f"{err}); resume from another checkpoint or delete {path}") from None
    else:  # e.g. resuming on more ranks than were saved: still correct, no longer bit-exact
        log.warning("%s missing: RNG states not restored for rank %d", rng_file, rank)
    return state


def _read_checkpoint_json(file: Path) -> Any:
    """A checkpoint's JSON file; a corrupt one (cut, not UTF-8, not JSON) is a CheckpointError."""
    try:
        return read_json(file)
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{file}: unreadable ({err}); the checkpoint is damaged: resume from "
                              f"another one (--resume {file.parent.parent}/step_...) or delete "
                              f"{file.parent} and rerun") from None
