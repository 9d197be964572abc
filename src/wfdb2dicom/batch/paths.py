"""Where a row's files live, and the rules that keep a batch inside its two directories.

The input CSV is data, not code we wrote: its ``path`` column may hold ``../x``, an absolute
path, or lead through a symlink that points elsewhere. Two checks keep a run inside
``--wfdb_dir`` (what it reads) and ``--dcm_dir`` (what it writes):

* :func:`normalise_record_path`, lexical and cheap, in the parent for every row;
* :meth:`Layout.record_base`, :meth:`Layout.open_input` (the reader's opener) and
  :meth:`Layout.output`, which resolve symlinks, in the worker as it touches the files (so
  the parent never stats 800,000 paths).

This module is imported by worker processes: keep it free of heavy imports.
"""

from __future__ import annotations

import errno
import os
import re
import stat

from ..errors import ConversionError
from ..fileio import NO_FOLLOW, open_for_reading

RECORD_SUFFIXES = (".hea", ".dat")
"""The seed accepts a ``path`` with or without one of these."""

_DRIVE = re.compile(r"^[A-Za-z]:")
_IS_SYMLINK = (errno.ELOOP, errno.EMLINK)
"""How ``open`` with ``O_NOFOLLOW`` refuses a symlink (EMLINK on FreeBSD)."""


class UnsafePath(ConversionError):
    """A row's path would read outside ``--wfdb_dir`` or write outside ``--dcm_dir``."""


def normalise_record_path(raw: str) -> str:
    """``' files/p1000//./x.hea '`` -> ``'files/p1000/x'``; escapes raise :class:`UnsafePath`.

    The result is relative, ``/``-separated, without ``.``/empty components or a record
    suffix: the row's identity for duplicate detection, the ledger, and the output layout.
    Backslashes count as separators, so Windows-made lists work everywhere.
    """
    if _is_clean(raw):
        return raw
    text = raw.strip()
    if not text:
        raise UnsafePath("empty path")
    if "\x00" in text:
        raise UnsafePath("path contains a NUL character")
    text = text.replace("\\", "/")
    if text.startswith("/") or _DRIVE.match(text):
        raise UnsafePath(f"absolute path {text} (paths are relative to --wfdb_dir)")
    parts = [part for part in text.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UnsafePath(f"path {text} climbs out of --wfdb_dir ('..')")
    if parts and parts[-1].lower().endswith(RECORD_SUFFIXES):
        parts[-1] = parts[-1][:-4]
    if not parts or not parts[-1]:
        raise UnsafePath(f"path {text} names no record")
    return "/".join(parts)


def _is_clean(raw: str) -> bool:
    """Already normal (all of MIMIC's are): nothing below would refuse or change it."""
    return bool(raw) and not (
        raw[0] in "./" or raw[0].isspace() or raw[-1].isspace() or raw[-1] == "/"
        or "/." in raw or "//" in raw or "\\" in raw or ":" in raw or "\x00" in raw
        or raw[-4:].lower() in RECORD_SUFFIXES
    )


def is_inside(path: str, root: str) -> bool:
    """Whether ``path`` is ``root`` or below it (both already resolved)."""
    path, root = os.path.normcase(path), os.path.normcase(root)
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


class Layout:
    """The run's two roots, resolved once; picklable, so workers get a copy.

    ``wfdb_root``/``dcm_root`` are real paths (symlinks resolved) for the containment checks;
    ``dcm_shown`` is ``--dcm_dir`` made absolute but otherwise as the user gave it, for the
    ``dcm_path`` column.

    The checks walk the path with ``lstat`` (output directories: ``mkdir`` first) and call
    ``realpath`` only where a symlink is found, remembering directories already found safe
    (MIMIC-IV-ECG shares a subject's directory among its studies): a few microseconds a record
    instead of ~150 with ``realpath`` alone. As any check-then-use, it does not guard against a tree
    that changes while the run reads it.
    """

    CACHE_LIMIT = 100_000
    """Safe directories remembered per root before the memory is cleared."""

    def __init__(self, wfdb_dir: str | os.PathLike[str], dcm_dir: str | os.PathLike[str]) -> None:
        self.wfdb_root = os.path.realpath(wfdb_dir)
        self.dcm_root = os.path.realpath(dcm_dir)
        self.dcm_shown = os.path.abspath(dcm_dir)
        self.wfdb_shown = os.path.abspath(wfdb_dir)
        """``--wfdb_dir`` made absolute, as the manifest shows record paths."""
        self._safe: dict[str, set[str]] = {self.wfdb_root: set(), self.dcm_root: set()}
        # Paths are built by concatenation: os.path.join costs more than the check itself.
        self._prefix = {root: root.rstrip(os.sep) + os.sep for root in self._safe}
        self._shown_prefix = self.dcm_shown.rstrip(os.sep) + os.sep

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state["_safe"] = {root: set() for root in self._safe}
        return state

    @staticmethod
    def _native(rel: str) -> str:
        return rel if os.sep == "/" else rel.replace("/", os.sep)

    def output_path(self, rel: str) -> str:
        """Where the DICOM file of record ``rel`` goes (no checks: for stats and sweeps)."""
        return f"{self._prefix[self.dcm_root]}{self._native(rel)}.dcm"

    def shown_output_path(self, rel: str) -> str:
        """The ``dcm_path`` value reported for record ``rel``."""
        return f"{self._shown_prefix}{self._native(rel)}.dcm"

    def object_paths(self, rel: str, files: str | None, *, shown: bool = False) -> list[str]:
        """Every file of record ``rel`` (no checks): ``<rel>.dcm`` when ``files`` is None,
        else each of ``files`` (names, one a line) in ``rel``'s directory. ``shown``: as
        ``dcm_path`` reports them."""
        if files is None:
            return [self.shown_output_path(rel) if shown else self.output_path(rel)]
        folder = rel.rpartition("/")[0]
        prefix = self._shown_prefix if shown else self._prefix[self.dcm_root]
        if folder:
            prefix += self._native(folder) + os.sep
        return [prefix + name for name in files.split("\n")]

    def shown_output_paths(self, rels: list[str]) -> list[str]:
        """:meth:`shown_output_path` of each of ``rels`` (the output CSV's, in bulk)."""
        prefix = self._shown_prefix
        if os.sep == "/":
            return [f"{prefix}{rel}.dcm" for rel in rels]
        return [f"{prefix}{self._native(rel)}.dcm" for rel in rels]

    def record_base(self, rel: str) -> str:
        """The record to read; refuses one whose directory resolves outside the root.

        Its files are checked as they are opened, by :meth:`open_input` (the reader's opener).
        """
        folder, _, name = rel.rpartition("/")
        if not self._dir_inside(self.wfdb_root, folder):
            raise UnsafePath(f"{rel} is in a directory that resolves outside --wfdb_dir")
        return self._prefix[self.wfdb_root] + self._native(rel)

    def open_input(self, path: str) -> int:
        """Open a record's file for reading (a :data:`~wfdb2dicom.fileio.Opener`); refuses a
        symlink that resolves outside ``--wfdb_dir``.

        ``O_NOFOLLOW`` makes the check free for the files that are no symlink (all, usually):
        the open fails on a symlink, which is then resolved and, if inside, opened.
        """
        if NO_FOLLOW:
            try:
                return open_for_reading(path, follow_symlinks=False)
            except OSError as exc:
                if exc.errno not in _IS_SYMLINK:
                    raise
        if not self._entry_inside(self.wfdb_root, path):
            raise UnsafePath(f"{self._shown_input(path)} resolves outside --wfdb_dir (symlink)")
        return open_for_reading(path)

    def _shown_input(self, path: str) -> str:
        return path.removeprefix(self._prefix[self.wfdb_root]).replace(os.sep, "/")

    def output(self, rel: str) -> str:
        """The file to write, its directory made; refuses one whose directory resolves
        outside ``--dcm_dir``.

        Directories are checked from the root down before any is made, so a symlink inside
        ``--dcm_dir`` cannot make the run create directories elsewhere either. The file
        itself may be a symlink: ``os.replace`` replaces the link, never its target.
        """
        if not self._dir_inside(self.dcm_root, rel.rpartition("/")[0], make=True):
            raise UnsafePath(f"output {rel}.dcm would land outside --dcm_dir (symlink)")
        return self.output_path(rel)

    def _entry_inside(self, root: str, path: str) -> bool:
        """A path whose directory is known safe: only a symlink there can lead out."""
        try:
            mode = os.lstat(path).st_mode
        except OSError:  # missing: reading fails later with the record's own error
            return True
        return not stat.S_ISLNK(mode) or is_inside(os.path.realpath(path), root)

    def _dir_inside(self, root: str, folder: str, *, make: bool = False) -> bool:
        """Whether ``root/folder`` (``/``-separated, lexically clean) stays inside ``root``;
        with ``make``, missing directories are made on the way down.

        ``make`` tries ``mkdir`` first: a directory this run made is no symlink, so a fresh
        output tree costs one system call per new directory and no ``lstat`` at all.
        """
        if not folder:
            return True
        safe = self._safe[root]
        if folder in safe:
            return True
        parent = folder.rpartition("/")[0]
        if parent and parent not in safe and not self._dir_inside(root, parent, make=make):
            return False
        full = self._prefix[root] + self._native(folder)
        made = False
        if make:
            try:
                os.mkdir(full)
                made = True
            except OSError:  # there already, or not ours to make: checked below
                pass
        if not made:
            try:
                mode = os.lstat(full).st_mode
            except OSError:  # not there (nor makeable) or unreadable: the write reports it
                return True
            if stat.S_ISLNK(mode) and not is_inside(os.path.realpath(full), root):
                return False
        if len(safe) >= self.CACHE_LIMIT:
            safe.clear()
        safe.add(folder)
        return True


def is_nonempty_file(path: str) -> bool:
    """Resume's test of "done": one stat, no read (an empty file is a lost write)."""
    try:
        info = os.stat(path)
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_size > 0
