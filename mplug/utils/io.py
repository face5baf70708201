"""Atomic writes and hashing.

Every file the harness produces is written to a temporary name in the same folder and renamed
into place, so a killed process never leaves a file that looks complete.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

# errno values that mean "the storage refuses the write", not "the program is wrong"
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM,
                          errno.EFBIG})


def output_error(path: str | os.PathLike, err: OSError):
    """An OutputError naming `path` and why the storage refused it (ENOSPC, EROFS, ...)."""
    from mplug.errors import OutputError

    code = errno.errorcode.get(err.errno or 0, "?")
    return OutputError(f"{path}: cannot write ({err.strerror or err}, {code}); free space on that "
                       "disk or choose a writable output folder, then rerun")


def ensure_writable_dir(folder: str | os.PathLike) -> None:
    """Create `folder` and prove a file can be written there, before any long work starts."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=folder)
        try:
            os.write(fd, b"x")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as err:
        if err.errno in WRITE_ERRNOS or err.errno == errno.ENOTDIR:
            raise output_error(folder, err) from None
        raise


def decode_utf8(data: bytes, path: str | os.PathLike, error: type = ValueError) -> str:
    """`data` as UTF-8 text; a bad byte raises `error` naming the file, line and byte offset."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise error(f"{path}: line {line}, byte offset {err.start}: not UTF-8 text (byte "
                    f"0x{data[err.start]:02x}); save the file as UTF-8") from None


def iter_utf8_lines(path: str | os.PathLike, error: type = ValueError) -> Iterator[tuple[int, str]]:
    """(1-based line number, text) of a UTF-8 file, streamed; a bad byte raises `error` naming
    the file, line and byte offset."""
    offset = 0
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise error(f"{path}:{lineno}: byte offset {offset + err.start}: not UTF-8 text "
                            f"(byte 0x{raw[err.start]:02x}); save the file as UTF-8") from None
            offset += len(raw)


def read_utf8(path: str | os.PathLike, error: type = ValueError) -> str:
    """Read a text file as UTF-8, naming file and byte offset on a bad byte (see decode_utf8)."""
    return decode_utf8(Path(path).read_bytes(), path, error)


def _umask() -> int:
    """The process's umask, read without changing it where Linux shows it (os.umask can only
    be read by setting it, which another thread creating a file at that moment would see)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        if err.errno in WRITE_ERRNOS:
            raise output_error(path, err) from None
        raise
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp's 0600 would hide results from the group; set after the block, since a writer
        # may create the file anew (safetensors' save_file leaves it 0600 too)
        os.chmod(tmp_path, 0o666 & ~_umask())
        with open(tmp_path, "rb+") as fh:  # make the bytes durable before the rename
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except OSError as err:
        if err.errno in WRITE_ERRNOS:  # a full or read-only disk: a named error, not a traceback
            raise output_error(path, err) from None
        raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_json(path: str | os.PathLike) -> Any:
    """Read JSON, naming the file (and line/column) on a parse error."""
    path = Path(path)
    try:
        return json.loads(read_utf8(path))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{err.lineno}:{err.colno}: invalid JSON: {err.msg}") from None


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
