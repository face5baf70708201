"""The main job end to end: the smoke DAG (`make smoke`) on the synthetic world, on this CPU.

Runs once per session through the `smoke_run` fixture (tests/conftest.py) in a fresh working
directory, exactly as `make smoke` runs it, then checks what a user would look at: all 12 tables
and the figures in one report, a result with provenance for every evaluation, a rerun that does
nothing, and a deleted table output that rebuilds only what it needs.
"""
from __future__ import annotations

import json
import re
import subprocess

from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _snakemake(run, *args: str, targets=("all",)) -> str:
    res = subprocess.run(run.command(run.workdir, *targets) + list(args), cwd=REPO,
                         env=run.env(), capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    return res.stdout + res.stderr


def _jobs(dry_run_output: str) -> dict[str, int]:
    """Job counts from a dry run's 'Job stats' table (empty when nothing is to be done)."""
    counts = {}
    for m in re.finditer(r"^(\w+)\s+(\d+)$", dry_run_output, re.M):
        counts[m[1]] = int(m[2])
    counts.pop("total", None)
    return counts


def test_smoke_dag_writes_the_report_with_every_table_and_figure(smoke_run):
    smoke_run.check()
    html = (smoke_run.report / "report.html").read_text()
    assert "SMOKE RUN" in html  # the banner: synthetic numbers, not comparable with the paper
    for n in range(1, 13):
        assert f'id="table{n:02d}"' in html, n
        for ext in ("html", "csv"):
            assert (smoke_run.report / "tables" / f"table{n:02d}.{ext}").is_file()
    figures = sorted(p.name for p in (smoke_run.report / "figures").glob("*.png"))
    assert figures, "no figure rendered from the fusion benchmark"
    assert html.count("data:image/png;base64,") >= len(figures)  # self-contained
    # reproduced numbers reach the tables (the smoke model stands in for mPLUG's row)
    t5 = pd.read_csv(smoke_run.report / "tables" / "table05.csv", keep_default_na=False, dtype=str)
    mine = t5[t5.model == "mPLUG"]
    assert len(mine) == 4 and (mine.reproduced != "").all(), mine


def test_every_evaluation_has_metrics_with_provenance(smoke_run):
    smoke_run.check()
    files = sorted(smoke_run.results.glob("*/eval/*/*/metrics.json"))
    assert len(files) >= 26, files  # 18 fine-tuned + 8 zero-shot evaluations in config/smoke.yaml
    for path in files:
        data = json.loads(path.read_text())
        assert data["metrics"], path
        prov = data["provenance"]
        for key in ("commit", "config_hash", "checkpoint_sha256", "dataset", "split", "size",
                    "hardware", "wall_time_s", "date"):
            assert prov.get(key) is not None, (path, key)


def test_rerun_after_finish_does_nothing(smoke_run):
    smoke_run.check()
    out = _snakemake(smoke_run, "-n")
    assert _jobs(out) == {}, out[-3000:]
    assert "Nothing to be done" in out


def test_deleted_table_output_rebuilds_only_what_it_needs(smoke_run):
    """Table 5 lost one evaluation: `table05` reruns exactly that evaluation, nothing upstream."""
    smoke_run.check()
    lost = smoke_run.results / "mplug_smoke/eval/snli_ve/dev/metrics.json"
    before = json.loads(lost.read_text())["metrics"]
    lost.unlink()
    assert _jobs(_snakemake(smoke_run, "-n", targets=("table05",))) == {"evaluate": 1,
                                                                          "table05": 1}
    _snakemake(smoke_run, targets=("table05",))
    assert json.loads(lost.read_text())["metrics"] == before  # same checkpoint, same numbers
    # `all` then only re-renders the report, which reads the rebuilt file
    assert _jobs(_snakemake(smoke_run, "-n")) == {"report": 1, "all": 1}
    _snakemake(smoke_run)
