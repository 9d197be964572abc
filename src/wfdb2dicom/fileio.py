"""Whole-file reads with as few system calls as possible (the batch reads two per record).

``open(path, "rb").read()`` costs seven system calls (it also asks whether the file is a
terminal and for its block size); a record's two reads with ``os.open``/``os.read`` cost four
each. Errors are the ``OSError`` subclasses ``open`` would raise, and :class:`SizeMismatch`;
callers word them.

Every read is bounded: by the size the caller expects plus the one byte that tells a longer
file, or by :data:`MAX_UNSIZED_READ`. A file that grows, or a device that never ends, costs no
more memory than the caller asked for.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from typing import TextIO

_READ_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0)
SMALL_FILE = 1 << 13
"""Read size when the caller expects a small file (a header) and knows no exact size."""
LARGE_READ = 1 << 26
"""Reads of an expected size above this (64 MiB) ask the file's size first, so a header that
declares a huge record is refused before anything is allocated, and a stream is read in pieces
of this size."""
MAX_UNSIZED_READ = 1 << 22
"""A file read without an expected size (a header) may have at most this many bytes (4 MiB):
a header line is tens of bytes, so anything near this is not a header."""


Opener = Callable[[str], int]
"""``opener(path) -> file descriptor`` open for reading: how a caller checks what it opens
(the batch refuses a symlink that leads out of ``--wfdb_dir``)."""


NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0)
"""0 where the platform cannot refuse a symlink as it opens (Windows)."""


def sibling(path: str | os.PathLike[str], name: str) -> str:
    """``name`` in ``path``'s directory: ``os.path.join(os.path.dirname(path), name)`` where
    one separator can be told by string operations (once per record file, where the
    ``posixpath`` calls cost ~2% of a MIMIC record's work)."""
    path = os.fspath(path)
    if os.altsep:
        return os.path.join(os.path.dirname(path), name)
    head, sep, _ = path.rpartition(os.sep)
    return f"{head}{sep}{name}"


def base_name(path: str) -> str:
    """``os.path.basename`` of a ``str`` path, by string operations (see :func:`sibling`)."""
    if os.altsep:
        return os.path.basename(path)
    return path.rpartition(os.sep)[2]


class SizeMismatch(Exception):
    """The file's size is not what the reader was told; raised before the excess is read."""

    def __init__(self, actual: int | None, expected: int) -> None:
        super().__init__(f"{actual} bytes, expected {expected}")
        self.actual = actual
        """The file's size; None when it is a stream that gave more than ``expected``."""
        self.expected = expected
        """The exact size asked for, or the most a file read without a size may have."""


class NotRegularFile(OSError):
    """What :func:`open_regular_file` refuses: a FIFO, a device, a socket."""


def open_for_reading(path: str, *, follow_symlinks: bool = True) -> int:
    """The default :data:`Opener`. Without ``follow_symlinks``, a symlink fails to open
    (``OSError``, errno ELOOP; EMLINK on FreeBSD) where :data:`NO_FOLLOW` is supported."""
    return os.open(path, _READ_FLAGS if follow_symlinks else _READ_FLAGS | NO_FOLLOW)


_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket"}


def open_regular_file(path: str) -> int:
    """An :data:`Opener` for a caller without a timeout (``convert``): it refuses anything but
    a regular file, without blocking.

    Opening a FIFO for reading waits for a writer, forever; ``O_NONBLOCK`` makes the open
    return at once, and ``fstat`` then tells what was opened. On a regular file the flag
    changes nothing. Directories raise ``IsADirectoryError``, as reading one would.
    """
    fd = os.open(path, _READ_FLAGS | getattr(os, "O_NONBLOCK", 0))
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        if not stat.S_ISREG(mode):
            kind = _KINDS.get(stat.S_IFMT(mode), "a special file")
            raise NotRegularFile(errno.EINVAL, f"not a regular file ({kind})", path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_regular_text(path: str | os.PathLike[str], encoding: str = "utf-8-sig") -> TextIO:
    """A regular file opened as text for the ``csv`` module (universal newlines off; a BOM
    is no part of the first name by default). A FIFO or device raises
    :class:`NotRegularFile` at once instead of blocking: ``verify`` and ``send`` have no
    timeout, and the batch reads its input list before any worker starts."""
    fd = open_regular_file(os.fspath(path))
    try:
        os.set_blocking(fd, True)  # no effect on a regular file; plain reads from here on
        return open(fd, newline="", encoding=encoding)
    except BaseException:
        os.close(fd)
        raise


def regular_file_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` is no regular file to read, found by ``stat`` alone (nothing is opened,
    so nothing blocks): ``"not found"``, ``"is a directory"``, ``"is not a regular file
    (a FIFO)"``...; None when it is one. Words for "input CSV {problem}: {path}"."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "not found"
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a directory"
    return f"is not a regular file ({_KINDS.get(stat.S_IFMT(mode), 'a special file')})"


def read_file(path: str, expected: int | None = None, opener: Opener | None = None) -> bytes:
    """The whole file, of exactly ``expected`` bytes when given (one read when right), else of
    at most :data:`MAX_UNSIZED_READ` bytes; a file of another size raises
    :class:`SizeMismatch`, having read at most one byte more than that."""
    fd = (opener or open_for_reading)(path)
    try:
        if expected is None:
            return _read_unsized(fd)
        return _read_exactly(fd, expected)
    finally:
        os.close(fd)


def _regular_size(fd: int) -> int | None:
    """The size of a regular file; None for a stream, whose size is unknown."""
    status = os.fstat(fd)
    return status.st_size if stat.S_ISREG(status.st_mode) else None


def _read_exactly(fd: int, expected: int) -> bytes:
    if expected > LARGE_READ:  # never allocate what the file does not hold
        size = _regular_size(fd)
        if size is not None and size != expected:
            raise SizeMismatch(size, expected)
    data = os.read(fd, min(expected, LARGE_READ))
    if len(data) < expected:  # a large file (os.read gives at most ~2 GiB), or a short one
        chunks, have = [data], len(data)
        while have < expected and (chunk := os.read(fd, min(expected - have, LARGE_READ))):
            chunks.append(chunk)
            have += len(chunk)
        if have < expected:
            raise SizeMismatch(have, expected)
        data = b"".join(chunks)
    if os.read(fd, 1):  # usually b"": at the end
        raise SizeMismatch(_regular_size(fd), expected)
    return data


def _read_unsized(fd: int) -> bytes:
    first = os.read(fd, SMALL_FILE)
    rest = os.read(fd, SMALL_FILE)  # usually b"": at the end
    if not rest:
        return first
    chunks, have = [first, rest], len(first) + len(rest)
    while have <= MAX_UNSIZED_READ and (
        chunk := os.read(fd, min(1 << 20, MAX_UNSIZED_READ + 1 - have))
    ):
        chunks.append(chunk)
        have += len(chunk)
    if have > MAX_UNSIZED_READ:
        raise SizeMismatch(_regular_size(fd), MAX_UNSIZED_READ)
    return b"".join(chunks)


def read_file_and_stat(path: str) -> tuple[bytes, str]:
    """The whole of a regular file and its ``size:mtime_ns``, taken (``fstat``) before it is
    read; a file that changes size meanwhile raises :class:`SizeMismatch`.

    Stat first: a file changed while or after it is read then shows a newer time than the
    one recorded, so whoever compares it later (``wfdb2dicom verify``'s ledger) looks again.
    """
    fd = open_regular_file(path)
    try:
        info = os.fstat(fd)
        data = _read_exactly(fd, info.st_size)
    finally:
        os.close(fd)
    return data, f"{info.st_size}:{info.st_mtime_ns}"
