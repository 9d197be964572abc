"""Prove converted objects lossless: ``wfdb2dicom verify``.

The proof of each object is :mod:`wfdb2dicom.verification`'s (pydicom for the object, wfdb or
the raw file bytes for the source; none of our own reading or writing). This module runs it
over a batch run: in the batch's long-lived workers (:class:`~wfdb2dicom.batch.pool.
WorkerPool`, chunks handed over), with a ledger (``{output_csv}.verified.sqlite``) so that a
killed verify resumes where it stopped and a re-run re-reads only objects whose file or
source changed (size or modification time) since they passed, unless ``--all``.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .errors import ConversionError

if TYPE_CHECKING:
    from .batch.runcsv import RunObject
    from .verification import Covers

CHECKPOINT = 2000
"""Verdicts per ledger commit (``--checkpoint``): a kill loses at most this many."""

POLL_SECONDS = 0.25
"""How often the parent looks at the workers when nothing else wakes it."""

PRELOAD = ("wfdb2dicom.verification", "pydicom", "wfdb")
"""What the pool's fork server imports once, for all workers."""


@dataclass(frozen=True)
class Verdict:
    """The outcome for one object: ``problem`` is None when it passed; ``checked`` is False
    when it passed before and neither it nor its source changed since (not read again)."""

    study_id: str
    dcm_path: str
    problem: str | None
    checked: bool = True


class VerifyTask(NamedTuple):
    """One object to verify, and what of its source it holds."""

    study_id: str
    record_path: str
    """The record (of a multi-segment record: the master record)."""
    dcm_path: str
    signals: tuple[str, ...] | None = None
    """The signals (channel labels) the object holds; None: every signal of the record."""
    segment: int = 1
    """Of a multi-segment record: the segment (from 1, as its master header lists them)."""
    offset_seconds: float | None = None
    """A part of a segment split into several objects: its start after the segment's;
    None: the object spans its whole segment."""
    end_seconds: float | None = None
    """A part's end after the segment's start: where the next part starts; None: at the
    segment's end."""
    problem: str | None = None
    """What the manifest alone shows wrong (its parts of the segment are not numbered 1, 2,
    ...): the verdict, without reading the object."""
    covers: Covers | None = None
    """On a row's first object (of a run with a manifest): every signal the row accounts
    for (:data:`~wfdb2dicom.verification.Covers`), which the check holds to every signal of
    every segment of the record; None: no such check with this object."""

    @property
    def claim(self) -> str:
        """The source and the place in it the object must hold, as the verify ledger keeps
        it: a part's claim changes when a neighbour goes, and a row's first object's when
        any object of the row goes, so an earlier pass is not trusted then. A whole object's
        is its record path alone (as ledgers before parts kept), also when it is its row's
        only object (nothing else of the row can go)."""
        claim = self.record_path
        if self.offset_seconds is not None:
            claim += (f"#segment={self.segment}&from={self.offset_seconds!r}"
                      f"&to={self.end_seconds!r}")
        if self.covers:
            import hashlib

            digest = hashlib.sha256(repr(self.covers).encode()).hexdigest()[:16]
            claim += ("&" if "#" in claim else "#") + f"covers={digest}"
        return claim

    def for_worker(self, task_id: int) -> tuple:
        """What a worker checks (:data:`~wfdb2dicom.verification.Task`)."""
        return (task_id, self.record_path, self.dcm_path, self.signals, self.segment,
                self.offset_seconds, self.end_seconds, self.covers)


def verify_object(record_path: str | Path, dcm_path: str | Path) -> str | None:
    """None when ``dcm_path`` holds ``record_path``'s samples exactly; else the first problem."""
    from .verification import ObjectChecker

    return ObjectChecker().check(os.fspath(record_path), os.fspath(dcm_path)).problem


def read_run(
    output_csv: Path, wfdb_dir: Path, *, study_id_col: str = "study_id", path_col: str = "path",
    dcm_path_col: str = "dcm_path", error_col: str = "dcm_error",
) -> list[VerifyTask]:
    """Every object of a batch run (read by the one reader of a run's CSV,
    :class:`~wfdb2dicom.batch.runcsv.RunCsv`): every line of its manifest when it wrote one,
    each with its signals, segment and span; else each converted row's object, whole.

    A segment cut into parts (of one IOD, in one row) must be covered by them exactly: its
    parts are numbered 1 to n, and each spans from its start (after part 1's, by their
    start times) to the next one's, the last to the segment's end. The object check holds
    each part to its span, so a part missing from the run (its line and file gone) or
    parts that overlap fail a neighbour, naming the study. Rows whose objects are each
    whole (all of MIMIC-IV-ECG) cost nothing more here.

    A row's objects together must hold every signal of every segment of its record, but
    those it lists as left out: its first object carries what the row accounts for
    (:func:`_row_covers`), which its check holds to the record's headers.
    """
    from .batch.runcsv import RunCsv

    run = RunCsv(output_csv, study_id_col=study_id_col, path_col=path_col,
                 dcm_path_col=dcm_path_col, error_col=error_col)
    objects = list(run.iter_objects())
    split = {(o.row, o.segment, o.sop_class_uid) for o in objects if o.part > 1}
    parts: dict[tuple[int, int, str], list[int]] = {key: [] for key in split}
    for index, obj in enumerate(objects):
        if (obj.row, obj.segment, obj.sop_class_uid) in split:
            parts[obj.row, obj.segment, obj.sop_class_uid].append(index)
    spans: dict[int, tuple[float | None, float | None, str | None]] = {}
    for siblings in parts.values():
        spans.update(_part_spans(objects, siblings))
    firsts = _row_covers(objects)
    tasks = []
    for index, obj in enumerate(objects):
        record = Path(obj.record_path)
        if record.suffix in (".hea", ".dat"):
            record = record.with_suffix("")
        offset, end, problem = spans.get(index, (None, None, None))
        tasks.append(VerifyTask(obj.study_id, str(wfdb_dir / record), obj.file,
                                obj.channels or None, obj.segment, offset, end, problem,
                                firsts.get(index)))
    return tasks


def _row_covers(objects: list[RunObject]) -> dict[int, Covers]:
    """``index -> covers`` of each row's first object, of a run that wrote a manifest: per
    segment, each signal label as often as the row accounts for it (held by the objects of
    an IOD, the most any one part holds, summed over IODs; or left out). A row of one object
    and nothing left out (all of MIMIC-IV-ECG) gets ``()``: its object's own signals, which
    the object check reads anyway (nothing more to build, send or hash)."""
    from collections import Counter

    firsts: dict[int, int] = {}
    several: dict[int, list[RunObject]] = {}
    for index, obj in enumerate(objects):
        if not obj.sop_class_uid:  # no manifest: one object per row, nothing to say
            continue
        first = firsts.setdefault(obj.row, index)
        if first != index or obj.left_out:
            several.setdefault(obj.row, [] if first == index else [objects[first]]).append(obj)
    accounted: dict[int, Covers] = {}
    for row, members in several.items():
        held: dict[tuple[int, str], Counter[str]] = {}
        for obj in members:
            most = held.setdefault((obj.segment, obj.sop_class_uid), Counter())
            most |= Counter(obj.channels)  # the most any one part of the IOD holds
        per_segment: dict[int, Counter[str]] = {}
        for (segment, _), labels in held.items():
            per_segment.setdefault(segment, Counter()).update(labels)
        for label, segment in _left_out_signals(members[0].left_out):
            per_segment.setdefault(segment, Counter())[label] += 1
        accounted[row] = tuple(sorted((segment, tuple(sorted(labels.elements())))
                                      for segment, labels in per_segment.items()))
    return {index: accounted.get(row, ()) for row, index in firsts.items()}


def _left_out_signals(text: str) -> list[tuple[str, int]]:
    """``(label, segment)`` of each signal a manifest's ``left_out`` cell names (written as
    ``label (segment N): reason``, joined by :data:`~wfdb2dicom.batch.runcsv.
    LEFT_OUT_SEPARATOR`; a reason that holds the separator continues the entry before)."""
    import re

    from .batch.runcsv import LEFT_OUT_SEPARATOR

    entries = (re.match(r"(.*?) \(segment (\d+)\): ", entry)
               for entry in text.split(LEFT_OUT_SEPARATOR)) if text else ()
    return [(match[1], int(match[2])) for match in entries if match]


def _part_spans(objects: list[RunObject], indexes: list[int],
                ) -> dict[int, tuple[float | None, float | None, str | None]]:
    """``index -> (offset, end, problem)`` of the parts ``objects[indexes]`` of one segment
    and IOD: start and end in seconds after part 1's start (end None: the segment's end),
    or the problem when the parts listed are not numbered 1 to n with a start each."""
    import datetime as dt

    indexes = sorted(indexes, key=lambda i: objects[i].part)
    siblings = [objects[i] for i in indexes]
    numbers = [o.part for o in siblings]
    first = siblings[0]
    problem = None
    if numbers != list(range(1, len(numbers) + 1)):
        missing = sorted(set(range(1, max(numbers) + 1)) - set(numbers))
        problem = (f"segment {first.segment} ({first.modality}) is listed in parts "
                   f"{', '.join(map(str, numbers))}: "
                   + (f"part(s) {', '.join(map(str, missing))} missing from the run"
                      if missing else "a part listed twice"))
    elif not all(o.start for o in siblings):
        problem = f"segment {first.segment} ({first.modality}): a part has no start time"
    if problem is not None:
        return {i: (None, None, problem) for i in indexes}
    try:
        starts = [(dt.datetime.fromisoformat(o.start)
                   - dt.datetime.fromisoformat(first.start)).total_seconds() for o in siblings]
    except ValueError as exc:
        return {i: (None, None, f"a part's start is not ISO 8601: {exc}") for i in indexes}
    ends: list[float | None] = [*starts[1:], None]
    return {i: (start, end, None) for i, start, end in zip(indexes, starts, ends, strict=True)}


def verify_run(tasks: Sequence[tuple], workers: int = 1, progress: bool = True,
               *, ledger: Path | None = None, recheck: bool = False,
               checkpoint: int = CHECKPOINT, timeout: float = 60.0) -> list[Verdict]:
    """Verify every task (:class:`VerifyTask`, or ``(study_id, record path, dcm path)``: the
    whole record); verdicts in input order.

    With ``ledger``, objects that passed before and whose object and source files have the
    size and modification time they had then are not read again (unless ``recheck``), and
    every verdict is committed there, ``checkpoint`` at a time.
    """
    from .batch.ledger import VerifyLedger

    tasks = [t if isinstance(t, VerifyTask) else VerifyTask(*t) for t in tasks]
    verdicts: list[Verdict | None] = [None] * len(tasks)
    for index, task in enumerate(tasks):  # the manifest's own faults: nothing to read
        if task.problem is not None:
            verdicts[index] = Verdict(task.study_id, task.dcm_path, task.problem)
    if ledger is None:
        todo = [i for i, verdict in enumerate(verdicts) if verdict is None]
        _check_all(tasks, todo, verdicts, None, workers, progress, checkpoint, timeout)
    else:
        with VerifyLedger.open(ledger) as book:
            todo = _plan(tasks, verdicts, book, recheck)
            _check_all(tasks, todo, verdicts, book, workers, progress, checkpoint, timeout)
    return [v for v in verdicts if v is not None]


def _plan(tasks: Sequence[VerifyTask], verdicts: list[Verdict | None],
          book: Any, recheck: bool) -> list[int]:
    """Indexes of the tasks to check (those without a verdict yet); the others get their
    earlier verdict (passed)."""
    if recheck:
        return [i for i, verdict in enumerate(verdicts) if verdict is None]
    todo = []
    for start in range(0, len(tasks), 65536):
        part = tasks[start:start + 65536]
        passed = book.passed([task.dcm_path for task in part])
        for index, task in enumerate(part, start):
            if verdicts[index] is not None:
                continue
            before = passed.get(task.dcm_path)
            if before is not None and _unchanged(task, *before):
                verdicts[index] = Verdict(task.study_id, task.dcm_path, None, checked=False)
            else:
                todo.append(index)
    return todo


def _unchanged(task: VerifyTask, claim_then: str, object_stat: str, source_stat: str) -> bool:
    """The object and every source file it was checked against have the size and
    modification time they had then, and the object must still hold the same source and
    place in it (:attr:`VerifyTask.claim`)."""
    if task.claim != claim_then or _stat(task.dcm_path) != object_stat:
        return False
    folder = os.path.dirname(task.record_path)
    for entry in source_stat.split("|"):
        name, size, mtime = entry.rsplit(":", 2)
        if _stat(os.path.join(folder, name)) != f"{size}:{mtime}":
            return False
    return True


def _stat(path: str) -> str | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return f"{info.st_size}:{info.st_mtime_ns}"


def _check_all(tasks: Sequence[VerifyTask], todo: Sequence[int],
               verdicts: list[Verdict | None], book: Any, workers: int, progress: bool,
               checkpoint: int, timeout: float) -> None:
    """Check ``todo`` in the batch's worker pool, committing verdicts to ``book``."""
    from tqdm import tqdm

    from .batch.executor import chunking, drive
    from .batch.outcomes import FAILED
    from .batch.pool import WorkerPool, start_method
    from .verification import VerifyRunner

    bar = tqdm(total=len(todo), unit="obj", disable=not progress, file=sys.stderr)
    if not todo:
        bar.close()
        return
    chunk, n_workers = chunking(len(todo), workers)
    pending: list[tuple] = []

    def commit() -> None:
        if book is not None and pending:
            book.commit(pending)
        pending.clear()

    def record(results: list[tuple]) -> None:
        for task_id, status, problem, *stats in results:
            task = tasks[task_id]
            problem = problem if status == FAILED else None
            if status == FAILED and not problem:
                problem = "UnknownError: the worker gave no reason"
            verdicts[task_id] = Verdict(task.study_id, task.dcm_path, problem)
            object_stat, source_stat = stats if stats else ("", "")
            pending.append((task.dcm_path, task.claim, 0 if problem else 1, problem,
                            object_stat, source_stat))
        bar.update(len(results))
        if checkpoint and len(pending) >= checkpoint:
            commit()

    chunks = ([tasks[i].for_worker(i) for i in todo[start:start + chunk]]
              for start in range(0, len(todo), chunk))
    with WorkerPool(VerifyRunner(), n_workers, timeout, method=start_method(None),
                    preload=PRELOAD) as pool:
        try:
            drive(pool, chunks, record, POLL_SECONDS)
        finally:
            commit()  # what workers reported is kept; the next run checks the rest
            bar.close()


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "verify",
        help="prove converted objects equal their WFDB source (samples and physical values)",
        description="Read each converted object with pydicom and its WFDB source with the wfdb "
        "package (or as raw bytes): stored samples bit for bit (a format-16 signal file "
        "against the Waveform Data bytes), channel order and labels, the physical mapping "
        "(gain, baseline, units) and the integrity check. Either one record and its object "
        "(verify RECORD FILE.dcm) or every converted row of a batch run (verify --output_csv "
        "RUN.csv; the run's --wfdb_dir is read from its ledger unless given). Verdicts are "
        "kept in {output_csv}.verified.sqlite: a killed verify resumes, and a re-run reads "
        "again only objects whose file or source changed since they passed (--all: every "
        "one). Exit 0 when everything passes, 1 on any failure.",
    )
    parser.add_argument("record", nargs="?", help="WFDB record path (without extension)")
    parser.add_argument("dcm", nargs="?", help="the DICOM object made from it")
    parser.add_argument("--output_csv", type=Path, help="a batch run's output CSV")
    parser.add_argument("--wfdb_dir", type=Path,
                        help="the run's record root (default: what the batch run recorded)")
    parser.add_argument("--study_id_col", default="study_id")
    parser.add_argument("--path_col", default="path")
    parser.add_argument("--dcm_path_col", default="dcm_path")
    parser.add_argument("--error_col", default="dcm_error")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--all", action="store_true", dest="recheck",
                        help="check every object, even those unchanged since they passed")
    parser.add_argument("--checkpoint", type=int, default=CHECKPOINT,
                        help=f"verdicts per ledger commit (default {CHECKPOINT})")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds one object may take before its worker is replaced")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--report", type=Path, help="also write every verdict to this CSV")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.output_csv:
        if args.record or args.dcm:
            raise ConversionError("give either RECORD FILE.dcm or --output_csv, not both")
        if args.workers < 1:
            raise ConversionError(f"--workers must be at least 1, not {args.workers}")
        if not args.timeout > 0:
            raise ConversionError(f"--timeout must be positive, not {args.timeout:g}")
        wfdb_dir = args.wfdb_dir
        if wfdb_dir is None:
            from .batch.ledger import recorded_meta

            recorded = recorded_meta(args.output_csv, "wfdb_dir")
            if recorded is None:
                raise ConversionError(
                    "no --wfdb_dir given and none recorded for this run (its ledger is "
                    "missing): give --wfdb_dir, the run's record root"
                )
            wfdb_dir = Path(recorded)
        tasks = read_run(args.output_csv, wfdb_dir, study_id_col=args.study_id_col,
                         path_col=args.path_col, dcm_path_col=args.dcm_path_col,
                         error_col=args.error_col)
        from .batch.ledger import verified_path

        progress = not args.no_progress and sys.stderr.isatty()
        verdicts = verify_run(tasks, args.workers, progress,
                              ledger=verified_path(args.output_csv), recheck=args.recheck,
                              checkpoint=max(args.checkpoint, 0), timeout=args.timeout)
    elif args.record and args.dcm:
        verdicts = [Verdict(Path(args.record).name, args.dcm,
                            verify_object(args.record, args.dcm))]
    else:
        raise ConversionError("give RECORD FILE.dcm, or --output_csv RUN.csv --wfdb_dir DIR")
    failures = [v for v in verdicts if v.problem]
    for verdict in failures:
        print(f"FAIL {verdict.study_id}\t{verdict.dcm_path}\t{verdict.problem}")
    if args.report:
        with args.report.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["study_id", "dcm_path", "result"])
            for v in verdicts:
                writer.writerow([v.study_id, v.dcm_path, v.problem or "PASS"])
    unchanged = sum(not v.checked for v in verdicts)
    print(f"verified {len(verdicts)} objects: {len(verdicts) - len(failures)} passed, "
          f"{len(failures)} failed ({len(verdicts) - unchanged} checked now, {unchanged} "
          "unchanged since they passed)")
    return 1 if failures else 0
