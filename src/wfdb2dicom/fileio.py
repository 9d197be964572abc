"""Whole-file reads with as few system calls as possible (the batch reads two per record).

``open(path, "rb").read()`` costs seven system calls (it also asks whether the file is a
terminal and for its block size); a record's two reads with ``os.open``/``os.read`` cost four
each. Errors are the ``OSError`` subclasses ``open`` would raise; callers word them.
"""

from __future__ import annotations

import os
from collections.abc import Callable

_READ_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0)
SMALL_FILE = 1 << 13
"""Read size when the caller expects a small file (a header) and knows no exact size."""


Opener = Callable[[str], int]
"""``opener(path) -> file descriptor`` open for reading: how a caller checks what it opens
(the batch refuses a symlink that leads out of ``--wfdb_dir``)."""


NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0)
"""0 where the platform cannot refuse a symlink as it opens (Windows)."""


def open_for_reading(path: str, *, follow_symlinks: bool = True) -> int:
    """The default :data:`Opener`. Without ``follow_symlinks``, a symlink fails to open
    (``OSError``, errno ELOOP; EMLINK on FreeBSD) where :data:`NO_FOLLOW` is supported."""
    return os.open(path, _READ_FLAGS if follow_symlinks else _READ_FLAGS | NO_FOLLOW)


def read_file(path: str, expected: int | None = None, opener: Opener | None = None) -> bytes:
    """The whole file. ``expected``: the size the caller expects (one read when right)."""
    fd = (opener or open_for_reading)(path)
    try:
        first = os.read(fd, SMALL_FILE if expected is None else expected)
        rest = os.read(fd, SMALL_FILE)  # usually b"": at the end
        if not rest:
            return first
        chunks = [first, rest]
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_file_and_stat(path: str) -> tuple[bytes, str]:
    """The whole file and its ``size:mtime_ns``, taken (``fstat``) before it is read.

    Stat first: a file changed while or after it is read then shows a newer time than the
    one recorded, so whoever compares it later (``wfdb2dicom verify``'s ledger) looks again.
    """
    fd = open_for_reading(path)
    try:
        info = os.fstat(fd)
        first = os.read(fd, info.st_size + 1 if info.st_size else SMALL_FILE)
        chunks = [first]
        if len(first) > info.st_size:  # grew after the stat: read the rest
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks) if len(chunks) > 1 else first, f"{info.st_size}:{info.st_mtime_ns}"
