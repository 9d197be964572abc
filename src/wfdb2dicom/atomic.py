"""Atomic file writes: a file appears complete under its name, or not at all.

A temporary file in the same directory, then ``os.replace`` (atomic on POSIX and Windows).
Temporary files are named ``.{name}.{tag}.{pid}.tmp`` beside their target (``.{name}.{pid}.tmp``
without a tag), so a run killed mid-write leaves only files that :func:`sweep_temps`
recognises and removes. The tag is the writer's identity: a batch run's is
:func:`run_tag` of its output CSV, so a run's sweep removes what earlier attempts of the
*same* run left and never another run's in-flight files in a shared ``--dcm_dir`` (a pid
would not do: on a cluster, pids belong to other hosts).

Atomic is not durable: a rename survives a power cut only once the file's data and its
directory reach the disk. The batch syncs what a checkpoint records (:func:`sync_filesystem`)
before its ledger commit; :func:`atomic_file` with ``durable=True`` syncs one file.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import IO

from .fileio import base_name, sibling

_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)

_pid = os.getpid()
"""This process's id, for temporary names (a system call saved per file); renewed in a
forked child."""


def _renew_pid() -> None:
    global _pid
    _pid = os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_pid)


def run_tag(output: str | os.PathLike[str]) -> str:
    """The identity of a batch run in its temporary names: 8 hex digits of a hash of its
    output CSV's real path (the same command gives the same tag, on any host)."""
    real = os.path.realpath(os.fspath(output))
    return hashlib.sha1(real.encode("utf-8", "surrogateescape")).hexdigest()[:8]


def temp_prefix(path: str | os.PathLike[str], tag: str | None = None) -> str:
    """Every temporary file for ``path`` (written with ``tag``) starts with this, and ends
    with ``.tmp``; ``tag=None``: whatever the tag."""
    name = os.path.basename(path)
    return f".{name}." if tag is None else f".{name}.{tag}."


def _open_temp(path: str, tag: str = "") -> tuple[int, str, tuple[str, ...]]:
    """Create this process's temporary file for ``path``; mode 0666 less the umask.

    Also returns the directories made for it (outermost first), for the caller to remove if
    the write fails: a failed write leaves nothing behind. The directory is made only when
    the first attempt finds it missing: one system call fewer per file when it exists.
    """
    name = base_name(path)
    tmp = sibling(path, f".{name}.{tag}.{_pid}.tmp" if tag else f".{name}.{_pid}.tmp")
    made: tuple[str, ...] = ()
    try:
        return os.open(tmp, _OPEN_FLAGS, 0o666), tmp, made
    except FileNotFoundError:
        directory = os.path.dirname(path)
        if not directory:
            raise
        made = _make_directories(directory)
    except FileExistsError:  # left by a killed process that had our pid
        os.unlink(tmp)
    try:
        return os.open(tmp, _OPEN_FLAGS, 0o666), tmp, made
    except BaseException:
        _remove_directories(made)
        raise


def _make_directories(directory: str) -> tuple[str, ...]:
    """``os.makedirs`` that says which directories it made (outermost first)."""
    try:
        os.mkdir(directory)  # usually only the last level is missing
        return (directory,)
    except FileExistsError:  # made meanwhile by another process
        return ()
    except FileNotFoundError:
        parent = os.path.dirname(directory)
        if not parent or parent == directory:
            raise
    made = _make_directories(parent)
    try:
        os.mkdir(directory)
    except FileExistsError:
        return made
    except BaseException:
        _remove_directories(made)
        raise
    return (*made, directory)


def _remove_directories(made: tuple[str, ...]) -> None:
    """Remove what :func:`_make_directories` made, innermost first, while they are empty
    (another writer may have put a file there meanwhile)."""
    for directory in reversed(made):
        try:
            os.rmdir(directory)
        except OSError:
            return


def write_atomic(
    path: str | os.PathLike[str], data: bytes | Sequence[bytes | memoryview], *, tag: str = ""
) -> None:
    """Write ``data`` (bytes, or pieces to write in order) to ``path`` so that no partial
    file is ever visible there; ``tag`` names the writer in the temporary name."""
    path = os.fspath(path)
    fd, tmp, made = _open_temp(path, tag)
    try:
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        _remove_directories(made)
        raise


def _write_all(fd: int, data: bytes | Sequence[bytes | memoryview]) -> None:
    """Pieces go out in one gathered write where the platform has one (no joined copy).

    Pieces are bytes-like objects whose ``len`` is their size in bytes (flat views)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        pieces: Sequence[bytes | memoryview] = (data,)
    else:
        pieces = data
        if _WRITEV is not None and len(pieces) <= _WRITEV_MAX:
            written = _WRITEV(fd, pieces)
            total = sum(map(len, pieces))
            if written == total:
                return
            pieces = (memoryview(b"".join(pieces))[written:],)  # a short write: rare
    for piece in pieces:
        view = memoryview(piece).cast("B")
        while view:
            view = view[os.write(fd, view):]


_WRITEV = getattr(os, "writev", None)
_WRITEV_MAX = min(os.sysconf("SC_IOV_MAX"), 1024) if _WRITEV is not None else 0


@contextmanager
def atomic_file(path: str | os.PathLike[str], *, binary: bool = False,
                durable: bool = False) -> Iterator[IO]:
    """A file to write into, that replaces ``path`` only once the block completes.

    The replace happens after the block, so a caller may still read the old file inside it
    (Windows refuses to replace a file that is open). ``durable``: the data is synced
    before the replace and the directory after it, so the new file survives a power cut.
    """
    path = os.fspath(path)
    fd, tmp, made = _open_temp(path)
    try:
        if binary:
            with open(fd, "wb", closefd=True) as handle:
                yield handle
                if durable:
                    handle.flush()
                    os.fsync(handle.fileno())
        else:
            with open(fd, "w", newline="", encoding="utf-8", closefd=True) as handle:
                yield handle
                if durable:
                    handle.flush()
                    os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        _remove_directories(made)
        raise
    if durable:
        sync_directory(os.path.dirname(path) or ".")


def sync_directory(directory: str | os.PathLike[str]) -> None:
    """Sync a directory's entries (a rename, a new file) to disk; a no-op where directories
    cannot be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except (PermissionError, IsADirectoryError):
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _syncfs_function():  # -> the C function, or None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.syncfs
    except (AttributeError, OSError, TypeError):
        return None
    function.argtypes = [ctypes.c_int]
    return function


_SYNCFS = _syncfs_function() if hasattr(os, "fsync") else None


def sync_filesystem(directory: str | os.PathLike[str]) -> bool:
    """Sync everything written to the file system holding ``directory`` (Linux ``syncfs``):
    the data of every file, the directories made and the renames, in one call, whatever
    their number. False where there is no ``syncfs`` (the caller syncs file by file)."""
    if _SYNCFS is None:
        return False
    fd = os.open(directory, os.O_RDONLY)
    try:
        if _SYNCFS(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), os.fspath(directory))
    finally:
        os.close(fd)
    return True


def sync_file(path: str | os.PathLike[str]) -> None:
    """Sync one file's data (the fallback of :func:`sync_filesystem`)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sweep_temps(path: str | os.PathLike[str], tag: str | None = None, *,
                record: bool = False) -> int:
    """Delete temporary files that killed writers left beside ``path``; how many.

    ``tag``: only those written with that tag (a run's own); ``None``: every one.
    ``record``: ``path`` is a record's ``<stem>.dcm``: also those of its several objects'
    files, ``<stem>_s....dcm`` (see :func:`wfdb2dicom.convert.object_file_name`)."""
    prefix = temp_prefix(path, tag)
    stem = os.path.basename(os.fspath(path))[:-4]
    suffix = f".{tag}." if tag is not None else "."
    removed = 0
    try:
        entries = list(os.scandir(os.path.dirname(os.fspath(path)) or "."))
    except OSError:  # no directory yet: nothing was ever written there
        return 0
    for entry in entries:
        name = entry.name
        ours = name.startswith(prefix) or (
            record and name.startswith(f".{stem}_s") and f".dcm{suffix}" in name)
        if ours and name.endswith(".tmp"):
            if _unlink_quietly(entry.path):
                removed += 1
    return removed


def _unlink_quietly(path: str) -> bool:
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False
