"""Process-group set-up for torchrun, srun (SLURM) and a plain single process.

DeepSpeed reads `RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT`; without them it looks for
mpi4py and fails. `detect()` finds the launcher and `export()` fills in whatever is missing, so
the same command runs as `mplug train ...`, `torchrun --nproc_per_node N -m mplug.cli train ...`
or `srun mplug train ...` inside an allocation.

On a machine without CUDA, `configure_accelerator()` selects DeepSpeed's CPU accelerator (gloo)
and points `TORCH_EXTENSIONS_DIR` at a persistent cache: DeepSpeed compiles its `shm_comm` op the
first time a process group starts (about 40 s here), and later processes load it in ~0.1 s.
"""
from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import MutableMapping

from mplug.errors import ConfigError

_SLURM_PORT_BASE = 20000  # MASTER_PORT = base + job_id % span, so two jobs on a node rarely clash
_SLURM_PORT_SPAN = 20000


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in the job."""

    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int
    launcher: str  # 'torchrun' | 'slurm' | 'single'

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def expand_nodelist(nodelist: str) -> list[str]:
    """Expand SLURM's compressed host list: 'gpu[01-03,07],cpu1' -> gpu01 gpu02 gpu03 gpu07 cpu1."""
    hosts: list[str] = []
    # split on commas that are not inside brackets
    for item in re.findall(r"[^,\[]+(?:\[[^\]]*\])?[^,]*", nodelist):
        m = re.fullmatch(r"([^\[]*)\[([^\]]*)\](.*)", item)
        if not m:
            hosts.append(item)
            continue
        prefix, ranges, suffix = m.groups()
        for part in ranges.split(","):
            if "-" in part:
                lo, hi = part.split("-", 1)
                width = len(lo)  # keep zero padding: [01-03] -> 01 02 03
                hosts += [f"{prefix}{i:0{width}d}{suffix}" for i in range(int(lo), int(hi) + 1)]
            else:
                hosts.append(f"{prefix}{part}{suffix}")
    return hosts


def free_port() -> int:
    """An unused TCP port on this host (for single-process runs that may run side by side)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _int(environ: MutableMapping[str, str], key: str) -> int:
    try:
        return int(environ[key])
    except ValueError:
        raise ConfigError(f"environment variable {key}={environ[key]!r} is not an integer") from None


def detect(environ: MutableMapping[str, str] | None = None) -> DistEnv:
    """Rank and world from torchrun's variables, else from an srun task's, else one process."""
    env = os.environ if environ is None else environ
    if "RANK" in env and "WORLD_SIZE" in env:  # torchrun / torch.distributed.launch / set by hand
        rank, world = _int(env, "RANK"), _int(env, "WORLD_SIZE")
        local = _int(env, "LOCAL_RANK") if "LOCAL_RANK" in env else rank
        addr = env.get("MASTER_ADDR", "127.0.0.1")
        port = _int(env, "MASTER_PORT") if "MASTER_PORT" in env else 29500
        launcher = "torchrun"
    elif "SLURM_PROCID" in env and "SLURM_STEP_ID" in env:
        # An srun task. The batch script itself (no SLURM_STEP_ID) is one process even when the
        # allocation has many tasks: trusting SLURM_NTASKS there would wait forever for peers.
        rank = _int(env, "SLURM_PROCID")
        world = _int(env, "SLURM_STEP_NUM_TASKS") if "SLURM_STEP_NUM_TASKS" in env else _int(env, "SLURM_NTASKS")
        local = _int(env, "SLURM_LOCALID") if "SLURM_LOCALID" in env else 0
        nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_NODELIST") or env.get("SLURM_JOB_NODELIST")
        addr = env.get("MASTER_ADDR") or (expand_nodelist(nodelist)[0] if nodelist else "127.0.0.1")
        if "MASTER_PORT" in env:
            port = _int(env, "MASTER_PORT")
        else:
            job = int(env.get("SLURM_JOB_ID", "0") or 0)
            port = _SLURM_PORT_BASE + job % _SLURM_PORT_SPAN
        launcher = "slurm"
    else:
        rank, world, local = 0, 1, 0
        addr = env.get("MASTER_ADDR", "127.0.0.1")
        port = _int(env, "MASTER_PORT") if "MASTER_PORT" in env else free_port()
        launcher = "single"
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"inconsistent launcher variables: rank {rank} of world size {world}")
    return DistEnv(rank, world, local, addr, port, launcher)


def export(dist: DistEnv, environ: MutableMapping[str, str] | None = None) -> None:
    """Set the variables DeepSpeed/torch.distributed read, leaving ones already set alone."""
    env = os.environ if environ is None else environ
    for key, value in (("RANK", dist.rank), ("WORLD_SIZE", dist.world_size),
                       ("LOCAL_RANK", dist.local_rank), ("MASTER_ADDR", dist.master_addr),
                       ("MASTER_PORT", dist.master_port)):
        env.setdefault(key, str(value))


def default_extensions_dir() -> Path:
    """`<repo>/.cache/torch_extensions` for a source checkout, else ~/.cache/mplug/torch_extensions."""
    repo = Path(__file__).resolve().parents[2]
    if (repo / ".git").exists() or (repo / "pyproject.toml").exists():
        return repo / ".cache" / "torch_extensions"
    return Path.home() / ".cache" / "mplug" / "torch_extensions"


def configure_accelerator(environ: MutableMapping[str, str] | None = None) -> str:
    """Pick DeepSpeed's accelerator before deepspeed is imported; returns 'cuda' or 'cpu'.

    Must run before the first `import deepspeed` in the process: DeepSpeed detects its
    accelerator once, at first use.
    """
    env = os.environ if environ is None else environ
    import torch

    if "DS_ACCELERATOR" not in env:
        env["DS_ACCELERATOR"] = "cuda" if torch.cuda.is_available() else "cpu"
    if "TORCH_EXTENSIONS_DIR" not in env:
        path = default_extensions_dir()
        path.mkdir(parents=True, exist_ok=True)
        env["TORCH_EXTENSIONS_DIR"] = str(path)
    return env["DS_ACCELERATOR"]


def backend_for(accelerator: str) -> str:
    return "nccl" if accelerator == "cuda" else "gloo"


def init_process_group(dist: DistEnv | None = None) -> DistEnv:
    """Detect the launcher, export its variables and start DeepSpeed's process group (idempotent)."""
    dist = dist or detect()
    export(dist)
    accelerator = configure_accelerator()
    import deepspeed
    import torch

    if accelerator == "cuda":
        torch.cuda.set_device(dist.local_rank)
    if not torch.distributed.is_initialized():
        deepspeed.init_distributed(dist_backend=backend_for(accelerator), verbose=False)
    return dist


def any_rank(flag: bool) -> bool:
    """True on every rank when `flag` is true on any rank (used to agree on a preemption)."""
    import torch

    if not torch.distributed.is_initialized() or torch.distributed.get_world_size() == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    if os.environ.get("DS_ACCELERATOR") == "cuda":
        t = t.cuda()
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return bool(t.item() > 0)


def barrier() -> None:
    import torch

    if torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
        torch.distributed.barrier()
