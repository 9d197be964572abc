"""One batch run from start to end: plan, convert in workers, checkpoint, report.

The order of things is what makes a run safe to kill at any moment:

1. lock the ledger; bring the error log back to what the ledger committed;
2. plan: read the input, settle duplicates and refusals, skip what is done (ledger + stat);
3. if the last run did not end normally, sweep temporary files its workers left;
4. start the fork server (workers forked from it never carry the plan or the table) and
   load the metadata table while it imports what workers need; start the workers;
5. commit the run's header (``state=running``); hand out chunks; at every ``--checkpoint``
   rows, append the new error-log lines, then commit results + log size in one transaction;
6. commit the end (``state=finished``); render the output CSV once, atomically; summarise.

Whatever a kill interrupts, the next run redoes exactly the rows the ledger lacks; the
conversion is deterministic and the writes atomic, so redoing is invisible in the output.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from ..atomic import sweep_temps
from . import BatchError, outcomes
from .ledger import Entry, Ledger, ledger_path
from .outcomes import MISSING_METADATA, Result
from .paths import Layout
from .plan import Plan, adopt_seed_output, build_plan, read_input
from .report import (
    CONVERTED,
    FAILED,
    SKIPPED,
    ErrorLog,
    Summary,
    log_entry,
    run_header,
    write_output_csv,
)
from .work import OptionValues

PRELOAD = ("wfdb2dicom.convert", "wfdb2dicom.batch.work")
"""What the worker pool's fork server imports once, for all workers."""

POLL_SECONDS = 0.25
"""How often the parent looks at the workers when nothing else wakes it."""


@dataclass(frozen=True)
class BatchConfig:
    """Everything a run needs; the command line's flags, with the seed's defaults."""

    input_csv: Path
    output_csv: Path
    wfdb_dir: Path
    dcm_dir: Path
    metadata: Path | None = None
    metadata_format: str = "auto"
    """``--metadata-format``: the table's source, or ``auto`` (told by its columns)."""
    study_id_col: str = "study_id"
    path_col: str = "path"
    dcm_path_col: str = "dcm_path"
    error_col: str = "dcm_error"
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    timeout: float = 60.0
    checkpoint: int = 2000
    overwrite: bool = False
    verify_existing: bool = False
    error_log: Path | None = None
    options: OptionValues = field(default_factory=OptionValues)
    start_method: str | None = None
    progress: bool | None = None
    """Show the progress bar: None = only when stderr is a terminal."""

    @property
    def error_log_path(self) -> Path:
        return self.error_log or Path(f"{self.output_csv}.errors.log")


def check_config(config: BatchConfig) -> None:
    """Refuse bad arguments before anything is written (exit status 2 in the CLIs)."""
    if not config.input_csv.is_file():
        raise BatchError(f"input CSV not found: {config.input_csv}")
    if not config.wfdb_dir.is_dir():
        raise BatchError(f"--wfdb_dir is not a directory: {config.wfdb_dir}")
    if config.dcm_dir.exists() and not config.dcm_dir.is_dir():
        raise BatchError(f"--dcm_dir is not a directory: {config.dcm_dir}")
    if config.metadata is not None and not config.metadata.is_file():
        raise BatchError(f"metadata file not found: {config.metadata}")
    if config.metadata is not None:  # a table of no known source: refused before any work
        from ..sources import resolve_format

        resolve_format(config.metadata, config.metadata_format)
    if config.workers < 1:
        raise BatchError(f"--workers must be at least 1, not {config.workers}")
    if not config.timeout > 0:
        raise BatchError(f"--timeout must be positive, not {config.timeout:g}")
    if config.checkpoint < 0:
        raise BatchError(f"--checkpoint must be 0 (off) or more, not {config.checkpoint}")
    if config.dcm_path_col == config.error_col:
        raise BatchError("--dcm_path_col and --error_col must differ")
    if config.options.uid_root is not None:  # else every row would fail the same way
        from ..uids import check_uid_root

        check_uid_root(config.options.uid_root)


def load_metadata(path: Path, *, stderr: TextIO, metadata_format: str | None = None) -> Any:
    """The metadata table; its warnings (the seed's pickle) shown as one line each."""
    from ..metadata import MetadataTable

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = MetadataTable.load(path, metadata_format)
    for warning in caught:
        print(f"warning: {warning.message}", file=stderr)
    return table


def release_free_memory() -> None:
    """Give the C heap's free pages back to the system (glibc's ``malloc_trim``).

    Planning 800,000 rows frees many short-lived arrays and strings in between ones that
    live on; glibc keeps the gaps, about 40 MB at that size, and every worker forked
    afterwards would carry them in its resident size. Elsewhere (musl, macOS) a no-op.
    """
    import ctypes

    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (AttributeError, OSError):
        pass


def run_batch(config: BatchConfig, *, stdout: TextIO | None = None,
              stderr: TextIO | None = None) -> Summary:
    """Run (or resume) a batch; the summary's ``exit_status`` is the CLI's exit status."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    started = time.monotonic()
    check_config(config)
    config.dcm_dir.mkdir(parents=True, exist_ok=True)
    config.output_csv.parent.mkdir(parents=True, exist_ok=True)
    layout = Layout(config.wfdb_dir, config.dcm_dir)
    with Ledger.open(ledger_path(config.output_csv)) as ledger:
        ledger.set_meta("wfdb_dir", layout.wfdb_root)  # lets `wfdb2dicom verify` find sources
        log = ErrorLog(config.error_log_path)
        for done_by_us in (config.output_csv, log.path):  # a kill while they were replaced
            sweep_temps(str(done_by_us))
        log.reconcile(ledger)
        if not ledger.existed and config.output_csv.is_file():
            for batch in adopt_seed_output(
                config.output_csv, layout, study_id_col=config.study_id_col,
                path_col=config.path_col, dcm_path_col=config.dcm_path_col,
                error_col=config.error_col,
            ):
                ledger.commit(batch)
        # A killed run may have left temporary files; so may a run from before the ledger.
        may_have_temps = ledger.state == "running" or (
            not ledger.existed and any(True for _ in os.scandir(config.dcm_dir)))
        rows = read_input(config.input_csv, config.study_id_col, config.path_col)
        plan = build_plan(rows, ledger, layout, overwrite=config.overwrite,
                          verify_existing=config.verify_existing)
        rows.path_hashes = np.empty(0, np.int64)  # planning's alone (6 MB per 800,000 rows)
        release_free_memory()  # before workers fork: they would count it as their own
        run = Run(config, plan, layout, ledger, log, stderr)
        if may_have_temps:
            run.sweep_temps()
        run.execute()
        run.finish()
    summary = run.summary
    summary.seconds = time.monotonic() - started
    print(summary.render(output_csv=str(config.output_csv), error_log=str(log.path),
                         dcm_dir=str(config.dcm_dir)), file=stdout)
    return summary


class Run:
    """The mutable state of one run: task status, pending checkpoint, counts."""

    def __init__(self, config: BatchConfig, plan: Plan, layout: Layout, ledger: Ledger,
                 log: ErrorLog, stderr: TextIO) -> None:
        self.config = config
        self.plan = plan
        self.layout = layout
        self.ledger = ledger
        self.log = log
        self.stderr = stderr
        self.status = np.where(plan.done, SKIPPED, 0).astype(np.int8)
        self.inflight: dict[int, tuple[str, str]] = {}
        self.entries: list[Entry] = []
        self.log_lines: list[str] = []
        self.since_checkpoint = 0
        self.summary = Summary(rows=plan.rows.n_rows,
                               skipped=int(plan.task_n_rows[plan.done].sum()))
        self.bar: Any = None
        self._resolved_format: str | None = None

    # -- phases -------------------------------------------------------------------------

    def sweep_temps(self) -> None:
        """Remove temporary files killed workers left beside the outputs still to do."""
        todo = self.plan.todo_tasks()
        for start in range(0, len(todo), 65536):
            paths, _ = self.plan.task_values(todo[start:start + 65536])
            for rel in paths:
                sweep_temps(self.layout.output_path(rel))

    def execute(self) -> None:
        todo = self.plan.todo_tasks()
        if not len(todo):
            self._begin()
            return
        from .pool import WorkerPool, start_fork_server, start_method
        from .work import TaskRunner

        method = start_method(self.config.start_method)
        table = None
        if method == "forkserver":  # its imports run while the table loads
            start_fork_server(PRELOAD)
            table = self._metadata_table()
        elif method == "fork":
            from .. import convert  # noqa: F401 - loaded once, before the workers fork
        chunk = max(8, min(128, len(todo) // (self.config.workers * 8)))
        n_workers = min(self.config.workers, -(-len(todo) // chunk))
        with WorkerPool(TaskRunner(self.layout, self._worker_options()), n_workers,
                        self.config.timeout, method=method, preload=PRELOAD) as pool:
            if method != "forkserver":  # after the workers start: fork would copy it to each
                table = self._metadata_table()
            self._begin()
            self.bar = _progress_bar(self.plan.todo_rows(), self.config.progress, self.stderr)
            self.bar.update(len(self.plan.row_errors))
            try:
                self._drive(pool, todo, chunk, table)
            except BaseException:
                self.checkpoint()  # keep what workers reported; the next run redoes the rest
                raise
            finally:
                self.bar.close()

    def _metadata_table(self) -> Any:
        if self.config.metadata is None:
            return None
        return load_metadata(self.config.metadata, stderr=self.stderr,
                             metadata_format=self._metadata_format())

    def _metadata_format(self) -> str:
        """The table's source, told by its first line: workers must know it before the
        table is loaded (they may start first)."""
        if self._resolved_format is None:
            from ..sources import resolve_format

            assert self.config.metadata is not None
            self._resolved_format = resolve_format(self.config.metadata,
                                                   self.config.metadata_format)
        return self._resolved_format

    def _worker_options(self) -> OptionValues:
        if self.config.metadata is None:
            return self.config.options
        return replace(self.config.options, metadata_format=self._metadata_format())

    def finish(self) -> None:
        """The last checkpoint, marking the run finished; then the output CSV."""
        self.checkpoint(state="finished")
        write_output_csv(
            self.plan, self.status, self.ledger, self.layout,
            input_csv=self.config.input_csv, output_csv=self.config.output_csv,
            dcm_path_col=self.config.dcm_path_col, error_col=self.config.error_col,
        )

    # -- internals ----------------------------------------------------------------------

    def _begin(self) -> None:
        """The run's log header and the rows refused before any work, committed at once."""
        self.log_lines.append(run_header(self.plan.todo_rows(), dt.datetime.now()))
        for row, error in sorted(self.plan.row_errors.items()):
            self.log_lines.append(log_entry(*self.plan.raw_values(row), error))
            self.summary.add_failure(error)
        self.checkpoint(state="running")

    def _drive(self, pool: Any, todo: np.ndarray, chunk: int, table: Any) -> None:
        chunks = self._chunks(todo, chunk, table)
        exhausted = False
        while True:
            while not exhausted and pool.queued < pool.n_workers:
                tasks = next(chunks, None)
                if tasks is None:
                    exhausted = True
                else:
                    pool.submit(tasks)
            if exhausted and pool.idle:
                break
            self._record(pool.poll(POLL_SECONDS))

    def _chunks(self, todo: np.ndarray, size: int, table: Any):
        """Tasks in chunks, metadata joined in bulk; studies without metadata fail here."""
        verify = self.plan.verify
        for start in range(0, len(todo), size):
            block = todo[start:start + size]
            paths, sids = self.plan.task_values(block)
            metadata = table.raw_rows(sids) if table is not None else [None] * len(sids)
            tasks, missing = [], []
            for task, rel, sid, meta, check in zip(block.tolist(), paths, sids, metadata,
                                                   verify[block].tolist(), strict=True):
                self.inflight[task] = (rel, sid)
                if table is not None and meta is None:
                    missing.append((task, outcomes.FAILED, MISSING_METADATA))
                else:
                    tasks.append((task, rel, sid, meta, check))
            if missing:
                self._record(missing)
            yield tasks

    def _record(self, results: list[Result]) -> None:
        plan, summary = self.plan, self.summary
        n_done = 0
        task_rows = plan.task_n_rows[[task for task, _, _ in results]].tolist()
        for (task, outcome, error), n_rows in zip(results, task_rows, strict=True):
            rel, sid = self.inflight.pop(task)
            n_done += n_rows
            if outcome == outcomes.DONE:
                self.status[task] = CONVERTED
                self.entries.append((rel, sid, 1, None))
                summary.converted += n_rows
            elif outcome == outcomes.KEPT:
                self.status[task] = SKIPPED
                summary.skipped += n_rows
            else:
                error = error or "UnknownError: the worker gave no reason"
                self.status[task] = FAILED
                self.entries.append((rel, sid, 0, error))
                summary.add_failure(error, n_rows)
                for row in plan.rows_of(task):
                    self.log_lines.append(log_entry(*plan.raw_values(row, sid, rel), error))
                if error.startswith(("Timeout>", "WorkerCrash")):
                    sweep_temps(self.layout.output_path(rel))  # a kill can land mid-write
        if n_done:
            self.since_checkpoint += n_done
            if self.bar is not None:
                self.bar.set_postfix_str(f"errors={summary.failed}", refresh=False)
                self.bar.update(n_done)
            if self.config.checkpoint and self.since_checkpoint >= self.config.checkpoint:
                self.checkpoint()

    def checkpoint(self, state: str | None = None) -> None:
        """Append the new log lines, then commit them with the results (one transaction)."""
        text = "".join(self.log_lines)
        size = self.log.append(text) if text else None
        self.ledger.commit(self.entries, log_path=self.log.key, log_text=text, log_size=size,
                           state=state)
        self.entries, self.log_lines, self.since_checkpoint = [], [], 0


def _progress_bar(total: int, enabled: bool | None, stream: TextIO) -> Any:
    from tqdm import tqdm

    class Bar(tqdm):  # no monitor thread: the parent forks replacement workers
        monitor_interval = 0

    return Bar(total=total, unit="rec", desc="converting", file=stream, smoothing=0.1,
               mininterval=0.5, dynamic_ncols=True,
               disable=None if enabled is None else not enabled)
