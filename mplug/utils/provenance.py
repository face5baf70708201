"""Provenance attached to every result the harness writes (metrics JSON, checkpoints, benchmarks)."""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from mplug.utils.io import sha256_file


def git_commit(cwd: str | os.PathLike | None = None) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd or Path(__file__).parent,
                             capture_output=True, text=True, timeout=10)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=cwd or Path(__file__).parent, capture_output=True, text=True,
                               timeout=10).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def config_hash(cfg: Any) -> str:
    """Stable hash of a config (dict or dataclass-like) so two runs can be compared."""
    blob = json.dumps(cfg, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {"machine": platform.machine(), "cpu_count": os.cpu_count(),
                            "platform": platform.platform(), "python": platform.python_version()}
    try:
        import torch

        info["torch"] = torch.__version__
        info["threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["accelerator"] = "cuda"
            info["gpu"] = torch.cuda.get_device_name(0)
            info["gpu_count"] = torch.cuda.device_count()
        else:
            info["accelerator"] = "cpu"
            info["cpu"] = _cpu_model()
    except ImportError:
        info["accelerator"] = "unknown"
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe_hardware(hw: dict[str, Any] | None = None) -> str:
    hw = hw or hardware()
    if hw.get("accelerator") == "cuda":
        return f"{hw.get('gpu_count', 1)}x {hw.get('gpu')}"
    return f"CPU {hw.get('cpu', '?')} ({hw.get('threads', hw.get('cpu_count'))} threads)"


def provenance(*, config: Any = None, checkpoint: str | os.PathLike | None = None,
               dataset: str | None = None, split: str | None = None, size: int | None = None,
               wall_time_s: float | None = None, **extra: Any) -> dict[str, Any]:
    prov: dict[str, Any] = {
        "commit": git_commit(),
        "config_hash": config_hash(config) if config is not None else None,
        "checkpoint": str(checkpoint) if checkpoint else None,
        "checkpoint_sha256": sha256_file(checkpoint) if checkpoint and Path(checkpoint).is_file() else None,
        "dataset": dataset,
        "split": split,
        "size": size,
        "hardware": hardware(),
        # the scheduler's record of the job that wrote it (sacct -j ID), None outside SLURM
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "wall_time_s": wall_time_s,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    prov.update(extra)
    return prov
