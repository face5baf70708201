"""Resumable, verified, atomic HTTP downloads (stdlib urllib only) and atomic archive extraction.

A download streams into `<dest>.part`, resumes it with an HTTP Range request after a dropped
connection, a timeout or a 5xx, and renames it onto `<dest>` only once the byte count
(Content-Length / Content-Range) and the checksum match. A file at `<dest>` is therefore always
complete; a failed or killed download leaves only `<dest>.part` (resumed on the next run) or
`<dest>.bad` (a complete file whose checksum was wrong, kept for inspection).

Checksums: a pinned sha256/md5 is checked; otherwise the sha256 is recorded in `<dest>.sha256`
(`sha256sum` format) on the first download and checked on every later one.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import http.client
import os
import random
import re
import shutil
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

from mplug.errors import DownloadError
from mplug.utils.io import WRITE_ERRNOS, atomic_write_text
from mplug.utils.logging import get_logger

log = get_logger("mplug.data.download")

USER_AGENT = "mplug-repro/0.1 (+https://github.com/; research dataset download)"
CHUNK = 1 << 20


class NotFoundError(DownloadError):
    """HTTP 404/410: the URL is gone. Not retried."""


class ForbiddenError(DownloadError):
    """HTTP 401/403: the host refuses us (registration, expired link). Not retried."""


class ChecksumMismatchError(DownloadError):
    """The complete file's checksum differs from the pinned or recorded one (file moved to .bad)."""


class IncompleteDownloadError(DownloadError):
    """The connection kept dropping before the announced size was reached (the .part is kept)."""


class DownloadTimeoutError(DownloadError):
    """The server stayed silent longer than the timeout on every try (the .part is kept)."""


class ServerError(DownloadError):
    """HTTP 5xx / 429 or a refused connection on every try."""


class WrongContentError(DownloadError):
    """The server answered with something that is not the file (an HTML page, another size).
    Nothing of that answer is kept and no checksum is recorded from it. Not retried."""


class DiskFullError(DownloadError):
    """Writing the .part failed: the disk is full or read-only (the bytes so far are kept)."""


class _Retry(Exception):
    """One attempt failed in a way worth retrying. `kind` picks the final error class."""

    def __init__(self, kind: str, detail: str, progressed: bool = False):
        super().__init__(detail)
        self.kind, self.detail, self.progressed = kind, detail, progressed


_FINAL = {"timeout": DownloadTimeoutError, "dropped": IncompleteDownloadError, "server": ServerError}


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def record_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".sha256")


def bad_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".bad")


def read_record(dest: Path) -> str | None:
    """The sha256 recorded beside `dest` on its first download, if any."""
    rec = record_path(dest)
    if not rec.exists():
        return None
    text = rec.read_text().split()
    if not text or not re.fullmatch(r"[0-9a-f]{64}", text[0]):
        raise DownloadError(f"{rec}: not a sha256 record (expected '<64 hex>  {dest.name}'); delete it "
                            "to record a new one on the next download")
    return text[0]


def hash_file(path: Path, progress: bool = False) -> tuple[str, str]:
    """(sha256, md5) of a file in one pass."""
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh, _bar(path.stat().st_size, f"verify {path.name}", progress) as bar:
        for block in iter(lambda: fh.read(CHUNK), b""):
            sha.update(block)
            md5.update(block)
            bar.update(len(block))
    return sha.hexdigest(), md5.hexdigest()


def _bar(total: int | None, desc: str, enabled: bool, initial: int = 0):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                disable=not enabled, leave=False, mininterval=0.5)


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """Serialise downloads into one folder across processes (two rules fetching the same file)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # some network file systems have no flock: go on unlocked
            pass
        yield
    finally:
        os.close(fd)  # releases the lock


def _checksum_problem(path: Path, sha256: str | None, md5: str | None, progress: bool) -> tuple[str | None, str]:
    """(problem or None, actual sha256)."""
    actual_sha, actual_md5 = hash_file(path, progress)
    if sha256 and actual_sha != sha256.lower():
        return f"sha256 {actual_sha} != expected {sha256}", actual_sha
    if md5 and actual_md5 != md5.lower():
        return f"md5 {actual_md5} != expected {md5}", actual_sha
    return None, actual_sha


def download(url: str, dest: str | os.PathLike, sha256: str | None = None, *, md5: str | None = None,
             size: int | None = None, retries: int = 5, backoff: float = 1.0, max_backoff: float = 60.0,
             timeout: float = 60.0, progress: bool = True, lock: bool = True,
             verify_existing: bool = True, record: bool = True, max_attempts: int = 100,
             max_time: float = 6 * 3600.0) -> Path:
    """Fetch `url` to `dest` and return `dest`.

    `sha256`/`md5`: pinned checksums; without `sha256` the one recorded in `<dest>.sha256` is used,
    or recorded after this download. `size`: the bytes the source declares: a free-space check,
    and a server announcing or sending another size is refused (WrongContentError). An HTML
    answer (Content-Type text/html) for a file not named .html is refused too: an error or login
    page is never saved nor hashed. `retries`: consecutive failed attempts that made no progress
    before giving up; progress means the .part grew past its largest size so far (a server that
    ignores Range and restarts at byte 0 makes none). `max_attempts` / `max_time` (seconds):
    bounds on all attempts together, progress or not. `backoff`: first wait in seconds, doubled
    per failure up to `max_backoff`. `timeout`: seconds of silence (connect or read) before an
    attempt fails. `verify_existing`: re-hash a `dest` that already exists instead of trusting
    it. `record`: write `<dest>.sha256` after a first download without a pinned sha256.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _folder_lock(dest.parent) if lock else contextlib.nullcontext():
        expected_sha = sha256 or read_record(dest)
        if dest.exists():
            if not verify_existing:
                return dest
            problem, _ = _checksum_problem(dest, expected_sha, md5, progress)
            if problem is None:
                log.info("%s: already complete", dest)
                return dest
            log.warning("%s: existing file fails its checksum (%s); moved to %s and fetching again",
                        dest, problem, bad_path(dest))
            os.replace(dest, bad_path(dest))
        part = part_path(dest)
        _check_space(dest, size, part)
        _fetch_with_retries(url, part, retries=retries, backoff=backoff, max_backoff=max_backoff,
                            timeout=timeout, progress=progress, size=size, max_attempts=max_attempts,
                            max_time=max_time)
        got = part.stat().st_size
        if size is not None and got != size:
            os.replace(part, bad_path(dest))  # checked before any checksum is recorded from it
            raise WrongContentError(f"{url}: got {got:,} bytes but the source declares {size:,}; "
                                    f"moved to {bad_path(dest)} (nothing recorded). Delete it and "
                                    "rerun; if the host changed the file, update its size in "
                                    "mplug/data/sources.py")
        problem, actual = _checksum_problem(part, expected_sha, md5, progress)
        if problem:
            os.replace(part, bad_path(dest))  # never leave the bad bytes under the real name
            raise ChecksumMismatchError(
                f"{url}: checksum mismatch ({problem}); the file was moved to {bad_path(dest)}. The host may "
                f"have changed the file or the transfer was corrupted: delete it and rerun, and if the new "
                f"file is intended, delete {record_path(dest)} (recorded checksum) or update the pinned one "
                f"in mplug/data/sources.py")
        with open(part, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(part, dest)
        if record and not sha256 and expected_sha is None:
            atomic_write_text(record_path(dest), f"{actual}  {dest.name}\n")
            log.info("%s: recorded sha256 %s in %s", dest.name, actual, record_path(dest).name)
        return dest


def _check_space(dest: Path, size: int | None, part: Path) -> None:
    if size is None:
        return
    have = part.stat().st_size if part.exists() else 0
    free = shutil.disk_usage(dest.parent).free
    if size - have > free:
        raise DownloadError(f"{dest}: needs {size - have:,} more bytes but only {free:,} are free on "
                            f"{dest.parent}; free some space or use --dest on a larger disk")


def _size(part: Path) -> int:
    return part.stat().st_size if part.exists() else 0


def _fetch_with_retries(url: str, part: Path, *, retries: int, backoff: float, max_backoff: float,
                        timeout: float, progress: bool, size: int | None = None,
                        max_attempts: int = 100, max_time: float = 6 * 3600.0) -> None:
    tries_left = retries
    high_water = _size(part)  # progress = bytes past the largest .part so far, not bytes received
    deadline = time.monotonic() + max_time
    attempts = 0
    while True:
        attempts += 1
        try:
            _fetch_once(url, part, timeout=timeout, progress=progress, size=size)
            return
        except _Retry as err:
            got = _size(part)
            if got > high_water:  # the link works: the budget of attempts without progress restarts
                tries_left, high_water = retries, got
            why = None
            if tries_left == 0:
                why = f"gave up after {retries} retries without progress"
            elif attempts >= max_attempts:
                why = f"gave up after {attempts} attempts (--max-attempts)"
            elif time.monotonic() >= deadline:
                why = f"gave up after {max_time:g} s (--max-time)"
            if why:
                raise _FINAL[err.kind](
                    f"{url}: {err.detail}; {why}, with {got:,} bytes in {part} "
                    f"(rerun the same command to resume from there)") from None
            tries_left -= 1
            n = retries - tries_left
            wait = min(max_backoff, backoff * 2 ** (n - 1)) * (1 + 0.1 * random.random())
            log.warning("%s: %s; retry %d/%d in %.1f s (%d bytes kept)", url, err.detail, n, retries, wait, got)
            time.sleep(max(0.0, min(wait, deadline - time.monotonic())))


def _open(url: str, offset: int, timeout: float):
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        code = err.code
        content_range = err.headers.get("Content-Range", "") if err.headers else ""
        err.close()
        if code == 416 and offset:
            return _RangeNotSatisfiable(content_range)
        if code in (404, 410):
            raise NotFoundError(f"{url}: HTTP {code} not found; the host may have moved it (see "
                                f"docs/datasets.md for the dataset's own page)") from None
        if code in (401, 403):
            raise ForbiddenError(f"{url}: HTTP {code} refused; the host needs registration or the link "
                                 f"expired") from None
        if code in (408, 429) or code >= 500:
            raise _Retry("server", f"HTTP {code}") from None
        raise DownloadError(f"{url}: HTTP {code} {err.reason}") from None
    except urllib.error.URLError as err:
        if isinstance(err.reason, (TimeoutError, socket.timeout)):
            raise _Retry("timeout", f"no answer within {timeout:g} s") from None
        raise _Retry("server", f"connection failed ({err.reason})") from None
    except (TimeoutError, socket.timeout):
        raise _Retry("timeout", f"no answer within {timeout:g} s") from None
    except (ConnectionError, http.client.HTTPException, OSError) as err:
        raise _Retry("server", f"connection failed ({err})") from None


class _RangeNotSatisfiable:
    def __init__(self, content_range: str):
        m = re.match(r"bytes \*/(\d+)", content_range or "")
        self.total = int(m.group(1)) if m else None


def _check_content(url: str, part: Path, resp, total: int | None, size: int | None) -> None:
    """Refuse an answer that is not the file, before a byte of it is written."""
    ctype = (resp.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if ctype in ("text/html", "application/xhtml+xml") and not part.name[:-5].lower().endswith((".html", ".htm")):
        raise WrongContentError(f"{url}: the server answered with an HTML page (Content-Type {ctype}), "
                                f"not the file: an error, login or moved-file page. Nothing was saved "
                                "and no checksum recorded; check the link in a browser, then rerun")
    if size is not None and total is not None and total != size:
        raise WrongContentError(f"{url}: the server announces {total:,} bytes but the source declares "
                                f"{size:,}; nothing was saved. If the host changed the file, update its "
                                "size in mplug/data/sources.py, then rerun")


def _write(fh, block: bytes, part: Path, done: int) -> None:
    try:
        fh.write(block)
    except OSError as err:
        if err.errno in WRITE_ERRNOS:  # not a dropped connection: retrying cannot help
            raise DiskFullError(f"{part}: cannot write ({err.strerror}, {errno.errorcode.get(err.errno)}) "
                                f"after {done:,} bytes; free space on {part.parent} (or use --dest on "
                                "another disk) and rerun to resume") from None
        raise


def _fetch_once(url: str, part: Path, *, timeout: float, progress: bool, size: int | None = None) -> None:
    offset = part.stat().st_size if part.exists() else 0
    resp = _open(url, offset, timeout)
    if isinstance(resp, _RangeNotSatisfiable):
        if resp.total == offset:
            return  # the .part already holds every byte
        part.unlink()
        raise _Retry("dropped", f"server refused to resume at byte {offset}; restarting")
    with resp:
        length = resp.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if offset and resp.status == 206:
            m = re.match(r"bytes (\d+)-\d+/(\d+|\*)", resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != offset:
                part.unlink()  # else every rerun sends the same Range and gets the same wrong answer
                raise _Retry("dropped", f"server answered a Range request for byte {offset} with "
                                        f"{resp.headers.get('Content-Range')!r}; restarting from byte 0")
            total = int(m.group(2)) if m.group(2) != "*" else (offset + length if length is not None else None)
            mode = "ab"
        else:
            if offset:
                log.info("%s: server ignored the Range request; starting again from byte 0", url)
            offset, mode = 0, "wb"
            total = length
        _check_content(url, part, resp, total, size)
        got = 0
        with open(part, mode) as fh, _bar(total, part.name[:-5], progress, initial=offset) as bar:
            try:
                while True:
                    block = resp.read1(CHUNK)  # read1: keep what arrived before a stall
                    if not block:
                        break
                    _write(fh, block, part, offset + got)
                    got += len(block)
                    bar.update(len(block))
            except (TimeoutError, socket.timeout):
                raise _Retry("timeout", f"no data for {timeout:g} s at byte {offset + got:,}", got > 0) from None
            except (http.client.IncompleteRead, ConnectionError, OSError) as err:
                raise _Retry("dropped", f"connection dropped at byte {offset + got:,} ({type(err).__name__})",
                              got > 0) from None
        if total is not None and offset + got < total:
            raise _Retry("dropped", f"connection dropped at byte {offset + got:,} of {total:,}", got > 0)
        if total is not None and offset + got > total:
            part.unlink()
            raise _Retry("dropped", f"got {offset + got:,} bytes but the server announced {total:,}; restarting")


# ---------------------------------------------------------------- whole datasets (`mplug data download`)

class RegistrationRequiredError(DownloadError):
    """Files that need a form, a licence click or a crawl are not where the user must put them."""


def missing_manual(source, root: Path) -> list[str]:
    """Manual paths of `source` that are absent (or empty folders) under `root`."""
    missing = []
    for rel in source.manual:
        path = root / rel
        if not path.exists() or (path.is_dir() and not any(path.iterdir())):
            missing.append(rel)
    return missing


def download_source(name: str, dest: str | os.PathLike, *, include_optional: bool = False,
                    retries: int = 5, backoff: float = 1.0, timeout: float = 60.0, progress: bool = True,
                    ignore_pinned: bool = False, images: bool = True, processes: int = 16,
                    threads: int = 64, max_attempts: int = 100, max_time: float = 6 * 3600.0) -> dict:
    """Fetch every file of source `name` into `dest/<name>/`, extract archives, check manual files,
    run img2dataset for web-scale sets; write `dest/<name>/download.json` last and return it."""
    from mplug.data.archives import extract
    from mplug.data.sources import get_source
    from mplug.utils.io import atomic_write_json

    source = get_source(name)
    root = Path(dest) / name
    root.mkdir(parents=True, exist_ok=True)
    files = []
    for spec in source.files:
        if spec.optional and not include_optional:
            continue
        path = download(spec.url, root / spec.name, None if ignore_pinned else spec.sha256,
                        md5=None if ignore_pinned else spec.md5, size=None if ignore_pinned else spec.size,
                        retries=retries, backoff=backoff, timeout=timeout, progress=progress,
                        max_attempts=max_attempts, max_time=max_time)
        entry = {"name": spec.name, "url": spec.url, "bytes": path.stat().st_size,
                 "sha256": spec.sha256 if spec.sha256 and not ignore_pinned else read_record(path),
                 "pinned": spec.pinned and not ignore_pinned}
        if spec.extract:
            entry["extracted"] = extract(path, root, progress=progress)
        files.append(entry)
    missing = missing_manual(source, root)
    if missing:
        raise RegistrationRequiredError(
            f"{name}: these files cannot be downloaded automatically and are missing: "
            + ", ".join(str(root / m) for m in missing) + f". {source.instructions} Put them under {root}/ "
            f"as listed, then rerun `mplug data download {name} --dest {dest}`.")
    manifest = {"dataset": name, "kind": source.kind, "licence": source.licence, "files": files,
                "manual": list(source.manual)}
    if source.webscale is not None:
        manifest["shards"] = _run_img2dataset(source, root, images=images, processes=processes, threads=threads)
    if source.listed_images is not None and images:
        manifest["listed_images"] = fetch_listed_images(source, root, retries=retries, backoff=backoff,
                                                        timeout=timeout, progress=progress, workers=threads)
    atomic_write_json(root / "download.json", manifest)
    return manifest


def fetch_listed_images(source, root: Path, *, retries: int = 2, backoff: float = 1.0, timeout: float = 30.0,
                        progress: bool = True, workers: int = 16) -> dict:
    """Fetch every image URL listed in an annotation file (NoCaps). Each image is an atomic,
    retried download; failures are counted (and listed in the returned dict), not fatal: link rot
    is expected and preprocess counts the missing images."""
    import json
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    spec = source.listed_images
    ann = root / spec.annotation
    try:
        entries = json.loads(ann.read_text(encoding="utf-8"))["images"]
        jobs = [(e[spec.url_key], root / spec.folder / Path(e[spec.name_key]).name) for e in entries]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DownloadError(f"{ann}: cannot list images ({type(err).__name__}: {err}); delete it and rerun") from None
    (root / spec.folder).mkdir(parents=True, exist_ok=True)

    def one(job):
        url, dest = job
        try:
            download(url, dest, retries=retries, backoff=backoff, timeout=timeout, progress=False, lock=False,
                     verify_existing=False, record=False)
            return None
        except DownloadError as err:
            return f"{dest.name}: {err}"

    with ThreadPoolExecutor(max(1, workers)) as pool:
        errors = [e for e in tqdm(pool.map(one, jobs), total=len(jobs), desc=f"{source.name} images",
                                  disable=not progress, mininterval=0.5) if e]
    for e in errors[:10]:
        log.warning("%s", e)
    return {"listed": len(jobs), "obtained": len(jobs) - len(errors), "failed": len(errors),
            "failures": errors[:1000]}


def _run_img2dataset(source, root: Path, *, images: bool, processes: int, threads: int) -> str:
    import shlex
    import subprocess

    from mplug.data.webshards import headered_list, img2dataset_command

    shards = root / "shards"
    cmd = img2dataset_command(source, headered_list(source, root), shards, processes=processes, threads=threads)
    if not images:
        log.info("%s: skipping the image download (--no-images); command: %s", source.name, shlex.join(cmd))
        return str(shards)
    if shutil.which(cmd[0]) is None:
        raise DownloadError(f"{source.name}: img2dataset is not installed (it is in envs/data.yaml: "
                            f"`conda env create -f envs/data.yaml` or `pip install img2dataset`); then "
                            f"rerun, or run it yourself: {shlex.join(cmd)}")
    log.info("%s: %s", source.name, shlex.join(cmd))
    done = subprocess.run(cmd, check=False)
    if done.returncode != 0:
        raise DownloadError(f"{source.name}: img2dataset exited with code {done.returncode}; rerun to "
                            f"continue (incremental mode keeps finished shards): {shlex.join(cmd)}")
    return str(shards)


def register_download(subparsers) -> None:
    """Add `mplug data download` to the `data` verb's sub-parsers."""
    p = subparsers.add_parser("download", help="download a dataset or official file set into resources/",
                              description="Download every file of DATASET (resumable, retried, checksummed, "
                                          "atomic). `--list` shows the datasets and their kind.")
    p.add_argument("dataset", nargs="?", help="dataset name (see --list)")
    p.add_argument("--dest", default="resources", help="root folder; files go to DEST/DATASET/ (default resources)")
    p.add_argument("--list", action="store_true", help="list the datasets, their kind and licence, then exit")
    p.add_argument("--all", dest="include_optional", action="store_true",
                   help="also fetch optional files (validation TSVs, ALBEF pretraining JSONs, ...)")
    p.add_argument("--retries", type=int, default=5, help="retries without progress before giving up")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds of silence before a retry")
    p.add_argument("--max-attempts", type=int, default=100,
                   help="attempts per file in all, with progress or not (default 100)")
    p.add_argument("--max-time", type=float, default=6 * 3600.0,
                   help="seconds per file in all before giving up (default 21600); rerun resumes")
    p.add_argument("--backoff", type=float, default=2.0, help="first retry wait in seconds (doubles)")
    p.add_argument("--ignore-pinned", action="store_true",
                   help="do not enforce pinned third-party checksums and sizes (record them instead)")
    p.add_argument("--no-images", dest="images", action="store_false",
                   help="web-scale sets: fetch the URL list only, print the img2dataset command")
    p.add_argument("--processes", type=int, default=16, help="img2dataset processes")
    p.add_argument("--threads", type=int, default=64, help="img2dataset threads per process")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    p.set_defaults(func=_cmd_download)


def _cmd_download(args) -> int:
    from mplug.data.sources import SOURCES

    if args.list or not args.dataset:
        for name in sorted(SOURCES):
            s = SOURCES[name]
            print(f"{name:<16} {s.kind:<13} {s.description}")
        return 0 if args.list else 2
    manifest = download_source(args.dataset, args.dest, include_optional=args.include_optional,
                               retries=args.retries, backoff=args.backoff, timeout=args.timeout,
                               progress=args.progress, ignore_pinned=args.ignore_pinned, images=args.images,
                               processes=args.processes, threads=args.threads,
                               max_attempts=args.max_attempts, max_time=args.max_time)
    print(f"{args.dataset}: {len(manifest['files'])} file(s) in {Path(args.dest) / args.dataset}")
    return 0
