"""Tables 11 and 12: what the run actually used (hyper-parameters) and obtained (data)."""
from __future__ import annotations

import math
from typing import Any

import pandas as pd

from mplug.report import mapping
from mplug.report.collect import DIFFERS, INFO, MATCH, NOT_RUN, Repro, RunContext
from mplug.report.published import CAPTIONS, LR_METRIC, parse_lr
from mplug.report.views import Cell, Footnotes, TableView, repro_cell, repro_record


def _with_records(pub: pd.DataFrame, records: dict[tuple[str, str], dict]) -> pd.DataFrame:
    """Published rows (in file order) + the reproduction columns, joined on (model, metric)."""
    extra = pd.DataFrame([records[(r.model, r.metric)] for r in pub.itertuples(index=False)])
    return pd.concat([pub.drop(columns=["line"]).reset_index(drop=True), extra], axis=1)


def _scope(summary: dict, path: tuple[str, ...]) -> dict | None:
    node: Any = summary
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def _hparam(summary: dict, name: str) -> Any:
    """First of `HPARAM_KEYS[name]` found in the scopes the trainer (and older shapes) use."""
    for path in mapping.HPARAM_SCOPES:
        scope = _scope(summary, path)
        if scope is not None:
            for key in mapping.HPARAM_KEYS[name]:
                if key in scope and scope[key] is not None:
                    return scope[key]
    return None


def _close(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=1e-6) for x, y in zip(a, b))


def _used(ctx: RunContext, task: str, metric: str) -> Repro:
    """The value the run used for one Table 11 cell, from the task's fine-tuning summaries."""
    values, sources, notes = [], [], []
    for job in mapping.TABLE11_JOBS[task]:
        src = mapping.locate_finetune(ctx.config, job)
        data, reason, path = ctx.load_source(src)
        where = ctx.rel(path) if path is not None else None
        if data is None:
            return Repro(NOT_RUN, reason=reason, source=where)
        if not isinstance(data, dict):
            return Repro(NOT_RUN, reason=f"malformed result: {where} is not an object", source=where)
        sources.append(where)
        if metric == LR_METRIC:
            lr, lrv = _hparam(data, "lr"), _hparam(data, "lr_visual")
            if lr is None:
                return Repro(NOT_RUN, reason=f"{where}: none of {list(mapping.HPARAM_KEYS['lr'])}",
                             source=where)
            values.append([lr] if lrv is None or lrv == lr else [lr, lrv])
        else:
            name = "batch_size" if metric == "batch size" else "epochs"
            v = _hparam(data, name)
            if v is None:
                return Repro(NOT_RUN, reason=f"{where}: none of {list(mapping.HPARAM_KEYS[name])}",
                             source=where)
            values.append([v])
            cap = (_scope(data, ("run", "settings")) or {}).get("max_steps")
            if name == "epochs" and cap:
                notes.append(f"{job}: max_steps {cap} caps training ({data.get('steps', '?')} "
                             f"steps, {data.get('epochs_done', '?')} epochs done)")
    return Repro(INFO, text=_fmt_used(metric, values), source="; ".join(sources),
                 provenance={"values": values}, reason="; ".join(notes))


def _fmt_used(metric: str, values: list[list]) -> str:
    if metric == LR_METRIC:
        return " & ".join("/".join(f"{float(x):g}" for x in v) for v in values)
    flat = list(dict.fromkeys(str(v[0]) for v in values))
    return " & ".join(flat)


def build_table11(pub: pd.DataFrame, ctx: RunContext) -> TableView:
    notes = Footnotes()
    metrics = list(dict.fromkeys(pub["metric"]))
    header = [[Cell("Task", header=True)] + [Cell(m, header=True, colspan=3) for m in metrics],
              [Cell("", header=True)] + [Cell(h, header=True) for _ in metrics
                                         for h in ("paper", "this run", "status")]]
    body: list = []
    records: dict[tuple[str, str], dict] = {}
    for task in dict.fromkeys(pub["model"]):
        line = [Cell(task)]
        for metric in metrics:
            row = pub[(pub["model"] == task) & (pub["metric"] == metric)].iloc[0]
            r = _used(ctx, task, metric)
            if r.status == INFO:
                paper = parse_lr(row["value"]) if metric == LR_METRIC else [row["value_num"]]
                used = [float(x) for v in r.provenance["values"] for x in v]
                r.status = MATCH if _close(sorted(paper), sorted(used)) else DIFFERS
                r.provenance = None
            line += [Cell(row["value"] + (" *" if row["note"] else ""), "noted" if row["note"] else "",
                          row["note"]), repro_cell(r, notes),
                     Cell({MATCH: "same", DIFFERS: "differs"}.get(r.status, "not run"), f"status-{r.status}")]
            records[(task, metric)] = repro_record(r)
        body.append(line)
    long = _with_records(pub, records)
    tv = TableView(11, "Table 11", CAPTIONS[11], header, body, ["published"] * len(body), long, notes.items)
    jobs = {t: [(j, mapping.locate_finetune(ctx.config, j).model_key) for j in js]
            for t, js in mapping.TABLE11_JOBS.items()}
    tv.notes.append("'this run' = the settings each fine-tuning job recorded in its summary.json "
                    "(results/<run>/<model_key>/finetune/<job>/summary.json, run.settings: "
                    + ", ".join(f"{k}: {'|'.join(v)}" for k, v in mapping.HPARAM_KEYS.items())
                    + "). Jobs: " + "; ".join(f"{t} = " + " & ".join(f"{j} ({k or 'not run'})"
                                                                  for j, k in js)
                                              for t, js in jobs.items())
                    + f". hparams: {ctx.config.get('hparams', 'official')} (official = the "
                    "released configs; paper = Table 11's values where they differ).")
    return tv


# ------------------------------------------------------------------------------ Table 12
def _synth_reason(ctx: RunContext, data: Any, where: str) -> str:
    """Why a synthetic-world run has no per-corpus counts, with what it does have."""
    sets = data.get("datasets", {}) if isinstance(data, dict) else {}
    pretraining = [d for d, e in ctx.config["data"]["datasets"].items() if e.get("pretraining")]
    have = "; ".join(f"{name}: {d.get('images')} images / {d.get('texts')} texts "
                     f"({d.get('notes', '')})" for name, d in sets.items()
                     if name in pretraining and isinstance(d, dict))
    return (f"synthetic world (data.source: synth): no per-corpus breakdown of the pre-training "
            f"data; {where} has {have or 'no pretrain_* dataset'}")


def _stats(ctx: RunContext) -> tuple[dict[str, dict], list[str]]:
    """corpus -> {"images", "texts", "src"} from the pre-training datasets' stats.json
    `components` (first file wins: pretrain_14m holds every corpus), plus reasons."""
    out: dict[str, dict] = {}
    reasons = []
    for src in mapping.table12_files(ctx.config):
        data, reason, path = ctx.load_source(src)
        where = ctx.rel(path)
        if data is None:
            reasons.append(reason)
            continue
        if ctx.config["data"]["source"] == "synth":
            reasons.append(_synth_reason(ctx, data, where))
            continue
        comps = data.get("components") if isinstance(data, dict) else None
        if not isinstance(comps, dict):
            reasons.append(f"{where} has no 'components' object "
                           "({corpus: {images_obtained, texts_obtained}})")
            continue
        for corpus, counts in comps.items():
            if isinstance(counts, dict) and corpus not in out:
                out[corpus] = {"images": counts.get("images_obtained"),
                               "texts": counts.get("texts_obtained"), "src": where}
    return out, reasons


def build_table12(pub: pd.DataFrame, ctx: RunContext, rel_tol: float = 0.05) -> TableView:
    notes = Footnotes()
    stats, reasons = _stats(ctx)
    header = [[Cell("", header=True)] + [Cell(d, header=True, colspan=2) for d in dict.fromkeys(pub["model"])],
              [Cell("", header=True)] + [Cell(h, header=True) for _ in dict.fromkeys(pub["model"])
                                         for h in ("paper", "this run")]]
    body: list = []
    records: dict[tuple[str, str], dict] = {}
    for metric in dict.fromkeys(pub["metric"]):
        line = [Cell(metric)]
        for ds in dict.fromkeys(pub["model"]):
            row = pub[(pub["model"] == ds) & (pub["metric"] == metric)].iloc[0]
            got = stats.get(mapping.TABLE12_SOURCES[ds], {})
            v = got.get("images" if metric == "image" else "texts")
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                ratio = v / row["value_num"]
                st = MATCH if abs(ratio - 1) <= rel_tol else DIFFERS
                r = Repro(st, float(v), text=f"{int(v):,} ({ratio:.1%})", source=got["src"])
            else:
                why = "; ".join(reasons or [f"no '{mapping.TABLE12_SOURCES[ds]}' entry in the "
                                            "'components' of " + ", ".join(
                                                s.path for s in mapping.table12_files(ctx.config))])
                r = Repro(NOT_RUN, reason=why)
            line += [Cell(row["value"] + (" *" if row["note"] else ""), "noted" if row["note"] else "",
                          row["note"]), repro_cell(r, notes)]
            records[(ds, metric)] = repro_record(r)
        body.append(line)
    long = _with_records(pub, records)
    tv = TableView(12, "Table 12", CAPTIONS[12], header, body, ["published"] * len(body), long, notes.items)
    tv.notes.append("'this run' = counts obtained, from the 'components' of "
                    + ", ".join(s.path for s in mapping.table12_files(ctx.config))
                    + f", with the share of the paper's count; matches within {rel_tol:.0%}.")
    return tv


def all_stats(ctx: RunContext) -> list[dict]:
    """Every data/<run>/*/stats.json, for the 'data obtained' table under Table 12."""
    rows = []
    if not ctx.data.is_dir():
        return rows
    for path in sorted(ctx.data.glob("*/stats.json")):
        data, reason = ctx.load(path)
        if not isinstance(data, dict):
            rows.append({"dataset": path.parent.name, "error": reason or "not an object"})
            continue
        rows.append({"dataset": path.parent.name, "source": data.get("source"),
                     **{k: data.get(k) for k in ("images_expected", "images_obtained", "images_failed",
                                                 "texts_expected", "texts_obtained", "texts_failed")},
                     "splits": ", ".join(f"{k}: {v}" for k, v in (data.get("splits") or {}).items())
                     if isinstance(data.get("splits"), dict) else ""})
    return rows
