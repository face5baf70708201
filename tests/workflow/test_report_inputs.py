"""The report reads what the DAG writes: every file mplug.report.mapping locates for a table (and
the log it names when that file is missing) is an output (log) of a job in the dry run."""
from __future__ import annotations

import re

import pytest

from _dryrun import ROOT
from mplug import config as mcfg
from mplug.report import mapping


def _jobs(out: str) -> dict[str, str | None]:
    """output path -> log path, for every job of a dry run."""
    jobs: dict[str, str | None] = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", out):
        outputs = re.search(r"^\s+output: (.+)$", block, re.M)
        log = re.search(r"^\s+log: (\S+)$", block, re.M)
        for path in (outputs.group(1).split(", ") if outputs else []):
            jobs[path.strip()] = log.group(1) if log else None
    return jobs


@pytest.mark.parametrize("which,config", (("smoke_dry_run", "config/smoke.yaml"),
                                          ("paper_dry_run", "config/config.yaml")))
def test_every_table_source_is_a_dag_output_with_its_log(which, config, request):
    jobs = _jobs(request.getfixturevalue(which))
    assert sum(p.endswith("/metrics.json") for p in jobs) >= 20  # the parse found the jobs
    cfg = mcfg.load_config(ROOT / config)
    for n in range(1, 13):
        for src in mapping.table_sources(cfg, n):
            if src.path is None:
                continue  # e.g. Table 2's ViT-B rows in the smoke run (reason shown instead)
            assert src.path in jobs, (n, src.path)
            assert jobs[src.path] == src.log, (n, src.path, jobs[src.path], src.log)
    for path in mapping.figure_files(cfg):
        assert path in jobs
