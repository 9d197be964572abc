"""One batch run from start to end: plan, convert in workers, checkpoint, report.

The order of things is what makes a run safe to kill at any moment:

1. refuse outputs that are one of the run's inputs; lock the ledger (``{ledger}.lock``,
   so of two runs started at once exactly one proceeds); bring the error log back to what
   the ledger committed;
2. plan: read the input, settle duplicates and refusals, skip what is done (ledger + stat);
3. if the last run did not end normally, sweep temporary files its workers left (only
   this run's: temporary names carry :func:`~wfdb2dicom.atomic.run_tag` of the output CSV,
   so a run sharing ``--dcm_dir`` keeps its in-flight files);
4. start the fork server (workers forked from it never carry the plan or the table) and
   load the metadata table while it imports what workers need; start the workers (with
   ``--scheduler local``, the fork server of the cluster's workers was started before 1,
   so its imports overlap the plan: :func:`.executor.prepare_executor`);
5. commit the run's header (``state=running``); hand out chunks; at every ``--checkpoint``
   rows, append the new error-log lines (synced), sync the files converted since the last
   checkpoint (one ``syncfs``, in a thread while work goes on), then commit results + log
   size in one transaction (``synchronous=FULL``): a row the ledger calls done has a file
   that survives a power cut;
6. commit the end (``state=finished``); render the output CSV once, atomically; summarise.

Whatever a kill interrupts, the next run redoes exactly the rows the ledger lacks; the
conversion is deterministic and the writes atomic, so redoing is invisible in the output.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from ..atomic import run_tag, sweep_temps, sync_directory, sync_file, sync_filesystem
from ..errors import ConversionError
from ..fileio import regular_file_problem
from . import BatchError, RunStopped, outcomes
from .executor import prepare_executor
from .ledger import Entry, Ledger, ledger_files, ledger_path
from .outcomes import MISSING_METADATA, Result, internal_error
from .paths import Layout, is_inside
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
from .runcsv import manifest_path
from .work import OptionValues

POLL_SECONDS = 0.25
"""How often the parent looks at the workers when nothing else wakes it."""


@dataclass(frozen=True)
class BatchConfig:
    """Everything a run needs; the command line's flags, with the seed's defaults."""

    input_csv: Path | str
    """A path, or a URL (:mod:`.remote`) fetched once before the run; likewise
    ``metadata``. ``wfdb_dir``/``dcm_dir`` URLs are read and written by the workers."""
    output_csv: Path
    wfdb_dir: Path | str
    dcm_dir: Path | str
    metadata: Path | str | None = None
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
    sync: bool = True
    """Sync converted files before the ledger records them (``--no-sync``: off)."""
    anon: bool = False
    """``--anon``: read object storage without credentials (public buckets)."""
    scheduler: str | None = None
    """``--scheduler``: None = the local worker pool; ``local`` or ``tcp://host:port``:
    chunks run on a Dask cluster (:mod:`.dask_pool`)."""

    @property
    def error_log_path(self) -> Path:
        return self.error_log or Path(f"{self.output_csv}.errors.log")


def make_layout(config: BatchConfig) -> Layout:
    """The run's layout: the local one, or (a URL given) :class:`.remote.RemoteLayout`,
    imported only then."""
    if is_url(config.wfdb_dir) or is_url(config.dcm_dir):
        from .remote import RemoteLayout

        return RemoteLayout(str(config.wfdb_dir), str(config.dcm_dir), anon=config.anon)
    return Layout(config.wfdb_dir, config.dcm_dir)


def is_url(location: Path | str | None) -> bool:
    """A flag's value given as a URL (the CLI keeps those as ``str``, paths as ``Path``)."""
    return isinstance(location, str) and "://" in location


def check_config(config: BatchConfig) -> None:
    """Refuse bad arguments before anything is written (exit status 2 in the CLIs)."""
    if problem := regular_file_problem(config.input_csv):
        raise BatchError(f"input CSV {problem}: {config.input_csv}")
    if not is_url(config.wfdb_dir) and not config.wfdb_dir.is_dir():
        raise BatchError(f"--wfdb_dir is not a directory: {config.wfdb_dir}")
    if not is_url(config.dcm_dir) and config.dcm_dir.exists() and not config.dcm_dir.is_dir():
        raise BatchError(f"--dcm_dir is not a directory: {config.dcm_dir}")
    if config.metadata is not None and (problem := regular_file_problem(config.metadata)):
        raise BatchError(f"metadata file {problem}: {config.metadata}")
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
    check_outputs_are_not_inputs(config)
    if config.options.uid_root is not None:  # else every row would fail the same way
        from ..uids import check_uid_root

        check_uid_root(config.options.uid_root)
    try:
        config.options.check()
    except ConversionError as exc:
        raise BatchError(str(exc)) from None


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` are one file: ``samefile`` where both exist (hard links,
    symlinks), else their resolved paths."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))


def check_outputs_are_not_inputs(config: BatchConfig) -> None:
    """Refuse a run that would write over one of its own inputs: an output CSV, error log
    or ledger file that is the input CSV or the metadata table (the error log appended to
    the input list; the output CSV replacing the table), or an input where a DICOM file
    may be written (``--dcm_dir``, ``*.dcm``)."""
    inputs = [("--input_csv", config.input_csv)]
    if config.metadata is not None:
        inputs.append(("--df_info_pkl", config.metadata))
    outputs = [("--output_csv", config.output_csv), ("--error_log", config.error_log_path)]
    outputs.append(("the manifest", manifest_path(config.output_csv)))
    outputs += [("the ledger", path) for path in ledger_files(config.output_csv)]
    for out_flag, out in outputs:
        for in_flag, source in inputs:
            if _same_file(out, source):
                raise BatchError(f"{out_flag} {out} is {in_flag} {source}: the run would "
                                 "overwrite its own input; choose another path")
    if _same_file(config.output_csv, config.error_log_path):
        raise BatchError(f"--error_log {config.error_log_path} is --output_csv; choose "
                         "another path")
    if is_url(config.dcm_dir):
        return  # an object store: nothing local is written where DICOM objects go
    for in_flag, source in inputs:
        if source.suffix.lower() == ".dcm" and is_inside(os.path.realpath(source),
                                                         os.path.realpath(config.dcm_dir)):
            raise BatchError(f"{in_flag} {source} is inside --dcm_dir {config.dcm_dir}, "
                             "where the run writes .dcm files; move it or choose another "
                             "--dcm_dir")


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
    """Run (or resume) a batch; the CLI's exit status follows from the summary."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    started = time.monotonic()
    with ExitStack() as cleanup:
        if is_url(config.input_csv) or (config.metadata is not None
                                        and is_url(config.metadata)):
            config = fetch_inputs(config, cleanup.enter_context(
                tempfile.TemporaryDirectory(prefix="wfdb2dicom-inputs-")))
        return _run_batch(config, stdout, stderr, started)


def fetch_inputs(config: BatchConfig, directory: str) -> BatchConfig:
    """The input CSV and metadata table given as URLs, copied to ``directory`` (each is
    read once, whole); the config naming the copies."""
    from .remote import fetch_to_local

    fetched = {}
    for name in ("input_csv", "metadata"):
        url = getattr(config, name)
        if url is not None and is_url(url):
            folder = os.path.join(directory, name)
            os.mkdir(folder)
            try:
                fetched[name] = Path(fetch_to_local(url, config.anon, folder))
            except (OSError, ValueError) as exc:
                raise BatchError(f"cannot read {url}: {exc}") from None
    return replace(config, **fetched)


def _run_batch(config: BatchConfig, stdout: TextIO, stderr: TextIO,
               started: float) -> Summary:
    check_config(config)
    prepare_executor(config)
    if not is_url(config.dcm_dir):
        config.dcm_dir.mkdir(parents=True, exist_ok=True)
    layout = make_layout(config)  # after mkdir: the local one resolves --dcm_dir's real path
    config.output_csv.parent.mkdir(parents=True, exist_ok=True)
    with Ledger.open(ledger_path(config.output_csv)) as ledger:
        # lets `wfdb2dicom verify` find sources
        ledger.set_meta("wfdb_dir", getattr(layout, "wfdb_shown", layout.wfdb_root))
        log = ErrorLog(config.error_log_path, sync=config.sync)
        # a kill while they were replaced:
        for done_by_us in (config.output_csv, manifest_path(config.output_csv), log.path):
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
        may_have_temps = not is_url(config.dcm_dir) and (ledger.state == "running" or (
            not ledger.existed and any(True for _ in os.scandir(config.dcm_dir))))
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
    if summary.internal:
        print(f"{summary.internal} rows failed with an internal error (a bug, not bad input): "
              "see InternalError in the error log, and please report it", file=stderr)
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
        self.tag = run_tag(config.output_csv)
        """This run's identity in temporary names."""
        self.unsynced: list[tuple[str, str | None]] = []
        """``(record path, files)`` converted since the last checkpoint (for the fallback
        sync)."""
        self.pending: SyncThenCommit | None = None
        """The last checkpoint, while its files are synced."""

    # -- phases -------------------------------------------------------------------------

    def sweep_temps(self) -> None:
        """Remove temporary files killed workers left beside the outputs still to do."""
        todo = self.plan.todo_tasks()
        for start in range(0, len(todo), 65536):
            paths, _ = self.plan.task_values(todo[start:start + 65536])
            for rel in paths:
                self._sweep_record(rel)

    def _sweep_record(self, rel: str) -> None:
        """Remove this run's temporary files of record ``rel``: of ``<rel>.dcm`` and of
        its objects ``<rel>_s...`` (a worker killed while writing them)."""
        sweep_temps(self.layout.output_path(rel), self.tag, record=True)

    def execute(self) -> None:
        todo = self.plan.todo_tasks()
        if not len(todo):
            self._begin()
            return
        from .executor import chunk_limit, chunking, start_executor
        from .work import TaskRunner

        chunk, n_workers = chunking(len(todo), self.config.workers, chunk_limit(self.config))
        try:
            pool, table = start_executor(
                self.config, TaskRunner(self.layout, self._worker_options(), self.tag),
                n_workers, self._metadata_table)
            with pool:
                self._begin()
                self.bar = _progress_bar(self.plan.todo_rows(), self.config.progress,
                                         self.stderr)
                self.bar.update(len(self.plan.row_errors))
                try:
                    self._drive(pool, todo, chunk, table)
                except BaseException:
                    self.checkpoint(wait=True)  # keep what workers reported; the rest is redone
                    raise
                finally:
                    self.bar.close()
        except BaseException:
            # Interrupted (Ctrl-C, SIGTERM) or stopped: the pool has killed its workers,
            # perhaps mid-write. Leave no temporary file behind.
            for rel, _ in self.inflight.values():
                self._sweep_record(rel)
            raise

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
        self.checkpoint(state="finished", wait=True)
        try:
            write_output_csv(
                self.plan, self.status, self.ledger, self.layout,
                input_csv=self.config.input_csv, output_csv=self.config.output_csv,
                dcm_path_col=self.config.dcm_path_col, error_col=self.config.error_col,
                durable=self.config.sync,
            )
        except OSError as exc:  # disk full, read-only: the ledger has it all; a re-run writes it
            raise RunStopped(self.config.output_csv, exc) from None

    # -- internals ----------------------------------------------------------------------

    def _begin(self) -> None:
        """The run's log header and the rows refused before any work, committed at once."""
        self.log_lines.append(run_header(self.plan.todo_rows(), dt.datetime.now()))
        for row, error in sorted(self.plan.row_errors.items()):
            self.log_lines.append(log_entry(*self.plan.raw_values(row), error))
            self.summary.add_failure(error)
        self.checkpoint(state="running")

    def _drive(self, pool: Any, todo: np.ndarray, chunk: int, table: Any) -> None:
        from .executor import drive

        def record_and_settle(results: list[Result]) -> None:
            self._record(results)
            self.settle(wait=False)

        drive(pool, self._chunks(todo, chunk, table), record_and_settle, POLL_SECONDS)

    def _chunks(self, todo: np.ndarray, size: int, table: Any):
        """Tasks in chunks, metadata joined in bulk; studies without metadata fail here."""
        verify = self.plan.verify
        for start in range(0, len(todo), size):
            block = todo[start:start + size]
            paths, sids = self.plan.task_values(block)
            metadata = table.raw_rows(sids) if table is not None else [None] * len(sids)
            checks: list[Any] = verify[block].tolist()
            if any(checks):  # --verify-existing: every file the ledger has of the record
                recorded = self.ledger.objects_of(paths)
                checks = [(recorded[rel][0],) if check and rel in recorded else False
                          for rel, check in zip(paths, checks, strict=True)]
            tasks, missing = [], []
            for task, rel, sid, meta, check in zip(block.tolist(), paths, sids, metadata,
                                                   checks, strict=True):
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
        task_rows = plan.task_n_rows[[result[0] for result in results]].tolist()
        for result, n_rows in zip(results, task_rows, strict=True):
            task, outcome, error = result[:3]
            rel, sid = self.inflight.pop(task)
            n_done += n_rows
            if outcome == outcomes.DONE:
                _, _, _, files, objects, n_left_out = result
                self.status[task] = CONVERTED
                self.entries.append((rel, sid, 1, None, files, objects))
                self.unsynced.append((rel, files))
                summary.converted += n_rows
                summary.left_out += n_left_out
            elif outcome == outcomes.KEPT:
                self.status[task] = SKIPPED
                summary.skipped += n_rows
            else:
                error = error or internal_error("the worker gave no reason")
                self.status[task] = FAILED
                self.entries.append((rel, sid, 0, error, None, None))
                summary.add_failure(error, n_rows)
                for row in plan.rows_of(task):
                    self.log_lines.append(log_entry(*plan.raw_values(row, sid, rel), error))
                if error.startswith(("Timeout>", "WorkerCrash")):
                    self._sweep_record(rel)  # a kill mid-write
        if n_done:
            self.since_checkpoint += n_done
            if self.bar is not None:
                self.bar.set_postfix_str(f"errors={summary.failed}", refresh=False)
                self.bar.update(n_done)
            if self.config.checkpoint and self.since_checkpoint >= self.config.checkpoint:
                self.checkpoint()

    def checkpoint(self, state: str | None = None, *, wait: bool = False) -> None:
        """Append the new log lines (synced), sync the files converted since the last
        checkpoint, then commit them with the results (one transaction).

        The files are synced in a thread (:class:`SyncThenCommit`) while the parent goes on
        handing out work; the commit follows when the sync is done (:meth:`settle`), and
        before the next checkpoint's. ``wait``: commit before returning (the run's end, an
        interruption).
        """
        text = "".join(self.log_lines)
        size = self.log.append(text) if text else None
        entries, converted = self.entries, self.unsynced
        self.entries, self.log_lines, self.since_checkpoint, self.unsynced = [], [], 0, []

        def commit() -> None:
            self.ledger.commit(entries, log_path=self.log.key, log_text=text, log_size=size,
                               state=state)

        self.settle(wait=True)  # commits stay in order
        if converted and self.config.sync:
            self.pending = SyncThenCommit(lambda: self.sync_outputs(converted), commit)
            if wait:
                self.settle(wait=True)
        else:
            commit()

    def settle(self, *, wait: bool) -> None:
        """Commit the checkpoint whose files were being synced, if the sync is done
        (``wait``: once it is)."""
        pending = self.pending
        if pending is None or not (wait or pending.done()):
            return
        self.pending = None
        pending.finish()

    def sync_outputs(self, records: list[tuple[str, str | None]]) -> None:
        """Make the files converted since the last checkpoint durable, and their directories.

        One ``syncfs`` of ``--dcm_dir``'s file system where Linux has it: workers write
        without syncing (the hot path stays as fast), and one call per checkpoint syncs
        every file, directory and rename of them (``bench/durability.py`` measures it).
        Elsewhere, each file and each directory once.
        """
        if is_url(self.config.dcm_dir):
            return  # an object is durable once its put returns
        try:
            if sync_filesystem(self.layout.dcm_root):
                return
            root = self.layout.dcm_root
            directories = {root}
            for rel, files in records:
                paths = self.layout.object_paths(rel, files)
                for path in paths:
                    sync_file(path)
                folder = os.path.dirname(paths[0])
                while folder not in directories and len(folder) > len(root):
                    directories.add(folder)  # every directory the run may have made
                    folder = os.path.dirname(folder)
            for directory in sorted(directories):
                sync_directory(directory)
        except OSError as exc:
            raise RunStopped(getattr(exc, "filename", None) or self.layout.dcm_root,
                             exc) from None


class SyncThenCommit:
    """A checkpoint whose files a thread syncs, then committed by the parent's thread.

    ``syncfs`` waits for the disk (milliseconds to seconds per checkpoint) and releases
    the GIL: in a thread, the parent keeps its workers fed meanwhile, and the order that
    makes rows durable (synced, then committed) holds. The ledger's connection stays in the
    parent's thread.
    """

    def __init__(self, sync: Callable[[], None], commit: Callable[[], None]) -> None:
        self._commit = commit
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._sync, args=(sync,), daemon=True,
                                        name="wfdb2dicom-sync")
        self._thread.start()

    def _sync(self, sync: Callable[[], None]) -> None:
        try:
            sync()
        except BaseException as exc:  # raised again in the parent's thread, by finish
            self._error = exc

    def done(self) -> bool:
        return not self._thread.is_alive()

    def finish(self) -> None:
        """Wait for the sync, then commit (or raise what stopped the sync)."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        self._commit()


def _progress_bar(total: int, enabled: bool | None, stream: TextIO) -> Any:
    from tqdm import tqdm

    class Bar(tqdm):  # no monitor thread: the parent forks replacement workers
        monitor_interval = 0

    return Bar(total=total, unit="rec", desc="converting", file=stream, smoothing=0.1,
               mininterval=0.5, dynamic_ncols=True,
               disable=None if enabled is None else not enabled)
