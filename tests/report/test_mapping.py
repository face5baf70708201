"""The one map from published cells to results: complete, consistent with the run configs, and
the same list of files the workflow's tableNN targets build."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest

from mplug import config as mcfg
from mplug.report import mapping
from mplug.report.published import load_published

from .layout import eval_outputs

REPO = Path(__file__).resolve().parents[2]
METRIC_TABLES = (1, 2, 3, 4, 5, 7, 8, 9, 10)


@pytest.fixture(scope="module")
def paper():
    return mcfg.load_config(REPO / "config/config.yaml")


@pytest.fixture(scope="module")
def smoke():
    return mcfg.load_config(REPO / "config/smoke.yaml")


@pytest.mark.parametrize("table", METRIC_TABLES)
def test_every_mplug_cell_is_mapped_to_a_published_cell(table):
    pub = load_published(table)
    published = {(r.model, r.pretrain_data, r.setting, r.metric) for r in pub.itertuples()}
    mapped = {(c.model, c.pretrain_data, c.setting, c.metric) for c in mapping.cells_for_table(table)}
    assert mapped <= published, mapped - published
    mplug_cells = {k for k in published if k[0].startswith("mPLUG")}
    assert mplug_cells == mapped


def _unreproduced(cfg: dict) -> list[str]:
    """Published mPLUG cells that the config's DAG does not produce and that are not listed in
    mapping.NOT_REPRODUCED with a reason."""
    built = {path for *_, path in eval_outputs(cfg)}
    missing = []
    for cell in mapping.CELLS:
        listed = mapping.NOT_REPRODUCED.get(cell.key) or mapping.NOT_REPRODUCED.get(
            (cell.table,) + cell.row)
        src = mapping.locate_cell(cfg, cell)
        if listed:
            assert listed.strip() and src.path is None and listed in src.reason
            continue
        if src.path not in built:
            missing.append(f"{cell.key}: {src.reason or src.path}")
    return missing


def test_paper_config_runs_every_published_mplug_cell(paper):
    assert _unreproduced(paper) == []
    for key in mapping.NOT_REPRODUCED:  # listed cells/rows exist in the paper
        assert any(c.key[:len(key)] == key for c in mapping.CELLS), key
    for n in (11, 12):
        assert all(s.path for s in mapping.table_sources(paper, n))


def test_a_dropped_job_is_caught_with_a_reason(paper):
    cfg = copy.deepcopy(paper)
    cfg["models"]["mplug_large"]["evaluate"].remove("video_caption")
    missing = _unreproduced(cfg)
    assert len(missing) == 1 and "VATEX-Cap" in missing[0] and "'video_caption'" in missing[0]
    cfg["evaluate"]["nlvr2"]["splits"] = ["dev"]
    src = mapping.locate_cell(cfg, next(c for c in mapping.CELLS if c.setting == "NLVR2 test-P"))
    assert src.path is None and "no 'test_p' split" in src.reason


def test_table2_rows_pick_their_model(paper):
    paths = {c.model + " " + c.pretrain_data: mapping.locate_cell(paper, c).path
             for c in mapping.cells_for_table(2)}
    assert paths == {"mPLUGViT-B 4M": "results/paper/mplug_base_4m/eval/vqa/test/metrics.json",
                     "mPLUGViT-B 14M": "results/paper/mplug_base/eval/vqa/test/metrics.json",
                     "mPLUGViT-L 14M": "results/paper/mplug_large/eval/vqa/test/metrics.json"}


@pytest.mark.parametrize("which", ("paper", "smoke"))
def test_tables_labels_agree_with_the_map(which, request):
    assert mapping.tables_label_mismatches(request.getfixturevalue(which)) == []


def test_a_stale_tables_label_is_reported(smoke):
    cfg = copy.deepcopy(smoke)
    cfg["evaluate"]["nlvr2"]["tables"] = [5, 6]
    assert mapping.tables_label_mismatches(cfg) == [
        "evaluate.nlvr2.tables is [5, 6] but the report fills [5] from it"]


def test_table_files_in_the_run_layout(smoke, paper):
    for cfg in (smoke, paper):
        for n in range(1, 13):
            assert all(p.startswith((f"results/{cfg['run']}/", f"data/{cfg['run']}/"))
                       for p in mapping.table_files(cfg, n))
    assert mapping.table_files(smoke, 3) == [
        "results/smoke/mplug_smoke/eval/retrieval_coco/test/metrics.json",
        "results/smoke/mplug_smoke/eval/retrieval_flickr/test/metrics.json"]
    assert mapping.table_files(smoke, 2) == ["results/smoke/mplug_smoke/eval/vqa/val/metrics.json"]
    assert mapping.table_files(smoke, 12) == ["data/smoke/manifest.json"]
    assert mapping.table_files(paper, 12) == ["data/paper/pretrain_14m/stats.json",
                                            "data/paper/pretrain_4m/stats.json"]
    assert "results/paper/mplug_large/finetune/grounding_mixed/summary.json" in \
        mapping.table_files(paper, 11)
    assert mapping.figure_files(smoke) == ["results/smoke/bench/fusion.json"]
    off = copy.deepcopy(smoke)
    off["bench"]["train"]["enabled"] = False
    assert mapping.table_files(off, 6) == []


def test_logs_follow_the_rules(smoke):
    cell = next(c for c in mapping.CELLS if c.job == "video_caption")
    assert mapping.locate_cell(smoke, cell).log == \
        "logs/smoke/zeroshot/mplug_smoke/video_caption/test.log"
    cell = next(c for c in mapping.CELLS if c.job == "nlvr2")
    assert mapping.locate_cell(smoke, cell).log == "logs/smoke/evaluate/mplug_smoke/nlvr2/dev.log"
    assert mapping.locate_finetune(smoke, "vqa").log == "logs/smoke/finetune/mplug_smoke/vqa.log"
