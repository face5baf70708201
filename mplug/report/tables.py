"""Build the view of each paper table: published rows, the run's reproduced row(s), deltas, status.

Every published row is kept, whatever the results folder holds (missing/malformed results become
"not run" cells with a footnoted reason).
"""
from __future__ import annotations

import pandas as pd

from mplug.report import mapping
from mplug.report.collect import INFO, MATCH, NOT_RUN, DIFFERS, Repro, RunContext, metric_cell
from mplug.report.published import CAPTIONS
from mplug.report.views import (Cell, Footnotes, TableView, delta_cell, fmt, repro_cell,
                                repro_record)

REPRO_LABEL = "↳ reproduced (this run)"
DELTA_LABEL = "↳ Δ reproduced − published"


def _ordered(df: pd.DataFrame, cols: list[str]) -> list[tuple]:
    return list(dict.fromkeys(map(tuple, df[cols].itertuples(index=False, name=None))))


def _columns(pub: pd.DataFrame) -> list[tuple]:
    """(setting, metric) in the paper's order: that of the fullest row (printed left to right),
    then any column that row lacks, in file order. Settings stay contiguous for the header."""
    by_row = pub.groupby(["group", "model", "pretrain_data"], sort=False)
    fullest = max(by_row, key=lambda kv: len(kv[1]))[1]
    cols = _ordered(fullest, ["setting", "metric"])
    cols += [c for c in _ordered(pub, ["setting", "metric"]) if c not in cols]
    order = list(dict.fromkeys(s for s, _ in cols))
    return sorted(cols, key=lambda c: order.index(c[0]))


def build_generic(n: int, pub: pd.DataFrame, ctx: RunContext) -> TableView:
    """Tables 1-5, 7-10: rows = models, columns = (setting, metric), as printed."""
    cols = _columns(pub)
    rows = _ordered(pub, ["group", "model", "pretrain_data"])
    show_data = bool((pub["pretrain_data"] != "").any())
    lookup = {(r.group, r.model, r.pretrain_data, r.setting, r.metric): r
              for r in pub.itertuples(index=False)}
    cells = {(c.model, c.pretrain_data, c.setting, c.metric): c for c in mapping.cells_for_table(n)}
    notes = Footnotes()
    repro: dict[tuple, Repro] = {}

    header = [[Cell("Model", header=True)] + ([Cell("Data", header=True)] if show_data else [])]
    for setting in dict.fromkeys(s for s, _ in cols):
        header[0].append(Cell(setting, colspan=sum(1 for s, _ in cols if s == setting), header=True))
    header.append([Cell("", header=True)] * (2 if show_data else 1)
                  + [Cell(m, header=True) for _, m in cols])

    body, kinds, group = [], [], None
    for g, model, data in rows:
        if g and g != group:
            body.append([Cell(g, "group", colspan=len(cols) + 1 + show_data)])
            kinds.append("group")
        group = g
        line = [Cell(model)] + ([Cell(data or "–")] if show_data else [])
        for s, m in cols:
            r = lookup.get((g, model, data, s, m))
            line.append(Cell("–") if r is None else
                        Cell(r.value + (" *" if r.note else ""), "noted" if r.note else "", r.note))
        body.append(line)
        kinds.append("published")
        mine = [(s, m) for s, m in cols if (model, data, s, m) in cells]
        if not mine:
            continue
        rep_line = [Cell(REPRO_LABEL, "label")] + ([Cell("")] if show_data else [])
        d_line = [Cell(DELTA_LABEL, "label")] + ([Cell("")] if show_data else [])
        for s, m in cols:
            c = cells.get((model, data, s, m))
            pr = lookup.get((g, model, data, s, m))
            if c is None:
                rep_line.append(Cell(""))
                d_line.append(Cell(""))
                continue
            r = metric_cell(ctx, c, pr.value_num if pr is not None else None)
            repro[(g, model, data, s, m)] = r
            rep_line.append(repro_cell(r, notes))
            d_line.append(delta_cell(r))
        body += [rep_line, d_line]
        kinds += ["reproduced", "delta"]

    long = pub.drop(columns=["line"]).copy()
    extra = [repro_record(repro.get((r.group, r.model, r.pretrain_data, r.setting, r.metric)))
             for r in pub.itertuples(index=False)]
    long = pd.concat([long.reset_index(drop=True), pd.DataFrame(extra)], axis=1)
    return TableView(n, f"Table {n}", CAPTIONS[n], header, body, kinds, long, notes.items)


# ------------------------------------------------------------------------------ Table 6
def _norm(s: str) -> str:
    return "".join(ch for ch in str(s).lower() if ch.isalnum() or ch == "+")


def hardware_text(hw) -> str:
    from mplug.utils.provenance import describe_hardware

    if isinstance(hw, dict):
        return describe_hardware(hw)
    return str(hw) if hw else "hardware not recorded"


def build_table6(pub: pd.DataFrame, ctx: RunContext, rel_tol: float = 0.15) -> TableView:
    """Throughput: absolute samples/s are hardware-bound, so the status compares speed-ups."""
    src = mapping.locate_bench(ctx.config, mapping.TABLE6_BENCH)
    data, reason, path = ctx.load_source(src)
    where = ctx.rel(path) if path is not None else None
    rows_in: list[dict] = []
    if data is not None:
        if isinstance(data, dict) and isinstance(data.get("rows"), list):
            rows_in = [r for r in data["rows"] if isinstance(r, dict)]
        else:
            reason = f"malformed result: {where} has no 'rows' list"
            data = None
    hw = hardware_text(data.get("hardware")) if isinstance(data, dict) else None
    by_norm = {_norm(r.get("setting", "")).lstrip("+"): r for r in rows_in}

    def measured(model: str) -> dict | None:
        for alias in mapping.TABLE6_SETTINGS.get(model, ()):
            hit = by_norm.get(_norm(alias).lstrip("+"))
            if hit is not None:
                return hit
        return None

    notes = Footnotes()
    base_pub = float(pub.iloc[0]["value_num"])
    base_meas = measured(pub.iloc[0]["model"])
    base_val = base_meas.get("samples_per_s") if base_meas else None
    header = [[Cell(h, header=True) for h in ("Model", "Paper samples/s", "Paper speed-up",
                                              "Measured samples/s", "Measured speed-up",
                                              "Peak memory (GB)", "Status")]]
    body, extra = [], []
    for r in pub.itertuples(index=False):
        m = measured(r.model)
        sp_pub = r.value_num / base_pub
        line = [Cell(r.model), Cell(r.value + (" *" if r.note else ""), "noted" if r.note else "", r.note),
                Cell(f"{sp_pub:.2f}x")]
        v = m.get("samples_per_s") if m else None
        if not isinstance(v, (int, float)):
            why = reason if data is None else (f"no row with setting in {list(mapping.TABLE6_SETTINGS[r.model])}"
                                               f" (or no samples_per_s) in {where}")
            rp = Repro(NOT_RUN, reason=why, source=where)
            line += [repro_cell(rp, notes), Cell("–"), Cell("–"), Cell("not run", "status-not_run")]
        else:
            sp = v / base_val if isinstance(base_val, (int, float)) and base_val else None
            ok = sp is not None and abs(sp - sp_pub) <= rel_tol * sp_pub
            status = INFO if sp is None else (MATCH if ok else DIFFERS)
            rp = Repro(status, float(v), delta=None if sp is None else sp - sp_pub, source=where)
            line += [Cell(fmt(v, 1), f"status-{status}", f"source: {where}\nhardware: {hw}"),
                     Cell(f"{sp:.2f}x" if sp is not None else "–", f"status-{status}"),
                     Cell(fmt(m.get("peak_mem_gb"), 1) if isinstance(m.get("peak_mem_gb"), (int, float)) else "–"),
                     Cell({MATCH: f"speed-up within {rel_tol:.0%}", DIFFERS: "speed-up differs",
                           INFO: "measured"}[status], f"status-{status}")]
        body.append(line)
        extra.append(repro_record(rp))
    long = pd.concat([pub.drop(columns=["line"]).reset_index(drop=True), pd.DataFrame(extra)], axis=1)
    tv = TableView(6, "Table 6", CAPTIONS[6], header, body, ["published"] * len(body), long, notes.items)
    tv.notes.append(f"Measured on: {hw or 'not measured'}. The paper's hardware for this table is not "
                    "stated (section 5.1: 16 NVIDIA A100). Status compares speed-ups over the baseline "
                    f"(relative tolerance {rel_tol:.0%}), not absolute throughput.")
    extra_rows = [r for r in rows_in if not any(r is measured(p) for p in pub["model"])]
    if extra_rows:
        tv.notes.append("Other measured settings: " + "; ".join(
            f"{r.get('setting')}: {r.get('samples_per_s')} samples/s" for r in extra_rows))
    return tv
