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
from typing import Any

from .errors import ConversionError

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


def verify_object(record_path: str | Path, dcm_path: str | Path) -> str | None:
    """None when ``dcm_path`` holds ``record_path``'s samples exactly; else the first problem."""
    from .verification import ObjectChecker

    return ObjectChecker().check(os.fspath(record_path), os.fspath(dcm_path)).problem


def read_run(
    output_csv: Path, wfdb_dir: Path, *, study_id_col: str = "study_id", path_col: str = "path",
    dcm_path_col: str = "dcm_path", error_col: str = "dcm_error",
) -> list[tuple[str, str, str]]:
    """(study_id, record path, object path) of every object of a batch run (read by the one
    reader of a run's CSV, :class:`~wfdb2dicom.batch.runcsv.RunCsv`)."""
    from .batch.runcsv import RunCsv

    run = RunCsv(output_csv, study_id_col=study_id_col, path_col=path_col,
                 dcm_path_col=dcm_path_col, error_col=error_col)
    tasks = []
    for obj in run.iter_objects():
        record = Path(obj.record_path)
        if record.suffix in (".hea", ".dat"):
            record = record.with_suffix("")
        tasks.append((obj.study_id, str(wfdb_dir / record), obj.file))
    return tasks


def verify_run(tasks: Sequence[tuple[str, str, str]], workers: int = 1, progress: bool = True,
               *, ledger: Path | None = None, recheck: bool = False,
               checkpoint: int = CHECKPOINT, timeout: float = 60.0) -> list[Verdict]:
    """Verify every ``(study_id, record path, dcm path)`` task; verdicts in input order.

    With ``ledger``, objects that passed before and whose object and source files have the
    size and modification time they had then are not read again (unless ``recheck``), and
    every verdict is committed there, ``checkpoint`` at a time.
    """
    from .batch.ledger import VerifyLedger

    verdicts: list[Verdict | None] = [None] * len(tasks)
    if ledger is None:
        _check_all(tasks, range(len(tasks)), verdicts, None, workers, progress, checkpoint,
                   timeout)
    else:
        with VerifyLedger.open(ledger) as book:
            todo = _plan(tasks, verdicts, book, recheck)
            _check_all(tasks, todo, verdicts, book, workers, progress, checkpoint, timeout)
    return [v for v in verdicts if v is not None]


def _plan(tasks: Sequence[tuple[str, str, str]], verdicts: list[Verdict | None],
          book: Any, recheck: bool) -> list[int]:
    """Indexes of the tasks to check; the others get their earlier verdict (passed)."""
    if recheck:
        return list(range(len(tasks)))
    todo = []
    for start in range(0, len(tasks), 65536):
        part = tasks[start:start + 65536]
        passed = book.passed([dcm for _, _, dcm in part])
        for index, (study_id, record, dcm) in enumerate(part, start):
            before = passed.get(dcm)
            if before is not None and _unchanged(record, dcm, *before):
                verdicts[index] = Verdict(study_id, dcm, None, checked=False)
            else:
                todo.append(index)
    return todo


def _unchanged(record: str, dcm: str, record_then: str, object_stat: str,
               source_stat: str) -> bool:
    """The object and every source file it was checked against have the size and
    modification time they had then (and the object still comes from the same record)."""
    if record != record_then or _stat(dcm) != object_stat:
        return False
    folder = os.path.dirname(record)
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


def _check_all(tasks: Sequence[tuple[str, str, str]], todo: Sequence[int],
               verdicts: list[Verdict | None], book: Any, workers: int, progress: bool,
               checkpoint: int, timeout: float) -> None:
    """Check ``todo`` in the batch's worker pool, committing verdicts to ``book``."""
    from tqdm import tqdm

    from .batch.outcomes import FAILED
    from .batch.pool import WorkerPool, start_method
    from .verification import VerifyRunner

    bar = tqdm(total=len(todo), unit="obj", disable=not progress, file=sys.stderr)
    if not todo:
        bar.close()
        return
    chunk = max(8, min(128, len(todo) // (workers * 8)))
    n_workers = max(1, min(workers, -(-len(todo) // chunk)))
    pending: list[tuple] = []

    def commit() -> None:
        if book is not None and pending:
            book.commit(pending)
        pending.clear()

    def record(results: list[tuple]) -> None:
        for task_id, status, problem, *stats in results:
            study_id, record_path, dcm_path = tasks[task_id]
            problem = problem if status == FAILED else None
            if status == FAILED and not problem:
                problem = "UnknownError: the worker gave no reason"
            verdicts[task_id] = Verdict(study_id, dcm_path, problem)
            object_stat, source_stat = stats if stats else ("", "")
            pending.append((dcm_path, record_path, 0 if problem else 1, problem,
                            object_stat, source_stat))
        bar.update(len(results))
        if checkpoint and len(pending) >= checkpoint:
            commit()

    chunks = ([(i, *tasks[i][1:]) for i in todo[start:start + chunk]]
              for start in range(0, len(todo), chunk))
    with WorkerPool(VerifyRunner(), n_workers, timeout, method=start_method(None),
                    preload=PRELOAD) as pool:
        try:
            exhausted = False
            while True:
                while not exhausted and pool.queued < pool.n_workers:
                    tasks_of_chunk = next(chunks, None)
                    if tasks_of_chunk is None:
                        exhausted = True
                    else:
                        pool.submit(tasks_of_chunk)
                if exhausted and pool.idle:
                    break
                record(pool.poll(POLL_SECONDS))
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
