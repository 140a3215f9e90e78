"""The package's one writer of files and folders that are never seen half-written.

Everything is written under a hidden temporary name beside its destination, flushed to disk, then renamed into
place: a reader (or a run that was killed, or a disk that filled up) sees the old content or the whole new one,
never a part. Checkpoints, summaries and fine-tuning states are all written through here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

TEMPORARY_MARK = ".tmp-"  # in every temporary name, so that leftovers of a killed writer can be found

Writer = Callable[[str], None]  # writes a whole file at the path it is given


def write_file_atomically(path: str | os.PathLike, content: str | Writer) -> None:
    """Write `content` (text, or a function that writes the file at the path it gets) to `path` atomically;
    on failure the temporary file is removed and `path` is left as it was."""
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    staged = stage_file(folder, name, content)
    try:
        os.replace(staged, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staged)
        raise
    sync_folder(folder)


def stage_file(folder: str | os.PathLike, name: str, content: str | Writer) -> str:
    """Write `content` to a hidden temporary file in `folder`, flushed to disk; returns its path, for the caller
    to rename into place (several files published together do that in an order of their own)."""
    path = os.path.join(os.fspath(folder), f".{name}{TEMPORARY_MARK}{uuid.uuid4().hex[:8]}")
    write = _text_writer(content) if isinstance(content, str) else content
    try:
        write(path)
        with open(path, "rb") as file:
            os.fsync(file.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        raise
    return path


def write_folder_atomically(target: str | os.PathLike, fill: Callable[[Path], None]) -> Path:
    """Call `fill(temporary_folder)`, flush it to disk, then rename it to `target` (replacing a folder there).
    On any error the temporary folder is removed and `target` is left as it was."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}{TEMPORARY_MARK}{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        temporary.mkdir()
        fill(temporary)
        for path in temporary.rglob("*"):
            if path.is_file():
                _sync(path)
        sync_folder(temporary)
        _replace_folder(temporary, target)
        sync_folder(target.parent)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return target


def remove_leftovers(folder: str | os.PathLike) -> None:
    """Delete the temporary files and folders that a killed writer left in `folder`."""
    for path in Path(folder).glob(f".*{TEMPORARY_MARK}*"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def sync_folder(folder: str | os.PathLike) -> None:
    """Flush a folder's entries (renames into it) to disk."""
    _sync(folder)


def _replace_folder(source: Path, target: Path) -> None:
    if not target.exists():
        os.replace(source, target)
        return
    retired = target.with_name(f".{target.name}.old{TEMPORARY_MARK}{os.getpid()}")
    os.replace(target, retired)
    os.replace(source, target)
    shutil.rmtree(retired)


def _text_writer(text: str) -> Writer:
    def write(path: str) -> None:
        with open(path, "x", encoding="utf-8", newline="\n") as file:
            file.write(text)
    return write


def _sync(path: str | os.PathLike) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
