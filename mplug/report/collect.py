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
STATUS_TEXT = {MATCH: "matches", DIFFERS: "differs", NOT_RUN: "not run",
               SERVER: "needs server submission", INFO: "measured"}


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


@dataclass
class RunContext:
    """Where the run's files are and what the run is."""

    results: Path
    data: Path
    config: dict[str, Any] = field(default_factory=dict)
    tolerance: float = 1.0
    _cache: dict[Path, tuple[Any, str]] = field(default_factory=dict)

    def rel(self, path: Path) -> str:
        try:
            return str(path.resolve().relative_to(Path.cwd().resolve()))
        except ValueError:
            return str(path)

    def resolve(self, rel: str, variant: str | None = None) -> Path:
        """results/<run>/<rel>, or results/<run>/<model_key>/<rel> when the workflow nests results
        per model (the folder named like the variant first, e.g. `large/`)."""
        direct = self.results / rel
        if direct.exists() or not self.results.is_dir():
            return direct
        depth = len(Path(rel).parts) + 1  # the model-key folder's position from the end
        nested = sorted(self.results.glob(f"*/{rel}"),
                        key=lambda p: (p.parts[-depth] != variant, str(p)))
        return nested[0] if nested else direct

    def load(self, path: Path) -> tuple[Any, str]:
        """(parsed JSON, "") or (None, reason). Cached: many cells share a file."""
        if path not in self._cache:
            self._cache[path] = self._load(path)
        return self._cache[path]

    def _load(self, path: Path) -> tuple[Any, str]:
        if not path.is_file():
            return None, self._missing_reason(path)
        try:
            return read_json(path), ""
        except (ValueError, OSError, UnicodeDecodeError) as err:
            return None, f"malformed result: {err}"

    def _missing_reason(self, path: Path) -> str:
        try:
            rel = path.relative_to(self.results)
        except ValueError:
            return f"missing file {self.rel(path)}"
        log = mapping.log_path_for(rel, self.results)
        if log.is_file():
            return f"rule failed: no {self.rel(path)}; log {self.rel(log)}: {_last_line(log)}"
        return f"missing file {self.rel(path)} (not run yet)"


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


def run_variant(config: dict[str, Any]) -> tuple[str | None, str]:
    """('base'|'large'|None, model name) from the run config's model name(s)."""
    names = [v if isinstance(v, str) else (v.get("name") if isinstance(v, dict) else None)
             for _, v in find_key(config, ("model", "model_name", "arch"))]
    names = [n for n in names if isinstance(n, str)]
    for n in names:
        for variant in ("large", "base"):
            if variant in n.lower():
                return variant, n
    return None, names[0] if names else "unknown"


def is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def status_for(value: float, published: float | None, tol: float) -> tuple[str, float | None]:
    if published is None:
        return INFO, None
    delta = value - published
    return (MATCH if abs(delta) <= tol + 1e-9 else DIFFERS), delta


def metric_cell(ctx: RunContext, cell: mapping.CellMap, published: float | None) -> Repro:
    """Reproduction of one metrics-JSON cell (Tables 1-5, 7-10)."""
    variant, model = run_variant(ctx.config)
    if cell.pretrain == "4M":
        return Repro(NOT_RUN, reason="needs a run pre-trained on the 4M set only; this harness "
                                     "pre-trains on 14M then continues on 4M")
    if cell.variant and variant and cell.variant != variant:
        return Repro(NOT_RUN, reason=f"needs a mplug_{cell.variant} run (this run: {model})")
    if cell.variant and not variant and cell.variant != "large":
        return Repro(NOT_RUN, reason=f"needs a mplug_{cell.variant} run; this run ({model}) "
                                     "fills the mPLUGViT-L row")
    path = ctx.resolve(cell.path, variant=cell.variant or variant)
    data, reason = ctx.load(path)
    src = ctx.rel(path)
    if data is None:
        if cell.server and not path.is_file():
            return Repro(SERVER, reason=f"needs server submission (EvalAI): submit the predictions "
                                        f"and save the score as {src} "
                                        '{"task","split","metrics":{"overall":...}}', source=src)
        return Repro(NOT_RUN, reason=reason, source=src)
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
        return Repro(NOT_RUN, reason=f"malformed result: {src} has no 'metrics' object", source=src)
    prov = data.get("provenance") if isinstance(data.get("provenance"), dict) else None
    key = next((k for k in cell.keys if k in data["metrics"]), None)
    if key is None:
        return Repro(NOT_RUN, reason=f"malformed result: {src} has none of the keys "
                                     f"{list(cell.keys)} in 'metrics'", source=src, provenance=prov)
    value = data["metrics"][key]
    if not is_number(value):
        return Repro(NOT_RUN, reason=f"malformed result: {src} metrics.{key} = {value!r} is not a "
                                     "number", source=src, provenance=prov)
    status, delta = status_for(float(value), published, ctx.tolerance)
    return Repro(status, float(value), delta=delta, source=src, provenance=prov)
