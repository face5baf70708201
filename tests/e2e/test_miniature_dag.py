"""The paper run in miniature, end to end (`make miniature`): `mplug miniature` derives the run
config from config/config.yaml (only sizes shrink: tests/workflow/test_miniature.py), then the
same Snakefile runs it on CPU - three model keys, two pretraining stages, 13 fine-tunes, 28
evaluations at the paper's resolutions, init from CLIP/BERT files at their download paths - and
writes the report. Checked here: what the smoke run's shape cannot show."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

# the smoke DAG's command and environment come from the `dag_command` fixture (tests/conftest.py):
# `from conftest import` would take whichever of the folders' conftest.py was loaded first
MPLUG = Path(sys.executable).with_name("mplug")
REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 40 * 60


@pytest.fixture(scope="module")
def miniature(tmp_path_factory, dag_command) -> Path:
    workdir = tmp_path_factory.mktemp("miniature_run")
    config = workdir / "miniature.yaml"
    subprocess.run([str(MPLUG), "miniature", "--config", str(REPO / "config" / "config.yaml"),
                    "--out", str(config)], check=True, capture_output=True, text=True)
    command, env = dag_command
    res = subprocess.run(command(workdir, config=config), cwd=REPO, env=env(), capture_output=True,
                         text=True, timeout=TIMEOUT_S)
    assert res.returncode == 0, (res.stdout + res.stderr)[-6000:]
    return workdir


def _metrics(run: Path, model: str, job: str, split: str) -> dict:
    return json.loads((run / "results" / "miniature" / model / "eval" / job / split / "metrics.json").read_text())


def test_the_miniature_writes_every_table_with_reproduced_numbers(miniature):
    report = miniature / "reports" / "miniature"
    html = (report / "report.html").read_text()
    assert "Miniature of the paper run" in html
    for n in range(1, 13):
        assert f'id="table{n:02d}"' in html, n
        assert (report / "tables" / f"table{n:02d}.csv").is_file(), n
    for n in (1, 3, 4, 5, 7, 8, 9, 10):  # the evaluation tables: mPLUG's rows are reproduced
        table = pd.read_csv(report / "tables" / f"table{n:02d}.csv", keep_default_na=False, dtype=str)
        assert (table.reproduced != "").any(), (n, table.head())
    # Table 2 is VQA test-dev/test-std: as in the paper run, a server submission, not a number
    t2 = pd.read_csv(report / "tables" / "table02.csv", keep_default_na=False, dtype=str)
    assert set(t2[t2.model.str.startswith("mPLUG")].status) == {"server"}, t2


def test_pretraining_starts_from_the_clip_and_bert_files_at_their_download_paths(miniature):
    for model, clip in (("mplug_large", "clip_vit_l14/ViT-L-14.tar"), ("mplug_base", "clip_vit_b16/ViT-B-16.tar")):
        summary = json.loads((miniature / "results" / "miniature" / model / "pretrain" / "pretrain_14m"
                              / "summary.json").read_text())
        init = summary["run"]["init"]
        assert init["clip"] == f"resources/{clip}" and init["bert"] == "resources/bert_base_uncased", init
        assert init["kept"] > 50, init
        marker = json.loads((miniature / "resources" / clip.split("/")[0] / "download.json").read_text())
        assert marker["synthetic"] is True


@pytest.mark.parametrize("model, job, split, trained, evaluated", [
    ("mplug_large", "video_caption", "test", 224, 448),      # pretrain_14m (224 px) at 448 px
    ("mplug_large", "nocaps_zeroshot", "val", 224, 336),
    ("mplug_base", "video_qa_msrvtt", "test", 384, 480),     # the base VQA model at 480 px
    ("mplug_large", "video_retrieval_coco", "test", 336, 224),  # retrieval_coco (336 px) at 224 px
])
def test_evaluation_runs_at_the_jobs_resolution_in_both_directions(miniature, model, job, split, trained,
                                                                   evaluated):
    prov = _metrics(miniature, model, job, split)["provenance"]
    assert prov["model_key"] == model and prov["job"] == job, prov
    res = prov["resolution"]
    assert (res["checkpoint_image_res"], res["image_res"], res["pos_embed_resized"]) == (trained, evaluated, True), res


def test_each_model_key_is_its_own_in_provenance(miniature):
    """mplug_base and mplug_base_4m share an architecture; each evaluation names its model key."""
    for model in ("mplug_base", "mplug_base_4m", "mplug_large"):
        prov = _metrics(miniature, model, "vqa", "test")["provenance"]
        assert prov["model_key"] == model and prov["job"] == "vqa", prov
        assert prov["arch"] == ("mplug_large_mini" if model == "mplug_large" else "mplug_base_mini")
