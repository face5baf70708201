"""Read a run's result files and attach a reproduced value + status to every mapped cell.

Nothing here raises on a missing or malformed result: each problem becomes a `Repro` with status
`not_run` and a reason naming the file (and the failed rule's log when one exists), so the report
never drops a table or a row.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mplug.report import mapping
from mplug.utils.io import read_json

MATCH, DIFFERS, NOT_RUN, SERVER, INFO = "match", "differs", "not_run", "server", "info"
PIPELINE = "pipeline"  # a smoke run's number: synthetic data, never judged against the paper
STATUS_TEXT = {MATCH: "matches", DIFFERS: "differs", NOT_RUN: "not run",
               SERVER: "needs server submission", INFO: "measured", PIPELINE: "pipeline check"}


@dataclass
class Repro:
    """The reproduction of one published cell."""

    status: str
    value: float | None = None
    text: str | None = None          # display value when not a plain number (Table 11)
    delta: float | None = None
    reason: str = ""
    source: str | None = None        # result file, relative to the project root
    provenance: dict[str, Any] | None = None
    ci: tuple[float, float] | None = None  # 95% bootstrap interval (metrics.ci95) of `value`
    gap_widths: float | None = None  # differs: distance of the published value from the
                                     # interval, in interval widths
    std: float | None = None         # several fine-tuning seeds: `value` is their mean, this the
                                     # sample std, `ci` the envelope of their intervals
    seeds: tuple = ()                # ((seed, value, ci, source), ...)


@dataclass
class RunContext:
    """Where the run's files are and what the run is (its validated run config)."""

    results: Path
    data: Path
    config: dict[str, Any] = field(default_factory=dict)
    tolerance: float = 1.0
    smoke: bool = False              # synthetic-world run: statuses are "pipeline check"
    _cache: dict[Path, tuple[Any, str]] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        """The project root: `results/<run>`'s grandparent (logs/ lives there too)."""
        return self.results.parent.parent

    def rel(self, path: Path) -> str:
        try:
            return str(path.resolve().relative_to(Path.cwd().resolve()))
        except ValueError:
            return str(path)

    def locate(self, layout_path: str) -> Path:
        """A project-relative run-layout path (mplug.config helpers) -> the file on disk, honouring
        `--results` / `--data` when they point elsewhere than results/<run>, data/<run>."""
        run = str(self.config.get("run", self.results.name))
        for prefix, base in ((f"results/{run}/", self.results), (f"data/{run}/", self.data)):
            if layout_path.startswith(prefix):
                return base / layout_path[len(prefix):]
        return self.root / layout_path

    def load(self, path: Path, log: str | None = None) -> tuple[Any, str]:
        """(parsed JSON, "") or (None, reason). Cached: many cells share a file. `log` is the
        project-relative log of the rule that writes `path` (named when the file is missing)."""
        if path not in self._cache:
            self._cache[path] = self._load(path, log)
        return self._cache[path]

    def _load(self, path: Path, log: str | None) -> tuple[Any, str]:
        if not path.is_file():
            return None, self._missing_reason(path, log)
        try:
            return read_json(path), ""
        except (ValueError, OSError, UnicodeDecodeError) as err:
            return None, f"malformed result: {err}"

    def _missing_reason(self, path: Path, log: str | None) -> str:
        logp = self.locate(log) if log else None
        if logp is not None and logp.is_file():
            return f"rule failed: no {self.rel(path)}; log {self.rel(logp)}: {_last_line(logp)}"
        return f"missing file {self.rel(path)} (not run yet)"

    def load_source(self, src: mapping.Source) -> tuple[Any, str, Path | None]:
        """(data, reason, path) of a located source; reason says why there is no data."""
        if src.path is None:
            return None, src.reason, None
        path = self.locate(src.path)
        data, reason = self.load(path, src.log)
        return data, reason, path


def _last_line(path: Path, limit: int = 200) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "(unreadable)"
    return (lines[-1][:limit] if lines else "(empty log)")


def find_key(tree: Any, names: tuple[str, ...], path: str = "") -> list[tuple[str, Any]]:
    """Every (dotted.path, value) in a nested dict/list whose key is one of `names`."""
    found: list[tuple[str, Any]] = []
    if isinstance(tree, dict):
        for k, v in tree.items():
            p = f"{path}.{k}" if path else str(k)
            if k in names:
                found.append((p, v))
            found.extend(find_key(v, names, p))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            found.extend(find_key(v, names, f"{path}[{i}]"))
    return found


def is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def status_for(value: float, published: float | None, tol: float) -> tuple[str, float | None]:
    if published is None:
        return INFO, None
    delta = value - published
    return (MATCH if abs(delta) <= tol + 1e-9 else DIFFERS), delta


def interval_of(metrics: dict, key: str) -> tuple[float, float] | None:
    """metrics.ci95[key] as (lo, hi), or None when the file has no (valid) interval for it."""
    ci = metrics.get("ci95")
    pair = ci.get(key) if isinstance(ci, dict) else None
    if (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(is_number(x) for x in pair)
            and pair[0] <= pair[1]):
        return float(pair[0]), float(pair[1])
    return None


def judge(value: float, published: float | None, ci: tuple[float, float] | None, tol: float,
          smoke: bool) -> tuple[str, float | None, float | None]:
    """(status, delta, gap in interval widths). With an interval: "matches" when the published
    value lies inside it; else the fixed tolerance. A smoke run is never judged."""
    status, delta = status_for(value, published, tol)
    if published is None:
        return status, delta, None
    if smoke:
        return PIPELINE, delta, None
    if ci is None:
        return status, delta, None
    lo, hi = ci
    if lo - 1e-9 <= published <= hi + 1e-9:
        return MATCH, delta, None
    width = hi - lo
    gap = (lo - published) if published < lo else (published - hi)
    return DIFFERS, delta, (gap / width if width > 0 else float("inf"))


_PHASES = {"testdev": "test-dev", "teststd": "test-std", "teststandard": "test-std"}


def server_phase(name: Any) -> str | None:
    """'test_dev' / 'test-dev' -> 'test-dev'; 'test-standard' -> 'test-std'; else None."""
    return _PHASES.get("".join(ch for ch in str(name).lower() if ch.isalnum()))


def _server_value(data: dict, metrics: dict, cell: mapping.CellMap) -> Any:
    """The EvalAI score of the cell's phase: `metrics[<phase>].overall` (both phases imported
    into the one `test` file), or a flat `metrics.overall` when the file names its phase
    (`phase`, or a `split` that is a phase name)."""
    for k, v in metrics.items():
        if server_phase(k) == cell.server_phase and isinstance(v, dict):
            return next((v[x] for x in cell.keys if x in v), None)
    named = server_phase(metrics.get("phase") or data.get("phase") or data.get("split") or "")
    return metrics.get("overall") if named == cell.server_phase else None


def metric_cell(ctx: RunContext, cell: mapping.CellMap, published: float | None) -> Repro:
    """Reproduction of one metrics-JSON cell (Tables 1-5, 7-10); over several fine-tuning seeds
    (evaluate.<job>.seeds) their mean, see seeds_cell."""
    src = mapping.locate_cell(ctx.config, cell)
    if src.seed_paths:
        return seeds_cell(ctx, cell, src, published)
    return _file_cell(ctx, cell, src, published)


def seeds_cell(ctx: RunContext, cell: mapping.CellMap, src: mapping.Source,
               published: float | None) -> Repro:
    """The mean over the seeds' runs, their sample std, each run's value and interval; judged
    with the envelope of the runs' 95% intervals (the published value inside some run's)."""
    from dataclasses import replace

    runs = []
    for seed, path in src.seed_paths:
        r = _file_cell(ctx, cell, replace(src, path=path, log=_seed_log(src, seed, path)), None)
        if r.value is None:
            return replace(r, reason=f"fine-tuning seed {seed}: {r.reason}")
        runs.append((seed, r))
    values = [r.value for _, r in runs]
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    cis = [r.ci for _, r in runs]
    ci = (min(c[0] for c in cis), max(c[1] for c in cis)) if all(cis) else None
    status, delta, gap = judge(mean, published, ci, ctx.tolerance, ctx.smoke)
    first = runs[0][1]
    return Repro(status, mean, delta=delta, reason=first.reason, source=first.source,
                 provenance=first.provenance, ci=ci, gap_widths=gap, std=std,
                 seeds=tuple((seed, r.value, r.ci, r.source) for seed, r in runs))


def _seed_log(src: mapping.Source, seed: int, path: str) -> str | None:
    """The log of the seed's evaluation: evaluate/<model>/<job>/<split>/seed<N>.log beside
    the run's own <split>.log (workflow/rules/evaluate.smk, evaluate_seed)."""
    if path == src.path or not src.log:
        return src.log
    return f"{src.log.removesuffix('.log')}/seed{seed}.log"


def _file_cell(ctx: RunContext, cell: mapping.CellMap, src: mapping.Source,
               published: float | None) -> Repro:
    data, reason, path = ctx.load_source(src)
    if path is None:
        return Repro(NOT_RUN, reason=reason)
    where = ctx.rel(path)
    if data is None:
        return Repro(NOT_RUN, reason=reason, source=where)
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
        return Repro(NOT_RUN, reason=f"malformed result: {where} has no 'metrics' object",
                     source=where)
    prov = data.get("provenance") if isinstance(data.get("provenance"), dict) else None
    metrics = data["metrics"]
    if cell.server_phase and src.split == cell.split:
        value = _server_value(data, metrics, cell)
        if value is None:
            sub = metrics.get("submission_file") or f"{Path(where).parent}/*.evalai_submission.json"
            return Repro(SERVER, reason=f"needs server submission (EvalAI, {cell.server_phase} "
                                        f"phase): upload {sub}, then store the score in {where} "
                                        f'as metrics["{cell.server_phase}"]["overall"]',
                         source=where, provenance=prov)
        key = f"{cell.server_phase}.overall"
    else:
        key = next((k for k in cell.keys if k in metrics), None)
        if key is None:
            return Repro(NOT_RUN, reason=f"malformed result: {where} has none of the keys "
                                         f"{list(cell.keys)} in 'metrics'", source=where,
                         provenance=prov)
        value = metrics[key]
    if not is_number(value):
        why = (metrics.get("unavailable") or {}).get(key) if isinstance(
            metrics.get("unavailable"), dict) else None
        if value is None and why:  # a metric the evaluator could not compute, with its reason
            return Repro(NOT_RUN, reason=f"{key} unavailable in {where}: {why}", source=where,
                         provenance=prov)
        return Repro(NOT_RUN, reason=f"malformed result: {where} metrics.{key} = {value!r} is not "
                                     f"a number", source=where, provenance=prov)
    ci = interval_of(metrics, key)
    status, delta, gap = judge(float(value), published, ci, ctx.tolerance, ctx.smoke)
    return Repro(status, float(value), delta=delta, reason=src.note, source=where,
                 provenance=prov, ci=ci, gap_widths=gap)
