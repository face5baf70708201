"""View model of a rendered table: header rows, body rows of cells, footnotes, and the long CSV."""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from mplug.report.collect import STATUS_TEXT, Repro


@dataclass
class Cell:
    text: str
    cls: str = ""          # CSS classes: status-match, status-differs, ...
    title: str = ""        # tooltip: note, reason or provenance
    colspan: int = 1
    header: bool = False


@dataclass
class TableView:
    number: int
    title: str
    caption: str
    header: list[list[Cell]]
    rows: list[list[Cell]]
    row_kinds: list[str]                       # published | reproduced | delta | group
    long: pd.DataFrame                         # written to tables/tableNN.csv
    footnotes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)   # free text under the table (hardware...)
    figures: list[dict] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        """Status -> number of reproduced cells (the summary line of the table)."""
        if "status" not in self.long:
            return {}
        return {k: int(v) for k, v in self.long["status"].dropna().value_counts().items()}


class Footnotes:
    """Numbered, de-duplicated reasons; cells cite them as [n]."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def cite(self, reason: str) -> int:
        if reason not in self.items:
            self.items.append(reason)
        return self.items.index(reason) + 1


def fmt(x: float | None, digits: int = 2) -> str:
    if x is None:
        return "–"
    return f"{x:.{digits}f}"


def provenance_title(r: Repro) -> str:
    if not r.source:
        return ""
    parts = [f"source: {r.source}"]
    p = r.provenance or {}
    for key in ("commit", "config_hash", "checkpoint", "date"):
        if p.get(key):
            parts.append(f"{key}: {p[key]}")
    return "\n".join(parts)


def repro_cell(r: Repro, notes: Footnotes, digits: int = 2) -> Cell:
    cls = f"status-{r.status}"
    if r.status in ("not_run", "server"):
        n = notes.cite(r.reason)
        return Cell(f"{STATUS_TEXT[r.status]} [{n}]", cls, r.reason)
    text = r.text if r.text is not None else fmt(r.value, digits)
    title = provenance_title(r)
    if r.seeds:  # mean +- std over fine-tuning seeds; each run and its interval on hover
        text = f"{text} ±{r.std:.{digits}f} sd, {len(r.seeds)} seeds"
        title = "\n".join([f"mean of {len(r.seeds)} fine-tuning seeds, sample std {r.std:.{digits}f}"]
                          + [_seed_line(seed, v, ci, digits) for seed, v, ci, _ in r.seeds] + [title])
    elif r.ci is not None:  # compact half-width on the cell, the interval itself on hover
        lo, hi = r.ci
        text = f"{text} ±{(hi - lo) / 2:.{digits}f}"
        title = f"95% bootstrap CI [{lo:.{digits}f}, {hi:.{digits}f}]\n{title}".strip()
    if r.reason:  # a value with a caveat (e.g. a stand-in split): footnoted
        text, title = f"{text} [{notes.cite(r.reason)}]", f"{r.reason}\n{title}".strip()
    return Cell(text, cls, title)


def _seed_line(seed: int, value: float, ci, digits: int) -> str:
    interval = f", 95% CI [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else ""
    return f"seed {seed}: {value:.{digits}f}{interval}"


def delta_cell(r: Repro, digits: int = 2) -> Cell:
    if r.delta is None:
        return Cell("", f"status-{r.status}")
    why = STATUS_TEXT[r.status]
    if r.gap_widths is not None:
        why += f", {r.gap_widths:.1f} CI widths out"
    title = ("smoke run on synthetic data: the pipeline ran; the number is not a reproduction"
             if r.status == "pipeline" else
             "published value inside a seed's 95% CI" if r.status == "match" and r.seeds and r.ci else
             "published value inside the run's 95% CI" if r.status == "match" and r.ci else "")
    return Cell(f"{r.delta:+.{digits}f} ({why})", f"status-{r.status}", title)


def repro_record(r: Repro | None) -> dict:
    """Columns appended to the long CSV for one published cell."""
    if r is None:
        return {"reproduced": None, "delta": None, "status": None, "reason": None, "source": None,
                "ci95_lo": None, "ci95_hi": None, "seeds": None, "seed_std": None}
    return {"reproduced": r.text if r.text is not None else r.value, "delta": r.delta,
            "status": r.status, "reason": r.reason or None, "source": r.source,
            "ci95_lo": r.ci[0] if r.ci else None, "ci95_hi": r.ci[1] if r.ci else None,
            "seeds": len(r.seeds) or None, "seed_std": r.std}
