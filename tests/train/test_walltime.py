"""The trainer's own early signal before a SLURM time limit (mplug/train/walltime.py), against a
stand-in `squeue` on PATH that prints what the real one prints for `-o %L`; the real scheduler
path is tests/slurm/test_real_scheduler.py."""
from __future__ import annotations

import os
import signal
import time

import pytest

from mplug.train.loop import _Preemption
from mplug.train.walltime import arm_before_time_limit, parse_slurm_duration


@pytest.mark.parametrize("text, seconds", [("0:45", 45), ("12:03", 723), ("2:00:00", 7200),
                                           ("1-02:03:04", 93784), (" 5:00\n", 300)])
def test_slurm_durations(text, seconds):
    assert parse_slurm_duration(text) == seconds


@pytest.mark.parametrize("text", ["UNLIMITED", "NOT_SET", "INVALID", "", "1:2:3:4"])
def test_no_duration(text):
    assert parse_slurm_duration(text) is None


@pytest.fixture
def squeue(tmp_path, monkeypatch):
    """squeue printing `left` for %L (and recording its arguments)."""
    def install(left: str, rc: int = 0):
        script = tmp_path / "squeue"
        script.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/args\necho "{left}"\nexit {rc}\n')
        script.chmod(0o755)
        monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
        return tmp_path / "args"
    return install


def test_alarm_before_the_limit_sets_the_preemption_flag(squeue):
    args = squeue("0:02")
    with _Preemption() as pre:
        delay = arm_before_time_limit(1.5, env={"SLURM_JOB_ID": "4242"})
        assert delay == pytest.approx(0.5)
        deadline = time.time() + 5
        while pre.signal is None and time.time() < deadline:
            time.sleep(0.05)
    assert pre.signal == signal.SIGALRM
    assert args.read_text().split() == ["-h", "-j", "4242", "-o", "%L"]


def test_leaving_training_cancels_the_alarm(squeue):
    squeue("1:00")
    with _Preemption():
        assert arm_before_time_limit(30, env={"SLURM_JOB_ID": "1"}) == 30
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


@pytest.mark.parametrize("left, rc, env", [
    ("1:00", 0, {}),                        # not inside a SLURM job
    ("UNLIMITED", 0, {"SLURM_JOB_ID": "1"}),  # no time limit
    ("0:20", 0, {"SLURM_JOB_ID": "1"}),       # less left than the lead: it would stop every attempt
    ("", 1, {"SLURM_JOB_ID": "1"}),           # squeue fails (controller down)
])
def test_nothing_armed(squeue, left, rc, env):
    squeue(left, rc)
    assert arm_before_time_limit(30, env=env) is None
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
