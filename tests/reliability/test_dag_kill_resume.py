"""Items 1 and 8: the whole smoke DAG, killed and resumed; and determinism.

Expensive (the smoke DAG trains for minutes), hence `slow`. They share the session's one
uninterrupted run (`smoke_run`, tests/conftest.py) and build reduced targets in their own working
directories:
* kill/resume: `table05` (pretrain_14m -> NLVR2 and SNLI-VE fine-tuning -> 4 evaluations). The
  whole process tree is SIGKILLed (a node dying) once while pretraining (after its first periodic
  checkpoint) and once while evaluating; the same command then finishes, every metrics file it
  wrote equals the uninterrupted run's, and so do the report's reproduced numbers.
* determinism: two evaluations that need only `pretrain_14m`, built again from scratch with the
  same seed, equal the uninterrupted run's bit for bit (weights and metrics).

After a SIGKILL Snakemake leaves its lock behind and refuses to start ("Directory cannot be
locked ... can be removed with the --unlock argument"); the rerun here follows that documented
recovery when (and only when) Snakemake asks for it.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from _helpers import REPO, mplug

pytestmark = pytest.mark.slow

MODEL = "results/smoke/mplug_smoke"
PRETRAIN_LOG = f"{MODEL}/pretrain/pretrain_14m/train_log.jsonl"
TABLE05_EVALS = [f"{MODEL}/eval/{job}/{split}/metrics.json"
                 for job, splits in (("nlvr2", ("dev", "test_p")), ("snli_ve", ("dev", "test")))
                 for split in splits]
STEP_TIMEOUT_S = 30 * 60


def _tree(pid: int) -> list[int]:
    """pid and all its descendants (from /proc), children last."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL Snakemake and every job it started at once, as when a node dies."""
    for pid in _tree(proc.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=60)


def _max_step(path: Path) -> int:
    if not path.is_file():
        return 0
    steps = [0]
    for line in path.read_text().splitlines():
        try:
            steps.append(json.loads(line)["step"])
        except (json.JSONDecodeError, KeyError):
            pass
    return max(steps)


def _start(smoke_run, workdir: Path, *targets: str) -> subprocess.Popen:
    return subprocess.Popen(smoke_run.command(workdir, *targets), cwd=REPO, env=smoke_run.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_until(proc: subprocess.Popen, cond, what: str) -> None:
    deadline = time.time() + STEP_TIMEOUT_S
    while not cond():
        if proc.poll() is not None:
            pytest.fail(f"snakemake ended (rc {proc.returncode}) before {what}:\n"
                        f"{proc.stdout.read()[-4000:]}")
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _rerun(smoke_run, workdir: Path, *targets: str) -> str:
    """The same command again; after a kill Snakemake may first ask for --unlock."""
    res = subprocess.run(smoke_run.command(workdir, *targets), cwd=REPO, env=smoke_run.env(),
                         capture_output=True, text=True, timeout=STEP_TIMEOUT_S)
    out = res.stdout + res.stderr
    if res.returncode != 0 and "cannot be locked" in out:
        assert "--unlock" in out  # the message tells the user what to do
        unlock = subprocess.run(smoke_run.command(workdir, *targets) + ["--unlock"], cwd=REPO,
                                env=smoke_run.env(), capture_output=True, text=True, timeout=300)
        assert unlock.returncode == 0, unlock.stdout + unlock.stderr
        res = subprocess.run(smoke_run.command(workdir, *targets), cwd=REPO, env=smoke_run.env(),
                             capture_output=True, text=True, timeout=STEP_TIMEOUT_S)
        out = res.stdout + res.stderr
    assert res.returncode == 0, f"the rerun failed:\n{out[-5000:]}"
    return out


def _metrics(path: Path) -> dict:
    return json.loads(path.read_text())["metrics"]


def _every_json_parses(root: Path) -> None:
    for path in root.rglob("*.json"):
        json.loads(path.read_text())  # an atomic writer never leaves half a file


def test_kill_in_training_and_in_evaluation_then_rerun_matches(smoke_run, tmp_path):
    smoke_run.check()
    work = tmp_path / "killed"
    work.mkdir()
    # 1) killed while pretraining, after the checkpoint at step 200 (save_every in smoke.yaml)
    proc = _start(smoke_run, work, "table05")
    _wait_until(proc, lambda: _max_step(work / PRETRAIN_LOG) >= 210, "pretraining passed step 210")
    _kill_tree(proc)
    assert not (work / MODEL / "pretrain/pretrain_14m/model.safetensors").exists()
    assert (work / MODEL / "pretrain/pretrain_14m/checkpoints/latest").is_file()
    _every_json_parses(work / "results")
    # 2) resumed, then killed while evaluating
    proc = _start(smoke_run, work, "table05")
    evaluating = lambda: any((work / "logs/smoke/evaluate").rglob("*.log")) \
        if (work / "logs/smoke/evaluate").is_dir() else False  # noqa: E731
    _wait_until(proc, evaluating, "an evaluation started")
    _kill_tree(proc)
    left = [p for p in TABLE05_EVALS if not (work / p).is_file()]
    assert left, "every evaluation finished before the kill: nothing left to resume"
    _every_json_parses(work / "results")
    resumed = json.loads((work / MODEL / "pretrain/pretrain_14m/summary.json").read_text())
    assert resumed["steps"] == resumed["total_steps"]
    # 3) the same command finishes; every number equals the uninterrupted run's
    _rerun(smoke_run, work, "table05")
    for rel in TABLE05_EVALS:
        assert _metrics(work / rel) == _metrics(smoke_run.workdir / rel), rel
    res = mplug("report", "--config", REPO / "config/smoke.yaml", "--results", "results/smoke",
                "--out", "reports/smoke", "--smoke", cwd=work)
    assert res.returncode == 0, res.stderr[-3000:]
    cols = ["model", "setting", "metric", "reproduced", "status"]
    mine = pd.read_csv(work / "reports/smoke/tables/table05.csv", keep_default_na=False, dtype=str)
    ref = pd.read_csv(smoke_run.report / "tables/table05.csv", keep_default_na=False, dtype=str)
    assert len(mine) == len(ref)
    assert mine[cols].equals(ref[cols]), pd.concat([mine[cols], ref[cols]], axis=1)
    assert (mine[mine.model == "mPLUG"].reproduced != "").all()


def test_same_seed_same_weights_and_metrics(smoke_run, tmp_path):
    smoke_run.check()
    work = tmp_path / "again"
    work.mkdir()
    targets = [f"{MODEL}/eval/video_retrieval/test/metrics.json",
               f"{MODEL}/eval/nocaps_zeroshot/val/metrics.json"]
    _rerun(smoke_run, work, *targets)
    weights = f"{MODEL}/pretrain/pretrain_14m/model.safetensors"
    from safetensors.torch import load_file

    a, b = load_file(str(work / weights)), load_file(str(smoke_run.workdir / weights))
    assert a.keys() == b.keys()
    assert [k for k in a if not (a[k] == b[k]).all()] == []
    for rel in targets:
        assert _metrics(work / rel) == _metrics(smoke_run.workdir / rel), rel
