"""Atomic extraction of downloaded tar/zip archives.

An archive is unpacked into a hidden temporary folder beside its target, its top-level entries
are moved into place (merged into folders that other archives of the same dataset already
filled), and only then is the done-marker `.<archive>.extracted` written. The marker is the
completeness signal: without it the archive is extracted again (overwriting what an interrupted
run left); with it, extraction is skipped.
"""
from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path

from mplug.errors import DataError
from mplug.utils.io import atomic_write_json, read_json


def marker_path(archive: Path, into: Path) -> Path:
    return into / f".{archive.name}.extracted"


def is_extracted(archive: str | os.PathLike, into: str | os.PathLike | None = None) -> bool:
    archive = Path(archive)
    return marker_path(archive, Path(into) if into else archive.parent).exists()


def extract(archive: str | os.PathLike, into: str | os.PathLike | None = None, *,
            progress: bool = True) -> list[str]:
    """Unpack `archive` into `into` (default: its folder); return its top-level entry names."""
    archive = Path(archive)
    into = Path(into) if into else archive.parent
    into.mkdir(parents=True, exist_ok=True)
    marker = marker_path(archive, into)
    if marker.exists():
        return list(read_json(marker)["entries"])
    tmp = Path(tempfile.mkdtemp(prefix=f".{archive.name}.", suffix=".extracting", dir=into))
    try:
        if zipfile.is_zipfile(archive):
            _unzip(archive, tmp, progress)
        elif tarfile.is_tarfile(archive):
            _untar(archive, tmp, progress)
        else:
            raise DataError(f"{archive}: neither a zip nor a tar archive; delete it and download it again")
        entries = sorted(os.listdir(tmp))
        for name in entries:
            _merge_move(tmp / name, into / name)
        atomic_write_json(marker, {"archive": archive.name, "entries": entries})
        return entries
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _unzip(archive: Path, out: Path, progress: bool) -> None:
    from tqdm import tqdm

    try:
        with zipfile.ZipFile(archive) as zf:
            for info in tqdm(zf.infolist(), desc=f"extract {archive.name}", disable=not progress, leave=False,
                             mininterval=0.5):
                name = info.filename
                if name.startswith("/") or ".." in Path(name).parts:
                    raise DataError(f"{archive}: member {name!r} would land outside the target folder")
                zf.extract(info, out)
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        if isinstance(err, DataError):
            raise
        raise DataError(f"{archive}: corrupt zip ({err}); delete it and download it again") from None


def _untar(archive: Path, out: Path, progress: bool) -> None:
    from tqdm import tqdm

    try:
        with tarfile.open(archive) as tf:
            for member in tqdm(tf, desc=f"extract {archive.name}", disable=not progress, leave=False,
                               mininterval=0.5):
                # the "data" filter refuses absolute paths, '..', device files and links leaving `out`
                tf.extract(member, out, filter="data")
    except tarfile.FilterError as err:
        raise DataError(f"{archive}: unsafe member refused ({err})") from None
    except (tarfile.TarError, EOFError, OSError) as err:
        raise DataError(f"{archive}: corrupt tar ({err}); delete it and download it again") from None


def _merge_move(src: Path, dst: Path) -> None:
    """Move `src` onto `dst`; folders are merged entry by entry (each move is an atomic rename)."""
    if src.is_dir() and not src.is_symlink() and dst.is_dir() and not dst.is_symlink():
        for child in os.listdir(src):
            _merge_move(src / child, dst / child)
        return
    if dst.is_dir() and not dst.is_symlink():
        shutil.rmtree(dst)
    os.replace(src, dst)
