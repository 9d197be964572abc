"""What the user gets: the output CSV, the error log, and the end-of-run summary.

Formats are the seed's (``run_convert.md``): the output CSV is every input column in order
plus ``dcm_path`` and ``dcm_error``, one row per input row; the error log gets a
``=== RUN <timestamp> | todo=N ===`` line per run and ``study_id<TAB>path<TAB>error`` per
failed row.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
from collections import Counter
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np

from ..atomic import atomic_file
from . import BatchError, RunStopped
from .ledger import Ledger, decode_objects
from .outcomes import INTERNAL_ERROR, error_kind
from .paths import Layout
from .plan import Plan, iter_rows, open_csv
from .runcsv import MANIFEST_COLUMNS, manifest_path

OUTPUT_BLOCK = 8192
"""Rows of the output CSV made at a time (their texts, paths and lists are held at once)."""

PENDING, SKIPPED, CONVERTED, FAILED = 0, 1, 2, 3
"""Where each task stands in this run (``Run.status``)."""


class CsvText:
    """Rows as ``csv.writer(lineterminator="\\n")`` formats them, collected as text.

    Most rows need no quoting: no field holds a comma, a quote or a line break. Those are
    joined with commas directly; ``csv.writer`` checked every character of every field
    against the line terminator, which was half the batch parent's work per record. Any
    other row (or one with a field that is not ``str``) goes through ``csv.writer``.
    ``tests/test_batch_units.py`` proves the two equal.
    """

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\n")

    def row(self, fields: list[str] | tuple[str, ...]) -> None:
        try:
            line = ",".join(fields)
        except TypeError:  # a field that is not str: csv.writer's own conversion
            line = None
        if (line is None or line.count(",") != len(fields) - 1 or '"' in line
                or "\n" in line or "\r" in line or not line):
            self._writer.writerow(fields)
            self._lines.append(self._buffer.getvalue())
            self._buffer.seek(0)
            self._buffer.truncate()
        else:
            self._lines.append(line + "\n")

    def take(self) -> str:
        """The text of the rows given since the last call."""
        text = "".join(self._lines)
        self._lines.clear()
        return text


def run_header(todo: int, when: dt.datetime | None = None) -> str:
    when = when or dt.datetime.now()
    return f"=== RUN {when:%Y-%m-%d %H:%M:%S} | todo={todo} ===\n"


def log_entry(study_id: str, path: str, error: str) -> str:
    """``study_id<TAB>path<TAB>error``; tabs and newlines inside a field become spaces."""
    return "\t".join(" ".join(f.split()) for f in (study_id, path, error)) + "\n"


class ErrorLog:
    """The error log file, kept in step with the ledger.

    Text is appended at each checkpoint *before* the ledger commits the log's new size; a run
    killed in between leaves text the ledger does not know, for rows the next run redoes.
    :meth:`reconcile` cuts that text off (and restores committed text if the file lost it),
    so after any number of kills the log holds each failure as an uninterrupted run would.
    """

    def __init__(self, path: str | os.PathLike[str], *, sync: bool = True) -> None:
        """``sync``: appended text is synced before :meth:`append` returns (the ledger
        commits its size next)."""
        self.path = Path(path)
        self.key = os.path.abspath(self.path)
        self.sync = sync

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def reconcile(self, ledger: Ledger) -> None:
        committed, text = ledger.log_state(self.key)
        size = self.size()
        try:
            if committed is None:  # a log this ledger never wrote: adopt it as it is
                ledger.set_log_size(self.key, size)
            elif size > committed:
                with open(self.path, "r+b") as handle:
                    handle.truncate(committed)
            elif size < committed:  # lost committed text (deleted, or a crash before write-back)
                data = text.encode("utf-8")
                with atomic_file(self.path, binary=True, durable=self.sync) as handle:
                    handle.write(data)
                ledger.set_log_size(self.key, len(data))
        except OSError as exc:
            raise RunStopped(self.path, exc) from None

    def append(self, text: str) -> int:
        """Append ``text``; the file's new size, for the ledger. An I/O error (disk full)
        stops the run, naming the file."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "ab") as handle:
                handle.write(text.encode("utf-8"))
                handle.flush()
                if self.sync:
                    os.fsync(handle.fileno())
                return handle.tell()
        except OSError as exc:
            raise RunStopped(self.path, exc) from None


def write_output_csv(
    plan: Plan,
    status: np.ndarray,
    ledger: Ledger,
    layout: Layout,
    *,
    input_csv: str | os.PathLike[str],
    output_csv: str | os.PathLike[str],
    dcm_path_col: str,
    error_col: str,
    durable: bool = True,
) -> None:
    """Render the output CSV from the input and the results in one linear pass, atomically
    (``durable``: synced before it replaces the old one).

    The input is read again (the run keeps only two of its columns in memory), errors come
    from the ledger (committed before this is called); if the input already has the two
    result columns (an output fed back as input) they are filled in place.
    """
    reader, header, handle = open_csv(input_csv)
    out_header = list(header)
    for name in (dcm_path_col, error_col):
        if name not in out_header:
            out_header.append(name)
    width = len(out_header)
    n_input = len(header)
    appended = width == n_input + 2 and out_header[-2:] == [dcm_path_col, error_col]
    dcm_at, error_at = out_header.index(dcm_path_col), out_header.index(error_col)
    padding = [""] * width
    with atomic_file(Path(output_csv), durable=durable) as out, \
            atomic_file(manifest_path(output_csv), durable=durable) as manifest, handle:
        lines = CsvText()  # rows are formatted here and written a block at a time
        lines.row(out_header)
        out.write(lines.take())
        manifest_lines = CsvText()
        manifest_lines.row(MANIFEST_COLUMNS)
        wfdb_prefix = layout.wfdb_shown.rstrip(os.sep) + os.sep
        rows = iter_rows(reader, input_csv)
        start = 0
        while block := list(islice(rows, OUTPUT_BLOCK)):
            end = start + len(block)
            if end > plan.rows.n_rows:
                break
            tasks = plan.row_task[start:end]
            outcome = np.where(tasks >= 0, status[np.maximum(tasks, 0)], -1).tolist()
            rels = plan.rows.paths.slice(start, end - start).to_pylist()
            sids = plan.rows.study_ids.slice(start, end - start).to_pylist()
            errors = ledger.errors_of([
                rel for rel, state in zip(rels, outcome, strict=True) if state == FAILED
            ])
            objects = ledger.objects_of([
                rel for rel, state in zip(rels, outcome, strict=True)
                if state == CONVERTED or state == SKIPPED
            ])
            for offset, row in enumerate(block):
                state = outcome[offset]
                if state == CONVERTED or state == SKIPPED:
                    rel = rels[offset]
                    files, described = objects[rel]
                    paths = layout.object_paths(rel, files, shown=True)
                    dcm_path, error = paths[0], ""
                    record = wfdb_prefix + rel.replace("/", os.sep)
                    entries, left_out = decode_objects(described)
                    row_number = str(start + offset + 1)
                    for index, (path, entry) in enumerate(zip(paths, entries, strict=True)):
                        _, sop_class_uid, modality, segment, part, moment, channels = entry
                        manifest_lines.row((
                            row_number, sids[offset], record, path, sop_class_uid, modality,
                            str(segment), str(part), moment, channels,
                            "" if index else left_out))
                elif state < 0:  # refused before any work
                    dcm_path, error = "", plan.row_errors[start + offset]
                else:
                    dcm_path, error = "", errors.get(rels[offset], "")
                if appended and len(row) == n_input:
                    row.append(dcm_path)
                    row.append(error)
                else:  # ragged rows (padded as pandas does), or result columns present
                    row = (row[:n_input] + padding)[:width]
                    row[dcm_at], row[error_at] = dcm_path, error
                    block[offset] = row
            for row in block:
                lines.row(row)
            out.write(lines.take())
            manifest.write(manifest_lines.take())
            start = end
        if start != plan.rows.n_rows:
            raise BatchError(
                f"{input_csv} changed during the run ({start} rows now, {plan.rows.n_rows} "
                "at the start); run the command again"
            )


@dataclass
class Summary:
    """Counts of one run, in rows (duplicate rows count once each)."""

    rows: int = 0
    converted: int = 0
    skipped: int = 0
    failed: int = 0
    internal: int = 0
    """Failed rows whose error is a bug (``InternalError: ...``), counted apart."""
    failures: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    left_out: int = 0
    """Signals left out of the records this run converted (each with its reason in the
    manifest); their records still converted."""

    def add_failure(self, error: str, n_rows: int = 1) -> None:
        self.failed += n_rows
        kind = error_kind(error)
        self.failures[kind] += n_rows
        if kind == INTERNAL_ERROR:
            self.internal += n_rows

    def render(self, *, output_csv: str, error_log: str, dcm_dir: str) -> str:
        rate = f" ({self.converted / self.seconds:.1f} converted/s)" if self.seconds else ""
        lines = [
            f"{self.rows} rows in {self.seconds:.1f} s{rate}",
            f"  converted:                {self.converted}",
            f"  skipped (already done):   {self.skipped}",
            f"  failed:                   {self.failed}",
        ]
        if self.left_out:
            lines.append(f"  signals left out:         {self.left_out} (reasons in the "
                         "manifest)")
        if self.internal:
            lines.append(f"  internal errors (bugs):   {self.internal}")
        width = max((len(kind) for kind in self.failures), default=0)
        for kind, count in sorted(self.failures.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"    {kind:<{width}}  {count}")
        lines += [
            f"  DICOM files:  {dcm_dir}",
            f"  output CSV:   {output_csv}",
            f"  manifest:     {manifest_path(output_csv)}",
            f"  error log:    {error_log}",
        ]
        return "\n".join(lines)
