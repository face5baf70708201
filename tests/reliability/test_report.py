"""Item 7: a partially failed run, in the workflow's own layout, through `mplug report` as the
`report` rule calls it: every table and row survives; every missing or failed result is "not run"
with a reason that says why (a failed rule points at its log); real values are shown as is.

The metrics files written here are TEST FIXTURES with made-up values, not results.
"""
from __future__ import annotations

import json

import pandas as pd
import pytest

from _helpers import REPO, mplug
from mplug.report.published import load_published

RUN = "smoke"
EVAL = f"results/{RUN}/mplug_smoke/eval"


@pytest.fixture(scope="module")
def partial_run(tmp_path_factory):
    """A project root where NLVR2 dev finished, NLVR2 test-P was cut mid-write by a kill that
    bypassed the atomic writer, SNLI-VE dev failed (its rule log ends with the error), and
    everything else never ran."""
    root = tmp_path_factory.mktemp("project")
    ok = root / EVAL / "nlvr2/dev/metrics.json"
    ok.parent.mkdir(parents=True)
    ok.write_text(json.dumps({"task": "nlvr2", "split": "dev", "metrics": {"accuracy": 55.5},
                              "provenance": {"note": "test fixture"}}))
    cut = root / EVAL / "nlvr2/test_p/metrics.json"
    cut.parent.mkdir(parents=True)
    cut.write_text('{"task": "nlvr2", "split": "test_p", "metrics": {"accur')
    log = root / f"logs/{RUN}/evaluate/mplug_smoke/snli_ve/dev.log"
    log.parent.mkdir(parents=True)
    log.write_text("loading...\nDataError: cannot read image data/smoke/snli_ve/images/7.png\n")
    res = mplug("report", "--config", REPO / "config/smoke.yaml", "--results", f"results/{RUN}",
                "--out", f"reports/{RUN}", "--smoke", cwd=root)
    assert res.returncode == 0, res.stderr[-3000:]
    return root


def _csv(root, n):
    return pd.read_csv(root / f"reports/{RUN}/tables/table{n:02d}.csv", keep_default_na=False,
                       dtype=str)


def _cell(root, table, setting):
    df = _csv(root, table)
    row = df[(df.model == "mPLUG") & (df.setting == setting)]
    assert len(row) == 1, (table, setting, df[["model", "setting"]].values.tolist())
    return row.iloc[0]


def test_no_table_or_row_dropped(partial_run):
    html = (partial_run / f"reports/{RUN}/report.html").read_text()
    for n in range(1, 13):
        assert f'id="table{n:02d}"' in html, n
        assert len(_csv(partial_run, n)) == len(load_published(n)), n


def test_finished_result_is_shown(partial_run):
    cell = _cell(partial_run, 5, "NLVR2 dev")
    assert float(cell.reproduced) == 55.5 and cell.status == "pipeline"  # smoke: never judged
    assert cell.source.endswith("mplug_smoke/eval/nlvr2/dev/metrics.json")


def test_cut_result_is_not_run_with_reason(partial_run):
    cell = _cell(partial_run, 5, "NLVR2 test-P")
    assert cell.status == "not_run" and cell.reproduced == ""
    assert "malformed" in cell.reason


def test_failed_rule_is_not_run_and_points_at_its_log(partial_run):
    cell = _cell(partial_run, 5, "SNLI-VE dev")
    assert cell.status == "not_run" and cell.reproduced == ""
    assert "rule failed" in cell.reason, cell.reason
    assert "evaluate/mplug_smoke/snli_ve/dev.log" in cell.reason
    assert "cannot read image" in cell.reason


def test_never_run_result_says_so(partial_run):
    cell = _cell(partial_run, 5, "SNLI-VE test")
    assert cell.status == "not_run" and "not run yet" in cell.reason
    html = (partial_run / f"reports/{RUN}/report.html").read_text()
    assert "not run" in html and "SMOKE RUN" in html
