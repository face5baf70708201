"""The smoke DAG's tail through the real scheduler, checked against the same jobs run locally:
a copy of the finished local smoke run (tests/conftest.py `smoke_run`) loses one fine-tuned
model, and `snakemake all --profile slurm` rebuilds it, its evaluations and the report as SLURM
jobs. Pretraining as a SLURM job (resources, requeue, cancel) is tests/slurm/test_real_scheduler.py."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _slurm import MARKS, SMOKE, job_ids, sacct, snakemake  # noqa: E402

pytestmark = MARKS
JOB = "grounding_refcoco_plus"  # the smoke run's shortest fine-tune (30 steps) and 3 evaluations


def _metrics(results: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text())
            for p in sorted((results / "mplug_smoke" / "eval" / JOB).glob("*/metrics.json"))}


def test_a_fine_tune_its_evaluations_and_the_report_as_slurm_jobs_give_the_local_numbers(
        smoke_run, tmp_path):
    smoke_run.check()
    work = tmp_path / "run"
    shutil.copytree(smoke_run.workdir, work, symlinks=True)  # .snakemake/ included: same state
    results = work / "results" / "smoke"
    local = _metrics(results)
    assert set(local) == {"val", "testA", "testB"}, local.keys()
    shutil.rmtree(results / "mplug_smoke" / "finetune" / JOB)  # checkpoints too: trains afresh
    # the local run's config file itself: the same params, so nothing else is out of date
    proc = snakemake(work, "all", config=SMOKE)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-4000:]
    jobs = {rule: job_ids(work, rule) for rule in ("finetune", "evaluate", "report", "pretrain")}
    assert [len(jobs[r]) for r in jobs] == [1, 3, 1, 0], jobs  # only what the lost model feeds
    for job in jobs["finetune"] + jobs["evaluate"] + jobs["report"]:
        assert sacct(job, "State")["State"] == "COMPLETED", job
    remote = _metrics(results)
    for split, before in local.items():
        assert remote[split]["metrics"] == before["metrics"], split  # bit-identical numbers
        assert int(remote[split]["provenance"]["slurm_job_id"]) in jobs["evaluate"]
    report = work / "reports" / "smoke" / "report.html"
    assert report.stat().st_mtime > (results / "mplug_smoke" / "finetune" / JOB / "model.safetensors").stat().st_mtime
    assert str(jobs["evaluate"][0]) in report.read_text()  # the provenance table names the job
