"""The result-file map: every mPLUG cell of Tables 1-5, 7-10 is mapped, to an existing published cell."""
from pathlib import Path

import pytest

from mplug.report import mapping
from mplug.report.published import load_published

METRIC_TABLES = (1, 2, 3, 4, 5, 7, 8, 9, 10)


@pytest.mark.parametrize("table", METRIC_TABLES)
def test_every_mplug_cell_is_mapped_to_a_published_cell(table):
    pub = load_published(table)
    published = {(r.model, r.pretrain_data, r.setting, r.metric) for r in pub.itertuples()}
    mapped = {(c.model, c.pretrain_data, c.setting, c.metric) for c in mapping.cells_for_table(table)}
    assert mapped <= published, mapped - published
    mplug_cells = {k for k in published if k[0].startswith("mPLUG")}
    assert mplug_cells == mapped


def test_inputs_for_table(tmp_path):
    run = tmp_path / "results" / "smoke"
    t3 = mapping.inputs_for_table(3, run)
    assert t3 == [run / "eval/retrieval_coco/test/metrics.json", run / "eval/retrieval_flickr/test/metrics.json"]
    assert mapping.inputs_for_table(2, run) == []  # server-only cells: nothing a rule can build
    assert mapping.inputs_for_table(2, run, include_server=True) == [
        run / "eval/vqa/test_dev/metrics.json", run / "eval/vqa/test_std/metrics.json"]
    assert mapping.inputs_for_table(6, run) == [run / "bench/train.json"]
    assert tmp_path / "data" / "smoke" / "pretrain_14m" / "stats.json" in mapping.inputs_for_table(12, run)
    assert len(mapping.inputs_for_table(4, run)) == 8
    assert run / "finetune/caption_scst/summary.json" in mapping.inputs_for_table(11, run)
    for n in range(1, 13):
        assert all(isinstance(p, Path) for p in mapping.inputs_for_table(n, run))
    assert mapping.log_path_for("eval/caption/test/metrics.json", run) == \
        tmp_path / "logs" / "smoke" / "eval/caption/test/metrics.log"
