"""Long-lived worker processes with a hard timeout per task and crash isolation.

Why not ``ProcessPoolExecutor``: a hung task cannot be stopped there without breaking the
whole pool, and a killed worker breaks it too. Here each worker has its own pipe, so killing
one never corrupts a queue the others share, and:

* work goes out in **chunks** (a list of tasks per message) and results come back once per
  chunk, so the parent handles one message per tens of records, not one per record; each
  worker has a second chunk waiting in its pipe (:data:`CHUNKS_IN_FLIGHT`), so it never
  idles while the parent takes its results and answers;
* each worker publishes the id of the task it is running in a shared ``RawArray`` slot
  (``task_id + 1``, 0 when idle). The parent notes when a slot changes; a slot unchanged for
  longer than the timeout means that task hangs: the worker is killed (``Process.kill``,
  portable, no signals needed in the worker) and replaced;
* when a worker dies (killed, segfault), its slot still names the task it was running: that
  task alone gets ``WorkerCrash``. The other tasks of its chunks, finished or not, were never
  reported, so they are queued again (conversion is idempotent: same bytes, atomic write).

Workers and the task runner are module-level and picklable, so this works under
``forkserver`` (the default where there is one, see :func:`start_method`) and ``spawn``
(Windows) as well as ``fork``. The pool knows nothing about the tasks beyond
``task[0]`` being a unique integer id; ``runner(task)`` returns ``(status, error)``. A
runner may instead take a whole chunk, ``runner.run_chunk(chunk, mark)`` returning
``(task_id, status, error)`` per task, calling ``mark(task_id)`` whenever it turns to a
task, so the slot still names the task a hang or crash belongs to. A result may carry more
values after ``error`` (``wfdb2dicom verify``'s file stats); the pool passes them through,
and settles a hung or dead worker's task with the three values alone.
"""

from __future__ import annotations

import multiprocessing as mp
import multiprocessing.connection as mpc
import os
import pickle
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from . import BatchError
from .outcomes import FAILED, Result, timeout_error, worker_crash_error

Runner = Callable[[tuple], tuple[int, "str | None"]]

START_METHOD_ENV = "WFDB2DICOM_START_METHOD"
"""Environment variable that forces a multiprocessing start method (tests use ``spawn``)."""

REAP_SECONDS = 5.0
"""How long to wait for a killed worker to exit before leaving it behind."""

CHUNKS_IN_FLIGHT = 2
"""Chunks sent to a worker before it reports the first: measured, a worker with one waited
4-5% of its time for the next."""

MAX_WORKERS_WINDOWS = 30
"""``connection.wait`` on Windows handles at most 63 objects; we wait on two per worker."""


def start_method(requested: str | None = None) -> str | None:
    """The start method to use: ``requested``, else ``$WFDB2DICOM_START_METHOD``, else
    ``forkserver`` where there is one, else the platform default (``None``).

    ``forkserver`` starts every worker, replacements included, from a small process made
    at the pool's start: a worker never carries a copy of the parent's plan or metadata
    table (with ``fork``, 800,000 input rows add their plan to every worker's memory).
    """
    method = requested or os.environ.get(START_METHOD_ENV) or None
    if method is None and "forkserver" in mp.get_all_start_methods():
        method = "forkserver"
    if method is not None and method not in mp.get_all_start_methods():
        raise BatchError(
            f"start method {method!r} is not available here "
            f"(choose from {', '.join(mp.get_all_start_methods())})"
        )
    return method


PARENTS_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM")
                        if hasattr(signal, name))
"""Signals the parent alone handles. Ctrl-C reaches the whole process group: a fork server
still importing ``preload`` (the first ~0.3 s) printed a KeyboardInterrupt traceback."""


@contextmanager
def parents_signals_held(method: str | None) -> Iterator[None]:
    """Block :data:`PARENTS_SIGNALS` while a child process starts (start ``method``): the
    child inherits the mask and ignores them before unblocking (workers,
    :func:`_worker_main`; the fork server sets SIGINT to ignored and keeps SIGTERM blocked).
    A signal that arrives meanwhile reaches the parent once unblocked.

    multiprocessing's resource tracker, which ``spawn`` and ``forkserver`` start on first
    use, *unblocks* these signals after starting itself: it is started first, outside.
    """
    if not hasattr(signal, "pthread_sigmask"):  # Windows: no process groups to share
        yield
        return
    if method != "fork":
        from multiprocessing import resource_tracker

        resource_tracker.ensure_running()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, PARENTS_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def start_fork_server(preload: Sequence[str] = ()) -> None:
    """Start the ``forkserver`` now, importing ``preload``, without waiting for it.

    The first worker otherwise waits for the server's imports (~0.3 s: pydicom, numpy);
    started early, they run while the parent does other work (loading the metadata table).
    """
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(list(preload))
    from multiprocessing import forkserver

    with parents_signals_held("forkserver"):
        forkserver.ensure_running()


def _exit_with_parent() -> None:
    """Worker watchdog: if the parent dies (even by SIGKILL), leave at once, hung or not."""
    parent = mp.parent_process()
    if parent is None:
        return
    mpc.wait([parent.sentinel])
    os._exit(3)


def _mark(slots: Any, index: int, task_id: int) -> None:
    """Publish the task a worker is on (see the module docstring)."""
    slots[index] = task_id + 1


def _worker_main(index: int, conn: mpc.Connection, slots: Any, runner: Any) -> None:
    """A worker: announce readiness, then run chunks until told to stop (``None``)."""
    for signum in PARENTS_SIGNALS:  # Ctrl-C and SIGTERM are the parent's to handle: it
        signal.signal(signum, signal.SIG_IGN)  # checkpoints, then kills the workers
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, PARENTS_SIGNALS)
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    setup = getattr(runner, "setup", None)
    if setup is not None:
        setup()
    run_chunk = getattr(runner, "run_chunk", None)
    try:
        conn.send(None)  # ready: the parent sends chunks only to workers that can read them
        while True:
            chunk = conn.recv()
            if chunk is None:
                return
            if run_chunk is not None:
                results = run_chunk(chunk, lambda task_id: _mark(slots, index, task_id))
            else:
                results = []
                for task in chunk:
                    slots[index] = task[0] + 1
                    status, error = runner(task)
                    results.append((task[0], status, error))
            slots[index] = 0
            conn.send(results)
    except (EOFError, OSError):  # the parent went away
        return


@dataclass(eq=False)
class _Worker:
    index: int
    process: Any
    conn: Any
    ready: bool = False
    inflight: deque[list[tuple]] = field(default_factory=deque)
    """Chunks sent and not yet reported, oldest (the one running) first."""
    seen: int = 0
    seen_at: float = field(default_factory=time.monotonic)


class WorkerPool:
    """``n_workers`` processes running ``runner`` on chunks of tasks.

    Drive it with :meth:`submit` and :meth:`poll`; every submitted task comes back from
    :meth:`poll` exactly once as ``(task_id, status, error)``, even when its worker hangs or
    dies. Use as a context manager so workers are always stopped.
    """

    def __init__(
        self,
        runner: Runner,
        n_workers: int,
        timeout: float,
        *,
        method: str | None = None,
        preload: Sequence[str] = (),
    ) -> None:
        """``preload``: modules a ``forkserver`` imports once for all its workers."""
        if n_workers < 1:
            raise ValueError("n_workers must be >= 1")
        if sys.platform == "win32":
            n_workers = min(n_workers, MAX_WORKERS_WINDOWS)
        self.timeout = timeout
        self._runner = runner
        self._ctx = mp.get_context(method)
        if preload and self._ctx.get_start_method() == "forkserver":
            self._ctx.set_forkserver_preload(list(preload))
        self._slots = self._ctx.RawArray("q", n_workers)
        self._queue: deque[list[tuple]] = deque()
        self._fruitless_deaths = 0
        self._workers = [self._start(i) for i in range(n_workers)]

    # -- public -------------------------------------------------------------------------

    @property
    def n_workers(self) -> int:
        return len(self._workers)

    @property
    def queued(self) -> int:
        """Chunks waiting for a worker."""
        return len(self._queue)

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing running: every submitted task has been returned."""
        return not self._queue and not any(w.inflight for w in self._workers)

    def submit(self, chunk: Sequence[tuple]) -> None:
        if chunk:
            self._queue.append(list(chunk))

    def poll(self, wait: float) -> list[Result]:
        """Hand out chunks, wait up to ``wait`` seconds for news, return finished results."""
        results: list[Result] = []
        self._dispatch(results)
        handles: list[Any] = [w.conn for w in self._workers]
        handles += [w.process.sentinel for w in self._workers]
        ready = set(mpc.wait(handles, timeout=wait))
        for worker in list(self._workers):
            pipe_ok = self._receive(worker, results) if worker.conn in ready else True
            if worker.process.sentinel in ready or not pipe_ok:
                slot = self._slots[worker.index]  # the task it was running, if any
                self._reap(worker)
                error = worker_crash_error(worker.process.exitcode)
                self._retire(worker, results, slot - 1, error)
        self._check_timeouts(results)
        self._dispatch(results)
        return results

    def close(self) -> None:
        """Stop every worker: politely if idle, by ``kill`` otherwise or if slow to go."""
        for worker in self._workers:
            if not worker.inflight and worker.process.is_alive():
                try:
                    worker.conn.send(None)
                except OSError:
                    pass
        deadline = time.monotonic() + 2.0
        for worker in self._workers:
            if not worker.inflight:
                worker.process.join(max(0.0, deadline - time.monotonic()))
            self._reap(worker, kill=True)
            worker.conn.close()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------

    def _start(self, index: int) -> _Worker:
        self._slots[index] = 0
        parent_end, child_end = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            target=_worker_main,
            args=(index, child_end, self._slots, self._runner),
            name=f"wfdb2dicom-worker-{index}",
            daemon=True,
        )
        with parents_signals_held(self._ctx.get_start_method()):
            process.start()
        child_end.close()  # the worker holds its own end; ours must go for EOF to work
        return _Worker(index, process, parent_end)

    def _dispatch(self, results: list[Result]) -> None:
        for worker in list(self._workers):
            while (self._queue and worker.ready and len(worker.inflight) < CHUNKS_IN_FLIGHT
                   and self._workers[worker.index] is worker):
                chunk = self._queue.popleft()
                if not worker.inflight:  # it was idle: its clock starts now
                    worker.seen = self._slots[worker.index]
                    worker.seen_at = time.monotonic()
                worker.inflight.append(chunk)
                try:
                    worker.conn.send(chunk)
                except OSError:  # died
                    self._reap(worker)
                    self._retire(worker, results, -1, worker_crash_error(
                        worker.process.exitcode))

    def _receive(self, worker: _Worker, results: list[Result]) -> bool:
        """Read one message; False if the worker's pipe broke (it died)."""
        try:
            message = worker.conn.recv()
        except (EOFError, OSError, pickle.UnpicklingError):
            return False
        if message is None:
            worker.ready = True
        else:
            results.extend(message)
            worker.inflight.popleft()
            self._fruitless_deaths = 0
        return True

    @staticmethod
    def _reap(worker: _Worker, *, kill: bool = False) -> None:
        """Make sure a worker is gone (a pipe can break before the process is).

        A process stuck in uninterruptible I/O (a stalled network mount) cannot die until
        the I/O returns; after :data:`REAP_SECONDS` it is left to die on its own, so the
        run never waits on it. Its slot is reused: a killed process never runs our code
        again, so it cannot write there.
        """
        if not kill:
            worker.process.join(1.0)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join(REAP_SECONDS)

    def _check_timeouts(self, results: list[Result]) -> None:
        now = time.monotonic()
        for worker in list(self._workers):
            if not worker.inflight:
                continue
            slot = self._slots[worker.index]
            if slot != worker.seen:
                worker.seen, worker.seen_at = slot, now
            elif slot and now - worker.seen_at > self.timeout:
                self._reap(worker, kill=True)
                # Blame the task only if the worker was still on it when the kill landed.
                blamed = slot - 1 if self._slots[worker.index] == slot else -1
                self._retire(worker, results, blamed, timeout_error(self.timeout))

    def _retire(self, worker: _Worker, results: list[Result], blamed: int, error: str) -> None:
        """Account for a dead worker's chunks and put a fresh worker in its place."""
        # Chunks reported just before the end are complete: nothing to blame or redo.
        while worker.inflight and worker.conn.poll(0) and self._receive(worker, results):
            pass
        if worker.inflight:
            unreported = [task for chunk in worker.inflight for task in chunk]
            worker.inflight.clear()
            remaining = []
            for task in unreported:
                if task[0] == blamed:
                    results.append((blamed, FAILED, error))
                else:
                    remaining.append(task)
            if remaining:
                self._queue.appendleft(remaining)
            if len(remaining) == len(unreported):
                self._note_fruitless_death(worker)
        elif not worker.ready:
            self._note_fruitless_death(worker)
        worker.conn.close()
        self._workers[worker.index] = self._start(worker.index)

    def _note_fruitless_death(self, worker: _Worker) -> None:
        """Workers dying outside any task (e.g. at start-up) would otherwise loop forever."""
        self._fruitless_deaths += 1
        if self._fruitless_deaths > 3 + 2 * len(self._workers):
            raise BatchError(
                "worker processes keep dying before finishing any work (last exit code "
                f"{worker.process.exitcode}); see the messages above"
            )
