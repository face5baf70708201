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


COUNTS = {"n", "k_test", "ci_resamples"}  # and n_*: sizes, not metrics


def test_every_evaluation_has_metrics_with_provenance(smoke_run):
    """Issue 16: every metric of every metrics JSON carries its 95% interval (caption BLEU and
    METEOR included, recomputed per resample), besides the provenance."""
    smoke_run.check()
    files = sorted(smoke_run.results.glob("*/eval/*/*/metrics.json"))
    assert len(files) >= 26, files  # 18 fine-tuned + 8 zero-shot evaluations in config/smoke.yaml
    for path in files:
        data = json.loads(path.read_text())
        assert data["metrics"], path
        m = data["metrics"]
        scores = [k for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                  and k not in COUNTS and not k.startswith("n_")]
        assert scores and set(scores) <= set(m.get("ci95", {})), (path, scores, m.get("ci95"))
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


def _chance_recall(n_items: int, n_pos: int, k: int) -> float:
    """Recall@k (%) of a random ranking: P(one of n_pos positives among the top k)."""
    from math import comb

    return 100.0 * (1.0 - comb(n_items - n_pos, k) / comb(n_items, k))


def test_fine_tuned_models_beat_their_baselines(smoke_run):
    """Issue 4: the smoke run's fine-tuned models learn the synthetic world, each scored against
    a baseline from the world's manifest (computed from the data): captions above the blind
    constant caption, VQA above the majority answer, SNLI-VE above chance, retrieval's mean recall
    above a random ranking's. Measured at commit time: CIDEr 157 vs 66, VQA 41 vs 26, SNLI-VE 67
    vs 33, COCO r_mean 39 vs 17, Flickr 36 vs 17. Not here: grounding (RefCOCO val 34.0 = the mean
    training box's 34.0 after 150 + 30 steps) and NLVR2 (52 vs 50) need longer training; both
    are checked in tests/train/test_learning.py."""
    smoke_run.check()
    world = json.loads((smoke_run.workdir / "data/smoke/manifest.json").read_text())["datasets"]

    def metrics(job, split):
        path = smoke_run.results / "mplug_smoke" / "eval" / job / split / "metrics.json"
        return json.loads(path.read_text())["metrics"]

    checks = [
        ("caption_ce test CIDEr", metrics("caption_ce", "test")["CIDEr"],
         world["coco_caption"]["baselines"]["test"]["blind_constant_cider"]),
        ("vqa val", metrics("vqa", "val")["overall"], world["vqa"]["baselines"]["val"]["majority_acc"]),
        ("snli_ve test", metrics("snli_ve", "test")["accuracy"], world["snli_ve"]["chance"]["acc"]),
    ]
    for job in ("retrieval_coco", "retrieval_flickr"):
        m = metrics(job, "test")
        n_img, n_txt = m["n_images"], m["n_texts"]
        chance = [_chance_recall(n_txt, n_txt // n_img, k) for k in (1, 5, 10)] + \
                 [_chance_recall(n_img, 1, k) for k in (1, 5, 10)]
        checks.append((f"{job} test r_mean", m["r_mean"], sum(chance) / len(chance)))
    low = [(name, round(score, 1), round(base, 1)) for name, score, base in checks if score <= base]
    assert not low, f"at or below the baseline (name, score, baseline): {low}"


def test_captioner_looks_at_the_image(smoke_run):
    """The smoke captioner's test CIDEr is above that of its own commonest caption given to every
    test image (a captioner blind to the image scores the same twice). Measured at commit time:
    14 distinct captions for 40 images, CIDEr 157."""
    from collections import Counter

    from mplug.data.formats import read_records
    from mplug.eval.caption_eval import score_captions

    smoke_run.check()
    out = smoke_run.results / "mplug_smoke" / "eval" / "caption_ce" / "test"
    preds = json.loads((out / "metrics.predictions.json").read_text())
    const = Counter(p["caption"] for p in preds).most_common(1)[0][0]
    refs = {r["image_id"]: r["captions"] for r in read_records(
        smoke_run.workdir / "data/smoke/coco_caption/test.jsonl", "caption")}
    blind = score_captions(refs, {k: const for k in refs}, metrics=("CIDEr",))["CIDEr"]
    score = json.loads((out / "metrics.json").read_text())["metrics"]["CIDEr"]
    assert score > blind, f"CIDEr {score:.1f} <= its commonest caption {const!r} for all: {blind:.1f}"



def test_plan_agrees_with_snakemake_benchmarks(smoke_run):
    """Issue 16: each training job's planned wall time (`mplug plan` from this run's own train
    bench: start-up + samples x FLOPs / the FLOP/s of the bench row run as the job runs) against
    the wall time Snakemake recorded for the job (its `benchmark:` TSV), both shown in the report:
    every job within the issue's 3x, the median within 2x. The bench runs the jobs' micro batch
    32 (config/smoke.yaml): at the quick default of 4 the plan read every job ~2x slow, and up to
    4.4x on a loaded CI machine. Measured on a quiet 2-core machine: 0.70-1.20 (the low one is
    pretrain_14m, the first training job, which JIT-builds DeepSpeed's CPU comm op, ~33 s). SCST
    is planned as "no estimate": its steps took 4.7x their FLOP count's time on the smoke run."""
    from mplug import config as mcfg
    from mplug.plan import plan_vs_actual

    smoke_run.check()
    cfg = mcfg.load_config(REPO / "config" / "smoke.yaml")
    rows = plan_vs_actual(cfg, smoke_run.workdir)
    trained = [(job, key, None) for key, m in mcfg.enabled_models(cfg).items()
               for job in m.get("pretrain", []) + m.get("finetune", [])]
    trained += [(job, key, seed) for job, key, _ in trained for seed in mcfg.finetune_seeds(cfg, job)]
    assert sorted((r["job"], r["model"], r["seed"] or -1) for r in rows) == \
        sorted((j, k, s or -1) for j, k, s in trained), rows
    assert any(r["seed"] for r in rows)  # evaluate.snli_ve.seeds: snli_ve's seed-1 run is planned too
    assert all(r["snakemake_s"] for r in rows), rows  # every job has its benchmark: TSV
    # SCST (beam search in every step) is the one kind the plan says it cannot estimate
    scst = {name for name, job in cfg["finetune"].items() if job["train"].get("scst")}
    planned = [r for r in rows if r["planned_s"] is not None]
    assert {r["job"] for r in rows} - {r["job"] for r in planned} == scst, rows
    assert all(r["startup_s"] and r["compute_s"] for r in planned), rows  # both parts measured
    table = [(r["job"], round(r["planned_s"], 1), r["snakemake_s"]) for r in planned]
    off = [t for t, r in zip(table, planned) if not 1 / 3 <= r["ratio"] <= 3]
    assert not off, f"planned vs Snakemake seconds beyond 3x (job, planned, Snakemake): {off}; all: {table}"
    median = sorted(r["ratio"] for r in planned)[len(planned) // 2]
    assert 1 / 2 <= median <= 2, f"median planned/Snakemake {median:.2f}; all: {table}"
    section = (smoke_run.report / "report.html").read_text().split('id="plan"')[1].split("<h2")[0]
    for r in planned:
        assert f'<td class="num">{r["planned_s"]:.1f}</td>' in section, r
        assert f'<td class="num">{r["snakemake_s"]:.1f}</td>' in section, r


# Runs in the page once it has loaded; chromium's --dump-dom then prints the DOM with the verdict.
BROWSER_CHECK = """<script>addEventListener("load", () => {
  const wide = [...document.querySelectorAll("body *")].filter(e => {
    const r = e.getBoundingClientRect();
    return r.width > 0 && r.right > document.documentElement.clientWidth + 1 && !e.closest(".scroll");
  }).map(e => e.tagName + (e.id ? "#" + e.id : "") + "." + e.className);
  const broken = [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt);
  const tables = [...document.querySelectorAll("[id^=table]")].filter(e => e.querySelector("table"));
  document.body.setAttribute("data-check", JSON.stringify({
    page_width: document.documentElement.scrollWidth, viewport: document.documentElement.clientWidth,
    overflowing: wide.slice(0, 20), broken_images: broken, tables: tables.map(e => e.id)}));
});</script>"""


def _chromium(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                           "--hide-scrollbars", "--virtual-time-budget=5000", *args],
                          capture_output=True, text=True, timeout=180)


def test_report_renders_in_a_real_browser(smoke_run, tmp_path):
    """Issue 16: the smoke report in headless chromium at a laptop's width: all 12 tables in the
    loaded DOM, every figure decoded, nothing wider than the window outside a scroll box, and a
    screenshot that is not blank."""
    import shutil

    from PIL import Image

    if not shutil.which("chromium"):
        pytest.skip("chromium not installed (CI installs it in .ci/run: apt-get install chromium)")
    smoke_run.check()
    page = tmp_path / "report.html"
    page.write_text((smoke_run.report / "report.html").read_text().replace("</body>", BROWSER_CHECK + "</body>"))
    dom = _chromium("--window-size=1280,900", "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.search(r'data-check="([^"]*)"', dom.stdout)
    assert found, dom.stdout[-2000:]
    check = json.loads(found[1].replace("&quot;", '"').replace("&amp;", "&"))
    assert check["tables"] == [f"table{n:02d}" for n in range(1, 13)], check
    assert not check["broken_images"], check
    assert not check["overflowing"] and check["page_width"] <= check["viewport"], check
    shot = tmp_path / "report.png"
    res = _chromium("--window-size=1280,2400", f"--screenshot={shot}", page.as_uri())
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    colours = Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 50, f"a near-blank screenshot: {len(colours)} colours"
