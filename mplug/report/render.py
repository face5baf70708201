"""Render a run's report: `reports/<run>/report.html` (self-contained: CSS inline, figures as
base64 PNG), `tables/tableNN.{html,csv}` and `figures/figN.png`. All writes are atomic."""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from mplug import config as mcfg
from mplug.errors import ConfigError
from mplug.report import figures, mapping
from mplug.report.collect import STATUS_TEXT, RunContext
from mplug.report.differences import run_choices
from mplug.report.published import TABLES, load_published
from mplug.report.tables import build_generic, build_table6, hardware_text
from mplug.report.tables_run import all_stats, build_table11, build_table12
from mplug.report.views import TableView
from mplug.utils.io import atomic_write_bytes, atomic_write_text
from mplug.utils.logging import get_logger

log = get_logger(__name__)
TEMPLATES = Path(__file__).parent / "templates"


@dataclass
class ReportOptions:
    results: Path
    out: Path
    config_path: Path | None = None
    run_name: str | None = None
    smoke: bool = False
    tolerance: float = 1.0
    data: Path | None = None


def load_run_config(path: Path | None) -> dict[str, Any]:
    """The run config, validated as every `mplug` verb does: the report finds every result
    through its layout (mplug.config path helpers), so it cannot run without it."""
    if path is None:
        raise ConfigError("mplug report needs --config RUN.yaml (the run config the workflow ran "
                          "with, e.g. config/config.yaml or config/smoke.yaml): result paths "
                          "(results/<run>/<model_key>/...) come from it")
    return mcfg.load_config(path)


def build_tables(ctx: RunContext) -> list[TableView]:
    views = []
    for n in TABLES:
        pub = load_published(n)
        if n == 6:
            views.append(build_table6(pub, ctx))
        elif n == 11:
            views.append(build_table11(pub, ctx))
        elif n == 12:
            views.append(build_table12(pub, ctx))
        else:
            views.append(build_generic(n, pub, ctx))
    return views


def build_figures(ctx: RunContext) -> tuple[list[dict], str]:
    """[{number, png, uri, rows, claim}] for Figures 1, 3, 4, and a reason when there are none."""
    data, reason, path = ctx.load_source(mapping.locate_bench(ctx.config, mapping.FIGURE_BENCH))
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        return [], reason or f"malformed result: {ctx.rel(path)} has no 'rows' list"
    hw = hardware_text(data.get("hardware"))
    out = []
    for n in (1, 3, 4):
        res = figures.plot(data, n, hw)
        if res is None:
            out.append({"number": n, "png": None, "claim": figures.PAPER_CLAIMS[n],
                        "reason": f"{ctx.rel(path)} has no rows for Figure {n}"})
            continue
        png, rows = res
        out.append({"number": n, "png": png, "uri": figures.to_data_uri(png), "rows": rows,
                    "claim": figures.PAPER_CLAIMS[n], "hardware": hw, "source": ctx.rel(path)})
    return out, ""


def provenance_rows(ctx: RunContext) -> list[dict]:
    from mplug.utils.provenance import describe_hardware

    rows = []
    for path, (data, _) in sorted(ctx._cache.items()):
        if not isinstance(data, dict):
            continue
        p = data.get("provenance") if isinstance(data.get("provenance"), dict) else {}
        hw = p.get("hardware") or data.get("hardware")
        rows.append({"source": ctx.rel(path), "commit": p.get("commit"), "config_hash": p.get("config_hash"),
                     "checkpoint": p.get("checkpoint"),
                     "checkpoint_sha256": (p.get("checkpoint_sha256") or "")[:12] or None,
                     "dataset": p.get("dataset"), "split": p.get("split"), "size": p.get("size"),
                     "hardware": describe_hardware(hw) if isinstance(hw, dict) else hw,
                     "date": p.get("date"), "slurm_job_id": p.get("slurm_job_id"),
                     "wall_time_s": p.get("wall_time_s")})
    return rows


def other_benchmarks(ctx: RunContext) -> list[dict]:
    out = []
    for name in mapping.OTHER_BENCH:
        src = mapping.locate_bench(ctx.config, name)
        data, reason, _ = ctx.load_source(src)
        rows = data.get("rows") if isinstance(data, dict) else None
        shape_reason = "" if isinstance(rows, list) else "malformed: no 'rows' list"
        out.append({"name": src.path or f"bench {name}", "reason": reason if data is None else shape_reason,
                    "hardware": hardware_text(data.get("hardware")) if isinstance(data, dict) else "",
                    "rows": [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []})
    return out


def _plan(ctx: RunContext) -> tuple[dict | None, list[dict]]:
    """(the run plan's totals or None, its training jobs' plan vs actual rows)."""
    from mplug.errors import DataError
    from mplug.plan import plan_summary, plan_vs_actual, run_plan

    if not ctx.config.get("resources"):
        return None, []
    try:
        result = run_plan(ctx.config, ctx.root)
    except DataError:  # a bad bench JSON: plan_vs_actual reports it in its row
        return None, plan_vs_actual(ctx.config, ctx.root)
    return plan_summary(result), plan_vs_actual(ctx.config, ctx.root, result)


def _csv(long: pd.DataFrame) -> str:
    """The long table as CSV; a count column with empty cells stays integral (2, not 2.0)."""
    counts = {c: "Int64" for c in ("seeds",) if c in long}
    return long.astype(counts).to_csv(index=False)


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             autoescape=jinja2.select_autoescape(["j2", "html"]),
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.globals["STATUS_TEXT"] = STATUS_TEXT
    return env


def render_report(opts: ReportOptions) -> Path:
    """Write the report; return the path of report.html."""
    config = load_run_config(opts.config_path)
    run = opts.run_name or config["run"]
    # A smoke run is marked by --smoke, by the synthetic world as its data, or by the run name.
    smoke = opts.smoke or config["data"]["source"] == "synth" or str(run) == "smoke"
    banner = (config.get("report") or {}).get("banner")  # the run config's own words, under the banner
    # data/<run> beside results/<run> (both under the project root) unless --data says otherwise
    data_dir = opts.data or opts.results.parent.parent / mcfg.data_root(config)
    ctx = RunContext(results=opts.results, data=data_dir, config=config, tolerance=opts.tolerance,
                     smoke=smoke)
    views = build_tables(ctx)
    for problem in mapping.tables_label_mismatches(config):  # a stale label, not a lost result
        log.warning("%s", problem)
        views[0].notes.append(f"Run config label out of date: {problem}.")
    figs, fig_reason = build_figures(ctx)
    env = _env()
    css = (TEMPLATES / "report.css").read_text(encoding="utf-8")
    out = opts.out
    for v in views:
        atomic_write_text(out / "tables" / f"table{v.number:02d}.csv", _csv(v.long))
        atomic_write_text(out / "tables" / f"table{v.number:02d}.html",
                          env.get_template("table_page.html.j2").render(t=v, css=css, run=run, smoke=smoke,
                                                                               banner=banner))
    for f in figs:
        if f.get("png"):
            atomic_write_bytes(out / "figures" / f"fig{f['number']}.png", f["png"])
    plan_totals, plan_rows = _plan(ctx)
    html = env.get_template("report.html.j2").render(
        run=run, smoke=smoke, banner=banner, css=css, tables=views, figures=figs, fig_reason=fig_reason,
        provenance=provenance_rows(ctx), differences=run_choices(config), stats=all_stats(ctx),
        benches=other_benchmarks(ctx), plan_rows=plan_rows, plan=plan_totals, tolerance=opts.tolerance,
        results=ctx.rel(opts.results),
        data_dir=ctx.rel(data_dir), config_path=str(opts.config_path or "(none)"),
        generated=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    report = out / "report.html"
    atomic_write_text(report, html)
    log.info("report written: %s (%d tables, %d figures)", report, len(views),
             sum(1 for f in figs if f.get("png")))
    return report
