"""The early signal before a SLURM time limit: SIGALRM `lead_s` before the job's end.

A job killed at its limit gets SIGTERM and, KillWait seconds later (often 30 s), SIGKILL: too
little for a large ZeRO checkpoint. SLURM's own early signal does not fit the way
snakemake-executor-plugin-slurm runs a rule: `--signal=USR1@lead` reaches every process of
the job step, and the rule runs in a step as the child of a job-step `snakemake`, which USR1
kills (the step ends and takes the trainer with it, mid-checkpoint); `--signal=B:USR1@lead`
reaches only the batch shell, which it kills too. So the trainer asks SLURM how long its job
has left and arms an alarm of its own; the training loop treats SIGALRM like SIGUSR1
(checkpoint, exit 75, the rule requeues the job).
"""
from __future__ import annotations

import logging
import os
import re
import signal
import subprocess

log = logging.getLogger("mplug.train")

_DURATION = re.compile(r"^(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)$")  # [D-][H:]M:S, as squeue %L prints


def parse_slurm_duration(text: str) -> float | None:
    """Seconds in a SLURM duration ('1-02:03:04', '2:03:04', '3:04'); None for UNLIMITED,
    NOT_SET, INVALID or anything else that is no duration."""
    m = _DURATION.match(text.strip())
    if not m:
        return None
    days, hours, minutes, seconds = (int(g) if g else 0 for g in m.groups())
    return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)


def slurm_time_left_s(job_id: str) -> float | None:
    """What SLURM says job `job_id` has left (squeue %L), or None when it cannot tell."""
    try:
        res = subprocess.run(["squeue", "-h", "-j", str(job_id), "-o", "%L"], capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        log.warning("squeue for SLURM job %s failed (%s): no early checkpoint before its time "
                    "limit", job_id, err)
        return None
    if res.returncode != 0:
        log.warning("squeue for SLURM job %s failed: %s", job_id, res.stderr.strip())
        return None
    return parse_slurm_duration(res.stdout.strip().splitlines()[0]) if res.stdout.strip() else None


def arm_before_time_limit(lead_s: float | None, env=os.environ) -> float | None:
    """Inside a SLURM job with a time limit: SIGALRM `lead_s` before it ends. Returns the delay
    in seconds; None when nothing was armed (no job, no limit, no lead, or no more time left
    than the lead). The caller installs the SIGALRM handler first."""
    job = env.get("SLURM_JOB_ID")
    if not job or not lead_s:
        return None
    left = slurm_time_left_s(job)
    if left is None:
        return None
    if left <= float(lead_s):  # armed, it would stop every attempt before its first step
        log.warning("SLURM job %s has %.0f s left, no more than resources.cluster.signal_lead_s "
                    "(%s): no early checkpoint; ask for a longer runtime or a shorter lead",
                    job, left, lead_s)
        return None
    delay = left - float(lead_s)
    signal.setitimer(signal.ITIMER_REAL, delay)
    log.info("SLURM job %s has %.0f s left: checkpoint and exit 75 in %.0f s "
             "(resources.cluster.signal_lead_s = %s)", job, left, delay, lead_s)
    return delay

