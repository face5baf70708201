"""Tables 11 and 12: what the run actually used (hyper-parameters) and obtained (data)."""
from __future__ import annotations

import math
from typing import Any

import pandas as pd

from mplug.report import mapping
from mplug.report.collect import DIFFERS, INFO, MATCH, NOT_RUN, Repro, RunContext, find_key
from mplug.report.published import CAPTIONS, LR_METRIC, parse_lr
from mplug.report.views import Cell, Footnotes, TableView, repro_cell, repro_record


def _with_records(pub: pd.DataFrame, records: dict[tuple[str, str], dict]) -> pd.DataFrame:
    """Published rows (in file order) + the reproduction columns, joined on (model, metric)."""
    extra = pd.DataFrame([records[(r.model, r.metric)] for r in pub.itertuples(index=False)])
    return pd.concat([pub.drop(columns=["line"]).reset_index(drop=True), extra], axis=1)


def _hparam(summary: dict, name: str) -> Any:
    for scope in (summary, summary.get("hparams"), summary.get("config")):
        if isinstance(scope, dict):
            for key in mapping.HPARAM_KEYS[name]:
                if key in scope and scope[key] is not None:
                    return scope[key]
    return None


def _close(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=1e-6) for x, y in zip(a, b))


def _used(ctx: RunContext, task: str, metric: str) -> Repro:
    """The value the run used for one Table 11 cell, from the task's fine-tuning summaries."""
    folders = mapping.TABLE11_FINETUNE[task]
    values, sources = [], []
    for folder in folders:
        path = ctx.results / "finetune" / folder / "summary.json"
        data, reason = ctx.load(path)
        if data is None:
            return Repro(NOT_RUN, reason=reason, source=ctx.rel(path))
        if not isinstance(data, dict):
            return Repro(NOT_RUN, reason=f"malformed result: {ctx.rel(path)} is not an object")
        sources.append(ctx.rel(path))
        if metric == LR_METRIC:
            lr, lrv = _hparam(data, "lr"), _hparam(data, "lr_visual")
            if lr is None:
                return Repro(NOT_RUN, reason=f"{ctx.rel(path)}: none of {list(mapping.HPARAM_KEYS['lr'])}")
            values.append([lr] if lrv is None or lrv == lr else [lr, lrv])
        else:
            name = "batch_size" if metric == "batch size" else "epochs"
            v = _hparam(data, name)
            if v is None:
                return Repro(NOT_RUN, reason=f"{ctx.rel(path)}: none of {list(mapping.HPARAM_KEYS[name])}")
            values.append([v])
    return Repro(INFO, text=_fmt_used(metric, values), source="; ".join(sources),
                 provenance={"values": values})


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
    tv.notes.append("'this run' = the values each fine-tuning recorded in results/<run>/finetune/<task>/"
                    "summary.json (keys " + ", ".join(f"{k}: {'|'.join(v)}" for k, v in mapping.HPARAM_KEYS.items())
                    + "). Captioning shows the cross-entropy & SCST stages, Retrieval COCO & Flickr.")
    cfg = find_key(ctx.config, ("finetune", "hparams"))
    if cfg:
        tv.notes.append("Run config fine-tuning section: " + "; ".join(f"{p} = {v}" for p, v in cfg)[:2000])
    return tv


# ------------------------------------------------------------------------------ Table 12
def _stats(ctx: RunContext) -> tuple[dict[str, dict], list[str]]:
    """source -> {"images", "texts", "src"} from the pretrain folders' stats.json `by_source`."""
    out: dict[str, dict] = {}
    reasons = []
    for folder in mapping.TABLE12_STATS:
        path = ctx.data / folder / "stats.json"
        data, reason = ctx.load(path)
        if data is None:
            reasons.append(reason)
            continue
        by = data.get("by_source") if isinstance(data, dict) else None
        if not isinstance(by, dict):
            reasons.append(f"{ctx.rel(path)} has no 'by_source' object "
                           "({source: {images_obtained, texts_obtained}})")
            continue
        for src, counts in by.items():
            if isinstance(counts, dict) and src not in out:
                out[src] = {"images": counts.get("images_obtained", counts.get("images")),
                            "texts": counts.get("texts_obtained", counts.get("texts")),
                            "src": ctx.rel(path)}
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
                why = "; ".join([f"no '{mapping.TABLE12_SOURCES[ds]}' entry in any stats.json 'by_source'"]
                                + reasons)
                r = Repro(NOT_RUN, reason=why)
            line += [Cell(row["value"] + (" *" if row["note"] else ""), "noted" if row["note"] else "",
                          row["note"]), repro_cell(r, notes)]
            records[(ds, metric)] = repro_record(r)
        body.append(line)
    long = _with_records(pub, records)
    tv = TableView(12, "Table 12", CAPTIONS[12], header, body, ["published"] * len(body), long, notes.items)
    tv.notes.append(f"'this run' = counts obtained (from data/<run>/{{{','.join(mapping.TABLE12_STATS)}}}/"
                    f"stats.json 'by_source'), with the share of the paper's count; matches within {rel_tol:.0%}.")
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
