"""The one reader of a batch run's output CSV: resume (adopting an output without a ledger),
``wfdb2dicom verify`` and ``wfdb2dicom send`` all read it through :class:`RunCsv`.

Three readers used to disagree; the rules now live here:

* the file is UTF-8, a byte-order mark allowed (Excel adds one);
* "no error" is an empty cell or the seed's ``NA``; a ``dcm_path`` of ``NA`` or empty means
  no object;
* a relative ``dcm_path`` is relative to the CSV's own folder, not to the directory the
  reader happens to run in (the batch writes absolute paths; the seed wrote what its
  ``--dcm_dir`` made them, which a CSV moved with its objects keeps meaningful).

The writer (``report.write_output_csv``) is left as it is: its bytes are the seed's format.

A record can make several objects (one per IOD, segment or part): the run then also writes
a manifest, ``{output_csv}.objects.csv`` (:data:`MANIFEST_COLUMNS`, one line per object, in
input order), and :meth:`RunCsv.iter_objects` reads it when it is there.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..fileio import open_regular_text
from . import BatchError

NO_VALUE = frozenset(("", "NA"))
"""Cell texts (stripped) that hold nothing: empty, or the seed's ``NA``."""


@dataclass(frozen=True, slots=True)
class RunRow:
    """One row of a run's output CSV, in the reader's terms."""

    line: int
    """The row's number among the data rows, from 1."""
    study_id: str
    path: str
    """The record path as written ("" when the reader was given no path column)."""
    dcm_path: str
    """As written, stripped; "" when the row has no object."""
    error: str | None
    """The row's error; None when there is none."""

    @property
    def converted(self) -> bool:
        return bool(self.dcm_path) and self.error is None


MANIFEST_SUFFIX = ".objects.csv"
"""The manifest of a run's objects is ``{output_csv}.objects.csv``."""

MANIFEST_COLUMNS = ("row", "study_id", "record_path", "dcm_path", "sop_class_uid", "modality",
                    "segment", "part", "start", "channels", "left_out")
"""The manifest's columns: the input row (data rows from 1), its study_id, the record
(absolute, without suffix), the object (absolute), its SOP Class UID and Modality, its
segment and part (from 1), its start (ISO 8601), its channel labels joined by ``|``, and,
on the record's first object only, the signals left out as ``label (segment N): reason``
joined by `` | ``."""

CHANNEL_SEPARATOR = "|"
LEFT_OUT_SEPARATOR = " | "


def manifest_path(output_csv: str | os.PathLike[str]) -> Path:
    """``{output_csv}.objects.csv``: one line per object of the run."""
    return Path(f"{os.fspath(output_csv)}{MANIFEST_SUFFIX}")


@dataclass(frozen=True, slots=True)
class RunObject:
    """A DICOM object a run made."""

    study_id: str
    record_path: str
    """The record path: absolute when read from the manifest, else as written in the
    run's CSV."""
    dcm_path: str
    """As written in the CSV or manifest (what messages show)."""
    file: str
    """Absolute path of the object (:meth:`RunCsv.resolve` of ``dcm_path``)."""
    row: int = 0
    """The input row it came from (data rows from 1)."""
    sop_class_uid: str = ""
    """"" when the run wrote no manifest (then: one object per row)."""
    modality: str = ""
    segment: int = 1
    part: int = 1
    start: str = ""
    channels: tuple[str, ...] = ()
    """Channel labels; () when the run wrote no manifest."""
    left_out: str = ""


class RunCsv:
    """A run's output CSV, with the columns the run was given (the seed's defaults)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        study_id_col: str = "study_id",
        path_col: str | None = "path",
        dcm_path_col: str = "dcm_path",
        error_col: str = "dcm_error",
    ) -> None:
        """``path_col=None``: the record path is not needed (``send``)."""
        self.path = Path(path)
        self.columns = [study_id_col, dcm_path_col, error_col]
        if path_col is not None:
            self.columns.insert(1, path_col)
        self.has_path = path_col is not None
        self.base = os.path.dirname(os.path.abspath(self.path))

    def resolve(self, dcm_path: str) -> str:
        """The absolute path of a ``dcm_path`` cell: relative ones from the CSV's folder."""
        return os.path.normpath(os.path.join(self.base, dcm_path))

    def rows(self) -> Iterator[RunRow]:
        """Every data row, in order; a missing file or column is a one-line
        :class:`~wfdb2dicom.batch.BatchError`."""
        with _open_csv(self.path, "output CSV") as (reader, header):
            missing = [c for c in self.columns if c not in header]
            if missing:
                raise BatchError(f"{self.path}: missing column(s) {', '.join(missing)} "
                                 "(expected a batch run's output CSV)")
            at = [header.index(c) for c in self.columns]
            if not self.has_path:
                at.insert(1, -1)
            path_at = at[1]
            line = 0
            for row in reader:
                if not row:
                    continue
                line += 1
                cells = [row[i].strip() if 0 <= i < len(row) else "" for i in at]
                dcm, error = cells[2], cells[3]
                yield RunRow(
                    line, cells[0], cells[1] if path_at >= 0 else "",
                    "" if dcm in NO_VALUE else dcm,
                    None if error in NO_VALUE else error,
                )

    @property
    def manifest(self) -> Path:
        return manifest_path(self.path)

    def iter_objects(self) -> Iterator[RunObject]:
        """Every object the run made, in input order: the manifest's lines when the run
        wrote one (every object of every row), else each converted row's ``dcm_path``
        (a seed's run, or an older one: one object per row).

        The one place that says where a run's objects are.
        """
        if self.manifest.exists():  # a FIFO there is refused, not passed over
            yield from self._manifest_objects()
            return
        for row in self.rows():
            if row.converted:
                yield RunObject(row.study_id, row.path, row.dcm_path,
                                self.resolve(row.dcm_path), row=row.line)

    def _manifest_objects(self) -> Iterator[RunObject]:
        path = self.manifest
        with _open_csv(path, "manifest") as (reader, header):
            if tuple(header) != MANIFEST_COLUMNS:
                raise BatchError(f"{path}: not a run's manifest of objects (columns "
                                 f"{', '.join(header) or 'none'})")
            for cells in reader:
                if not cells:
                    continue
                if len(cells) != len(MANIFEST_COLUMNS):
                    raise ValueError(f"{len(cells)} cells, not {len(MANIFEST_COLUMNS)}")
                (row, study_id, record, dcm, sop, modality, segment, part, start,
                 channels, left_out) = cells
                yield RunObject(
                    study_id, record, dcm, self.resolve(dcm), int(row), sop, modality,
                    int(segment), int(part), start,
                    tuple(channels.split(CHANNEL_SEPARATOR)) if channels else (),
                    left_out)


@contextmanager
def _open_csv(path: Path, what: str) -> Iterator[tuple[Any, list[str]]]:
    """``(reader, header)`` of a run's CSV (UTF-8, BOM allowed; ``[]`` for an empty file).
    Every failure, opening or reading in the ``with`` body, is a one-line
    :class:`~wfdb2dicom.batch.BatchError` naming ``path`` (and the line, once reading): a
    missing file, a FIFO or device (refused as it is opened: ``verify`` and ``send`` have no
    timeout), undecodable text, a malformed line, a cell that is no number (``ValueError``).
    """
    try:
        handle = open_regular_text(path)
    except FileNotFoundError:
        raise BatchError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise BatchError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        reader = csv.reader(handle)
        try:
            yield reader, next(reader, None) or []
        except (csv.Error, UnicodeDecodeError, ValueError) as exc:
            raise BatchError(f"{path} line {reader.line_num}: not a readable {what} "
                             f"({exc})") from None
