"""What a run has to do: the input rows, their duplicates and refusals, and what is done.

Built for 800,000 rows in bounded memory and a few seconds: the input is read once with
the standard ``csv`` module (the same parser that renders the output, so row numbers
agree); only the two columns the run needs are kept, as Arrow string arrays (about the size
of the text itself, where Python strings would cost three times as much); rows are grouped
by sorting 64-bit hashes of their paths with numpy, not with a dictionary of every path.

Vocabulary: a *row* is a line of the input CSV; a *task* is one output file, i.e. one
normalised record path (several rows can share it). Tasks are numbered in input order.
"""

from __future__ import annotations

import csv
import os
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np
import pyarrow as pa

from ..arrays import StringColumn, positions, text_scalar
from ..errors import one_line
from ..fileio import open_regular_text
from ..metadata import normalise_study_id
from . import BatchError
from .ledger import Entry, Ledger, describe_file
from .paths import Layout, UnsafePath, is_nonempty_file, normalise_record_path
from .runcsv import RunCsv

BLOCK = 65536
"""Rows turned into Arrow arrays (or Python lists) at a time."""


def open_csv(path: str | os.PathLike[str]) -> tuple[Any, list[str], IO[str]]:
    """``(reader, header, handle)`` for a CSV as pandas would read it (UTF-8, BOM allowed);
    the caller closes ``handle``."""
    try:  # a FIFO is refused, not waited on: no worker has started, no timeout runs yet
        handle = open_regular_text(path)
    except OSError as exc:
        raise BatchError(f"cannot read {path}: {exc.strerror}") from None
    reader = csv.reader(handle)
    try:
        header = next(reader, None)
    except (csv.Error, UnicodeDecodeError) as exc:
        handle.close()
        raise BatchError(f"{path} is not a readable CSV file: {exc}") from None
    if not header:
        handle.close()
        raise BatchError(f"{path} is empty (no header line)")
    return reader, header, handle


def column_index(header: list[str], name: str, path: str | os.PathLike[str], flag: str) -> int:
    try:
        return header.index(name)
    except ValueError:
        shown = ", ".join(header[:12]) + (", ..." if len(header) > 12 else "")
        raise BatchError(
            f"{path} has no column {name!r} (set {flag}); its columns: {shown}"
        ) from None


def iter_rows(reader: Any, path: str | os.PathLike[str]) -> Iterator[list[str]]:
    """Data rows, blank lines skipped (as pandas does); decoding errors become BatchError."""
    try:
        for row in reader:
            if row:
                yield row
    except (csv.Error, UnicodeDecodeError) as exc:
        raise BatchError(f"{path} line {reader.line_num}: {exc}") from None


@dataclass
class InputRows:
    """The input CSV reduced to what the run needs (row numbers count data rows from 0)."""

    header: list[str]
    n_rows: int
    study_ids: pa.ChunkedArray
    """Normalised study_id of every row."""
    paths: pa.ChunkedArray
    """Normalised record path of every row; null where the path was refused."""
    path_hashes: np.ndarray
    """``hash()`` of each row's normalised path (0 where refused): the key for grouping
    rows into tasks without a hash table of 800,000 strings. Only compared within a run."""
    raw_study_ids: dict[int, str] = field(default_factory=dict)
    """The row's study_id as written, where it differs from the normalised one."""
    raw_paths: dict[int, str] = field(default_factory=dict)
    """The row's path as written, where it differs from the normalised one."""
    refused: dict[int, str] = field(default_factory=dict)
    """Rows refused before any work, with their error."""


def read_input(csv_path: str | os.PathLike[str], study_id_col: str, path_col: str) -> InputRows:
    """Read the input CSV once, keeping only study_id and path (normalised) per row."""
    reader, header, handle = open_csv(csv_path)
    with handle:
        sid_at = column_index(header, study_id_col, csv_path, "--study_id_col")
        path_at = column_index(header, path_col, csv_path, "--path_col")
        width = max(sid_at, path_at) + 1
        raw_sids: dict[int, str] = {}
        raw_paths: dict[int, str] = {}
        refused: dict[int, str] = {}
        sid_column, path_column = StringColumn(BLOCK), StringColumn(BLOCK)
        hash_bytes = array("q")
        sids: list[str] = []
        paths: list[str | None] = []
        hashes: list[int] = []
        n = 0
        for row in iter_rows(reader, csv_path):
            if len(row) < width:
                row = row + [""] * (width - len(row))
            raw_sid, raw_path = row[sid_at], row[path_at]
            sid = normalise_study_id(raw_sid)
            if sid != raw_sid:
                raw_sids[n] = raw_sid
            try:
                rel: str | None = normalise_record_path(raw_path)
            except UnsafePath as exc:
                rel = None
                refused[n] = f"UnsafePath: {exc}"
            if rel != raw_path:
                raw_paths[n] = raw_path
            sids.append(sid)
            paths.append(rel)
            hashes.append(hash(rel) if rel is not None else 0)
            n += 1
            if len(sids) == BLOCK:
                sid_column.add(sids)
                path_column.add(paths)
                hash_bytes += array("q", hashes)
                sids, paths, hashes = [], [], []
        sid_column.add(sids)
        path_column.add(paths)
        hash_bytes += array("q", hashes)
    # The last block's strings go before the arrays are made (see StringColumn).
    del sids, paths, hashes
    return InputRows(
        header=header,
        n_rows=n,
        study_ids=sid_column.chunked(),
        paths=path_column.chunked(),
        path_hashes=np.frombuffer(hash_bytes, np.int64),
        raw_study_ids=raw_sids,
        raw_paths=raw_paths,
        refused=refused,
    )


@dataclass
class Plan:
    """Rows, tasks, and which tasks are already done.

    A task is identified by its first row: its path and study_id are that row's.
    """

    rows: InputRows
    row_task: np.ndarray
    """Task of each row; -1 for a row with an error of its own (:attr:`row_errors`)."""
    task_first_row: np.ndarray
    task_n_rows: np.ndarray
    row_errors: dict[int, str]
    """Refused paths, and rows whose output file belongs to an earlier row's study_id."""
    done: np.ndarray
    """Tasks finished by an earlier run (ledger says so and the file is there)."""
    verify: np.ndarray
    """Tasks done earlier that ``--verify-existing`` sends to workers for a re-check."""
    _multi: dict[int, list[int]] | None = None

    @property
    def n_tasks(self) -> int:
        return len(self.task_first_row)

    def todo_tasks(self) -> np.ndarray:
        """Tasks to run, in input order (verifications included); 32-bit like the plan's
        other arrays (held for the whole run)."""
        todo = np.flatnonzero(~self.done)
        return todo.astype(np.int32) if self.n_tasks < 2**31 else todo

    def todo_rows(self) -> int:
        """Rows this run has to decide (not skipped as already done)."""
        return len(self.row_errors) + int(self.task_n_rows[~self.done].sum())

    def rows_of(self, task: int) -> list[int]:
        """The input rows that share ``task`` (almost always one)."""
        if self.task_n_rows[task] == 1:
            return [int(self.task_first_row[task])]
        if self._multi is None:
            shared = np.flatnonzero(self.task_n_rows > 1)
            self._multi = {int(t): [] for t in shared}
            for row in np.flatnonzero(np.isin(self.row_task, shared)):
                self._multi[int(self.row_task[row])].append(int(row))
        return self._multi[task]

    def task_values(self, tasks: np.ndarray) -> tuple[list[str], list[str]]:
        """(paths, study_ids) of ``tasks`` as Python strings (one Arrow take each)."""
        return _values_at(self.rows, self.task_first_row[tasks])

    def raw_values(self, row: int, study_id: str | None = None,
                   path: str | None = None) -> tuple[str, str]:
        """The row's study_id and path as written in the input CSV (for the error log).

        ``study_id``/``path``: the row's normalised values when the caller has them (a
        task's), which saves two Arrow lookups.
        """
        rows = self.rows
        raw_sid = rows.raw_study_ids.get(row)
        if raw_sid is None:
            raw_sid = study_id if study_id is not None else rows.study_ids[row].as_py()
        raw_path = rows.raw_paths.get(row)
        if raw_path is None:
            raw_path = path if path is not None else rows.paths[row].as_py()
        return raw_sid, raw_path


def group_by_path(rows: InputRows) -> np.ndarray:
    """Task of each row (-1 where refused), numbered in order of first appearance.

    Sorting the rows' 64-bit path hashes finds equal paths; rows sharing a hash are then
    compared as strings, so a hash collision can never merge two different paths.
    """
    task = np.full(rows.n_rows, -1, dtype=np.int64)
    usable = np.ones(rows.n_rows, dtype=bool)
    usable[list(rows.refused)] = False
    valid = np.flatnonzero(usable)
    if not len(valid):
        return task
    _, first, inverse = np.unique(rows.path_hashes[valid], return_index=True,
                                  return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    task[valid] = rank[inverse.reshape(-1)]
    shared = valid[np.bincount(task[valid])[task[valid]] > 1]
    if len(shared):  # rare: duplicate rows, or (astronomically rare) a hash collision
        texts = take(rows.paths, shared)
        first_text: dict[int, str] = {}
        split: dict[tuple[int, str], int] = {}
        for row, text in zip(shared.tolist(), texts, strict=True):
            group = int(task[row])
            if first_text.setdefault(group, text) != text:  # same hash, other path
                task[row] = split.setdefault((group, text), len(first) + len(split))
    return task


def build_plan(
    rows: InputRows,
    ledger: Ledger,
    layout: Layout,
    *,
    overwrite: bool = False,
    verify_existing: bool = False,
) -> Plan:
    """Group rows into tasks, settle duplicates, and find what an earlier run finished."""
    row_task = group_by_path(rows)
    n_tasks = int(row_task.max()) + 1 if rows.n_rows else 0
    task_first_row = np.full(n_tasks, rows.n_rows, dtype=np.int64)
    np.minimum.at(task_first_row, row_task[row_task >= 0], np.flatnonzero(row_task >= 0))

    row_errors = dict(rows.refused)
    counts = np.bincount(row_task[row_task >= 0], minlength=n_tasks)
    shared = np.flatnonzero((row_task >= 0) & (counts[np.maximum(row_task, 0)] > 1))
    if len(shared):  # same output file: the first row's study_id owns it
        sids = take(rows.study_ids, shared)
        owner_rows = task_first_row[row_task[shared]]
        owner_sids = take(rows.study_ids, owner_rows)
        for row, sid, first, owner in zip(shared.tolist(), sids, owner_rows.tolist(),
                                          owner_sids, strict=True):
            if sid != owner:
                row_errors[row] = one_line(
                    f"DuplicateOutput: {rows.paths[row].as_py()}.dcm already belongs to "
                    f"study_id {owner} (row {first + 1}); this row's study_id {sid} is "
                    "not converted"
                )
                row_task[row] = -1
    _refuse_duplicate_studies(rows, row_task, task_first_row, row_errors)
    used = np.zeros(n_tasks, dtype=bool)
    used[row_task[row_task >= 0]] = True
    if not used.all():  # tasks refused whole: renumber the rest, still in input order
        renumber = np.cumsum(used) - 1
        row_task = np.where(row_task >= 0, renumber[np.maximum(row_task, 0)], -1)
        task_first_row = task_first_row[used]
        n_tasks = len(task_first_row)
    task_n_rows = np.bincount(row_task[row_task >= 0], minlength=n_tasks)
    if rows.n_rows < 2**31:  # half the memory for 800,000 rows; positions fit in 32 bits
        row_task, task_first_row, task_n_rows = (
            a.astype(np.int32) for a in (row_task, task_first_row, task_n_rows))

    done = np.zeros(n_tasks, dtype=bool)
    if not overwrite and n_tasks:
        done = _done_tasks(ledger, layout, rows, task_first_row)
    verify = done.copy() if verify_existing else np.zeros(n_tasks, dtype=bool)
    if verify_existing:
        done[:] = False
    return Plan(rows, row_task, task_first_row, task_n_rows, row_errors, done, verify)


def study_keys(study_ids: list[str], paths: list[str]) -> list[str]:
    """The key each study's UIDs are derived from: its normalised study_id, or the record's
    name where the study_id is empty (as :func:`wfdb2dicom.convert.convert_many_to_parts`
    does)."""
    return [sid or normalise_study_id(path.rpartition("/")[2])
            for sid, path in zip(study_ids, paths, strict=True)]


def _refuse_duplicate_studies(rows: InputRows, row_task: np.ndarray,
                              task_first_row: np.ndarray, row_errors: dict[int, str]) -> None:
    """A task whose study key an earlier task (another record) already has is refused,
    every row of it: UIDs derive from the study key, so two records would share a Study,
    Series and SOP Instance UID. Decided in input order from the input alone, so the
    outcome never depends on what earlier runs did.

    One dictionary encoding of the tasks' study_ids (Arrow, in C), then ``np.unique``: no
    Python work per row unless a study_id is empty (keyed by its record's name instead).
    """
    n_tasks = len(task_first_row)
    if n_tasks < 2:
        return
    # Every row's study_id encoded at once: the chunks share one dictionary (one hash table
    # across chunks), so no take of the tasks' rows is needed first (~0.1 s at 800,000).
    encoded = rows.study_ids.dictionary_encode()
    dictionary = encoded.chunk(encoded.num_chunks - 1).dictionary
    if any(len(chunk.dictionary) != len(dictionary) for chunk in encoded.chunks):
        encoded = pa.chunked_array([rows.study_ids.combine_chunks().dictionary_encode()])
        dictionary = encoded.chunk(0).dictionary  # (an Arrow without the shared table)
    codes = np.concatenate([  # int32, no nulls; from the buffers: to_numpy imports pandas
        np.frombuffer(chunk.indices.buffers()[1], np.int32, len(chunk), chunk.offset * 4)
        for chunk in encoded.chunks])[task_first_row].astype(np.int64)
    if dictionary.index(text_scalar("")).as_py() >= 0:  # rare: key by record name
        keys = study_keys(take(rows.study_ids, task_first_row),
                          take(rows.paths, task_first_row))
        numbers: dict[str, int] = {}
        codes = np.fromiter((numbers.setdefault(key, len(numbers)) for key in keys),
                            np.int64, n_tasks)
    _, first = np.unique(codes, return_index=True)
    owner = np.empty(int(codes.max()) + 1, dtype=np.int64)
    owner[codes[first]] = first
    owner_task = owner[codes]
    repeated = np.flatnonzero(owner_task != np.arange(n_tasks))
    if not len(repeated):
        return
    paths = take(rows.paths, task_first_row[repeated])
    owner_paths = take(rows.paths, task_first_row[owner_task[repeated]])
    keys = study_keys(take(rows.study_ids, task_first_row[repeated]), paths)
    errors: dict[int, str] = {}
    for task, path, owner_path, owner_of, key in zip(
            repeated.tolist(), paths, owner_paths, owner_task[repeated].tolist(), keys,
            strict=True):
        errors[task] = one_line(
            f"DuplicateStudy: study {key} already belongs to record {owner_path} (row "
            f"{int(task_first_row[owner_of]) + 1}); this row's record {path} is not converted "
            "(two records would share the study's UIDs)")
    refused_rows = np.flatnonzero(np.isin(row_task, repeated))
    for row, task in zip(refused_rows.tolist(), row_task[refused_rows].tolist(), strict=True):
        row_errors[row] = errors[task]
    row_task[refused_rows] = -1


def _done_tasks(
    ledger: Ledger, layout: Layout, rows: InputRows, task_first_row: np.ndarray
) -> np.ndarray:
    """Tasks the ledger marks converted, for the same study_id, whose files all still exist.

    Ledger rows are matched to tasks by path hash (a sorted numpy array and
    ``searchsorted``), then confirmed by comparing the strings: no hash table of every
    path, so memory stays small however large the run.
    """
    done = np.zeros(len(task_first_row), dtype=bool)
    several: dict[int, str] = {}
    task_hash = rows.path_hashes[task_first_row]
    order = np.argsort(task_hash, kind="stable")
    sorted_hash = task_hash[order]
    for batch in ledger.iter_done():
        wanted = np.fromiter((hash(entry[0]) for entry in batch), np.int64, len(batch))
        at = np.minimum(np.searchsorted(sorted_hash, wanted), len(sorted_hash) - 1)
        hit = np.flatnonzero(sorted_hash[at] == wanted)
        if not len(hit):
            continue
        tasks = order[at[hit]]
        paths, sids = _values_at(rows, task_first_row[tasks])
        for task, entry, path, sid in zip(tasks.tolist(), hit.tolist(), paths, sids,
                                          strict=True):
            found = batch[entry]
            if found[:2] == (path, sid):
                done[task] = True
                if found[2] is not None:  # several objects: each must be there
                    several[task] = found[2]
    if getattr(layout, "trusts_ledger", False):  # an object store: no request per object
        return done
    candidates = np.flatnonzero(done)
    for start in range(0, len(candidates), BLOCK):
        block = candidates[start:start + BLOCK]
        rels, _ = _values_at(rows, task_first_row[block])
        for task, rel in zip(block.tolist(), rels, strict=True):
            files = several.get(task)
            if files is None:
                there = is_nonempty_file(layout.output_path(rel))
            else:
                there = all(map(is_nonempty_file, layout.object_paths(rel, files)))
            if not there:
                done[task] = False
    return done


def _values_at(rows: InputRows, at: np.ndarray) -> tuple[list[str], list[str]]:
    """(paths, study_ids) of rows ``at`` as Python strings."""
    return take(rows.paths, at), take(rows.study_ids, at)


def take(column: pa.ChunkedArray, at: np.ndarray) -> list:
    """``column[at]`` as Python values.

    Chunk by chunk: ``ChunkedArray.take`` would concatenate every chunk on each call (tens
    of MB and milliseconds at 800,000 rows). Chunks hold :data:`BLOCK` rows each.
    """
    if not len(at):
        return []
    chunk = at // BLOCK
    first, last = int(chunk.min()), int(chunk.max())
    if first == last:  # the usual case: tasks are handed out in input order
        return column.chunk(first).take(positions(at - first * BLOCK)).to_pylist()
    out: list = [None] * len(at)
    for c in np.unique(chunk).tolist():
        where = np.flatnonzero(chunk == c)
        values = column.chunk(c).take(positions(at[where] - c * BLOCK)).to_pylist()
        for i, value in zip(where.tolist(), values, strict=True):
            out[i] = value
    return out


def adopt_seed_output(
    output_csv: str | os.PathLike[str],
    layout: Layout,
    *,
    study_id_col: str,
    path_col: str,
    dcm_path_col: str,
    error_col: str,
) -> Iterator[list[Entry]]:
    """Ledger entries for the rows an earlier output CSV (e.g. the seed's) reports converted.

    A row counts as done when :class:`~wfdb2dicom.batch.runcsv.RunCsv` reads it as
    converted, its ``dcm_path`` is the file this run would write, and that file is not
    empty. Yields batches; a CSV that is unreadable or lacks the columns yields nothing
    more (the run then converts those rows again).
    """
    run = RunCsv(output_csv, study_id_col=study_id_col, path_col=path_col,
                 dcm_path_col=dcm_path_col, error_col=error_col)
    batch: list[Entry] = []
    try:
        for row in run.rows():  # the seed's format: one object per row
            if not row.converted:
                continue
            try:
                rel = normalise_record_path(row.path)
            except UnsafePath:
                continue
            target = layout.output_path(rel)
            if not is_nonempty_file(target) or not _same_path(run.resolve(row.dcm_path),
                                                                  target):
                continue  # written somewhere else than this run would write it
            batch.append((rel, normalise_study_id(row.study_id), 1, None, None,
                          describe_file(target)))
            if len(batch) == BLOCK:
                yield batch
                batch = []
    except BatchError:
        pass
    if batch:
        yield batch


def _same_path(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
