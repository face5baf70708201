"""What the dataset converters (preprocess_image.py, preprocess_video.py, preprocess_pretrain.py)
share, below both them and the registry in mplug/data/preprocess.py: locating raw files under
`resources/<source>/` (a missing one is a DataError naming the download command), reading raw JSON
with errors that name the file and record, checking images/videos (missing, zero-byte or
undecodable files are counted and their records dropped, never fatal), and writing records + stats
atomically.
"""
from __future__ import annotations

import collections
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from mplug.data import formats
from mplug.errors import DataError
from mplug.utils.io import iter_utf8_lines, read_utf8
from mplug.utils.logging import get_logger

log = get_logger("mplug.data.preprocess")


@dataclass
class MediaChecker:
    """Checks media files once each and counts failures by reason.

    mode `verify` opens images with PIL, runs `verify()` and decodes them the way the loaders do
    (mplug/data/images.py: truncated files, decompression bombs);
    `exists` only checks presence and non-zero size; `none` trusts the annotation. Videos are
    never decoded here (too slow for a preprocessing pass); the loaders count undecodable ones.
    """

    mode: str = "verify"
    seen: dict[str, bool] = field(default_factory=dict)
    failures: collections.Counter = field(default_factory=collections.Counter)
    reasons: dict[str, str] = field(default_factory=dict)  # absolute failed path -> missing/empty/corrupt

    def ok(self, path: Path, video: bool = False) -> bool:
        key = str(path)
        if key not in self.seen:
            reason = self._check(path, video)
            self.seen[key] = reason is None
            if reason:
                self.failures[reason] += 1
                self.reasons[os.path.abspath(path)] = reason
        return self.seen[key]

    def _check(self, path: Path, video: bool) -> str | None:
        """None if usable, else why not: missing, empty or corrupt."""
        if self.mode == "none":
            return None
        try:
            size = path.stat().st_size if not path.is_dir() else (1 if any(path.iterdir()) else 0)
        except FileNotFoundError:
            return "missing"
        if size == 0:
            return "empty"
        if self.mode == "verify" and not video and path.is_file():
            from PIL import Image

            from mplug.data.images import open_rgb

            try:
                with Image.open(path) as im:
                    im.verify()  # structure and checksums (a PNG's CRCs)
                open_rgb(path)  # and the pixels: verify() passes a JPEG cut mid-scan
            except Exception:  # PIL raises many types for corrupt data: all mean "unusable"
                return "corrupt"
        return None

    @property
    def expected(self) -> int:
        return len(self.seen)

    @property
    def obtained(self) -> int:
        return sum(self.seen.values())


@dataclass
class PreprocessRun:
    """Where raw data is (`src` = resources/) and where the normalised data goes (`out` = data/RUN/)."""

    src: Path
    out: Path
    check: str = "verify"
    progress: bool = True

    def need(self, source: str, *candidates: str) -> Path:
        """The first existing `resources/<source>/<candidate>` (also searched below), else a DataError."""
        root = self.src / source
        for rel in candidates:
            if (root / rel).exists():
                return root / rel
        for rel in candidates:  # archives sometimes add a top folder: the whole relative path must match
            # (by file name alone, msvd_qa's data/msvd_qa/txt/test.jsonl would find msrvtt_qa's)
            found = sorted(p for p in root.rglob(Path(rel).name) if p.as_posix().endswith("/" + rel)) \
                if root.is_dir() else []
            if found:
                return found[0]
        raise DataError(f"{root / candidates[0]}: not found; run `mplug data download {source} --dest {self.src}` "
                        f"(or place the file there)")

    def maybe(self, source: str, *candidates: str) -> Path | None:
        try:
            return self.need(source, *candidates)
        except DataError:
            return None

    def bar(self, items: Iterable, desc: str, total: int | None = None):
        from tqdm import tqdm

        return tqdm(items, desc=desc, total=total, disable=not self.progress, leave=False, mininterval=0.5)


def load_json(path: Path) -> Any:
    """Parse a raw JSON file; a syntax error names file, line and column."""
    try:
        return json.loads(read_utf8(path, DataError))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}:{err.colno}: malformed JSON ({err.msg}); download it again") from None


def load_jsonl(path: Path) -> list[tuple[int, dict]]:
    """(line number, object) for each non-blank line; a bad line names file and line."""
    out = []
    for lineno, line in iter_utf8_lines(path, DataError):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{lineno}: malformed JSON line ({err.msg})") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        out.append((lineno, obj))
    return out


def get(rec: Any, key: str, where: str, kind: type | tuple = object) -> Any:
    """rec[key] with a DataError naming `where` (file and record/line) when missing or mistyped."""
    if not isinstance(rec, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    if key not in rec:
        raise DataError(f"{where}: key '{key}' missing")
    value = rec[key]
    if kind is not object and not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise DataError(f"{where}: key '{key}' should be {names}, got {type(value).__name__}")
    return value


def rel(path: Path, folder: Path) -> str:
    """`path` relative to the dataset folder (records are relative, see README)."""
    return os.path.relpath(os.path.abspath(path), os.path.abspath(folder))


@dataclass
class Split:
    """Records of one split plus the text count before media filtering."""

    records: list[dict] = field(default_factory=list)
    texts_expected: int = 0
    texts_obtained: int = 0
    dropped: list[dict] = field(default_factory=list)  # the first few records dropped for their media


def finish(ctx: PreprocessRun, dataset: str, source: str, splits: dict[str, Split], checker: MediaChecker,
           **extra: Any) -> dict:
    """Write every split and stats.json (Table 12's reproduced counts) for `dataset`."""
    spec = formats.DATASETS[dataset]
    folder = ctx.out / dataset
    for name, split in splits.items():
        check_not_empty(ctx, dataset, name, split, checker)
    counts = {}
    for name, split in splits.items():
        counts[name] = formats.write_records(formats.split_path(folder, name), spec.schema, split.records)
    images_failed = checker.expected - checker.obtained
    stats = formats.make_stats(
        dataset, source, images_expected=checker.expected, images_obtained=checker.obtained,
        texts_expected=sum(s.texts_expected for s in splits.values()),
        texts_obtained=sum(s.texts_obtained for s in splits.values()), splits=counts,
        split_texts={name: sum(map(formats.record_texts, s.records)) for name, s in splits.items()},
        image_failure_rate=round(images_failed / checker.expected, 6) if checker.expected else 0.0,
        failures_by_reason=dict(sorted(checker.failures.items())), check=checker.mode, **extra)
    formats.write_stats(folder, stats)
    log.info("%s: %s records; images %d/%d obtained (%.2f%% failed)", dataset, counts, checker.obtained,
             checker.expected, 100 * stats["image_failure_rate"])
    return stats


def keep(split: Split, rec: dict, media_ok: bool) -> None:
    """Add `rec` to `split` if its media are usable; count its texts either way."""
    n = formats.record_texts(rec)
    split.texts_expected += n
    if media_ok:
        split.records.append(rec)
        split.texts_obtained += n
    elif len(split.dropped) < 3:
        split.dropped.append(rec)


MEDIA_KEYS = ("image", "image_left", "image_right", "video")


def check_not_empty(ctx: PreprocessRun, dataset: str, name: str, split: Split, checker: MediaChecker) -> None:
    """A split whose raw annotations list records but whose media are all unusable would be
    written empty and fail much later (an evaluation with no records, after days of training):
    stop here, naming the files and the download that provides them."""
    if split.records or not split.texts_expected:
        return
    folder, src, paths = ctx.out / dataset, os.path.abspath(ctx.src), []
    for rec in split.dropped:
        paths += [os.path.abspath(folder / rec[k]) for k in MEDIA_KEYS if k in rec]
    bad = [p for p in paths if p in checker.reasons] or paths
    sources = sorted({Path(os.path.relpath(p, src)).parts[0] for p in bad
                      if not os.path.relpath(p, src).startswith("..")})
    fetch = " / ".join(f"`mplug data download {s} --dest {ctx.src}`" for s in sources) or "the download"
    raise DataError(f"{dataset}: split '{name}' would be empty: the media of all its records are unusable, "
                    f"e.g. " + ", ".join(f"{p} ({checker.reasons.get(p, 'unusable')})" for p in bad[:3])
                    + f"; run {fetch} (or place the files there), then preprocess again")
