"""The batch's chunks as Dask tasks: the same guarantees as :mod:`.pool`, on a cluster.

The parent keeps everything it keeps with the local pool (plan, ledger, checkpoints, error
log, output CSV); only chunks travel. A chunk is one Dask task running
:meth:`~wfdb2dicom.batch.work.TaskRunner.run_chunk`, the local pool's own chunk function:
there is one converter. :class:`DaskPool` has the local pool's interface (``submit``,
``poll``, ``queued``, ``idle``), so the engine does not know which one it drives.

How the guarantees are kept without a shared-memory slot:

* **Heartbeats.** ``run_chunk`` calls ``mark(task_id)`` whenever it turns to a task; on a
  Dask worker, ``mark`` notes it (a store, no message), and a thread of the worker looks
  every :data:`HEARTBEAT_SECONDS` and sends ``(chunk key, task_id, worker address)`` as a
  Dask *event* (``Worker.log_event``: fire-and-forget on the worker's ordered stream to the
  scheduler, which forwards it to this client's ``Client.subscribe_topic`` handler) when the
  task in hand is one it has not sent and either was in hand at its last look too (a slow
  task: reported 1-2 looks after it began) or nothing was sent for the chunk's *liveness*
  period (``min(LIVENESS_SECONDS, timeout / 4)``); and at once when a chunk starts (see
  :func:`beat_due`). A chunk of fast records sends about one event a second, a slow record
  one event. The parent notes the time each chunk's heartbeat last changed.
* **Timeouts.** A running chunk whose heartbeat has not changed for ``timeout`` seconds
  hangs on the task it names: that task gets ``Timeout>{N}s``, the chunk's future is
  cancelled, the rest of the chunk is queued again, and its worker is restarted through
  its nanny (``Client.restart_workers``, in a thread so the run goes on meanwhile).
* **Crashes.** The scheduler publishes ``remove-worker`` events (topic ``all``) with the
  tasks the worker was processing; so does a chunk whose future errs with ``KilledWorker``.
  Either way, the task the chunk's last heartbeat named gets ``WorkerCrash``, the rest is
  queued again as a new chunk, and the old future is cancelled: ``KilledWorker`` never
  reaches the run. The scheduler should not retry a chunk itself
  (``distributed.scheduler.allowed-failures: 0``, which ``--scheduler local`` sets): a
  retry would convert the blamed record anyway (its file would exist beside a
  ``WorkerCrash`` row). Blame is exact for a worker that dies on a record it has been on for
  longer than two looks (2 x :data:`HEARTBEAT_SECONDS`: every hang, every crash in a long
  step); one that dies sooner after turning to a record blames a record before it in its
  chunk, and the record it was on is redone (the local pool, with a shared-memory slot, is
  exact).

``distributed`` is imported only here, only when ``--scheduler`` is given.
"""

from __future__ import annotations

import pickle
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from . import BatchError
from .outcomes import FAILED, Result, timeout_error

HEARTBEAT_SECONDS = 0.1
"""How often a worker's heartbeat thread looks at the task in hand (a load, no message).

A task still in hand after a look is reported (see :func:`beat_due`): 0.1-0.2 s after it
began, the precision of a timeout (``Timeout>{N}s`` comes N to N + 0.2 s after a hung record
began, plus the parent's 0.25 s poll) and of a crash's blame."""

LIVENESS_SECONDS = 1.0
"""How often, at most, a worker busy with fast tasks reports the one in hand: the parent
sees its chunk move on (``timeout / 4`` when that is shorter, so a short ``--timeout`` never
fires on a chunk that moves). A Dask event costs ~2.7 ms of CPU (worker, scheduler, client:
measured): one every 50 ms, as before, took ~5% of a core per busy worker; one a second,
0.3%."""

CHUNKS_IN_FLIGHT = 2
"""Chunks handed to the cluster per worker thread: one running, one waiting (as locally)."""

RESTART_SECONDS = 30.0
"""How long a hung worker's restart may take (the nanny kills a worker that will not stop)."""

CHUNK_RECORDS = 512
"""The most records in a chunk on Dask (the local pool's chunks stop at 128). A Dask task
costs ~10 ms of CPU on a LocalCluster (submit, two scheduler transitions, the gather of its
result, its release: ~6 ms in the parent, ~4 in the worker, measured), ~0.08 ms a record in
chunks of 128, 0.02 in chunks of 512."""

LOCAL_CLUSTER_CONFIG = {
    "distributed.scheduler.allowed-failures": 0,
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "500ms",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.deploy.cluster-repr-interval": "10s",
}
"""Dask settings of ``--scheduler local``'s cluster (its nannies pass them to the workers).

``allowed-failures: 0``: the scheduler must not retry a dead worker's chunk itself (see the
module docstring). The rest turns down what serves a dashboard (off) or diagnostics: the
workers' statistical profiler (a stack sample of every thread each 10 ms: ~6% of a busy
worker's CPU), the event loops' health tick (every 20 ms in the scheduler, each nanny and
each worker), psutil's system monitor (500 ms), the nannies' memory watchdog (100 ms; at 1 s
it still kills a worker past 95% of its memory limit) and the cluster's repr refresh
(500 ms). Measured on an idle 2-worker cluster: 103 ms of CPU a second with Dask's defaults,
19 with these."""

WORKER_PRELOAD = ("wfdb2dicom.batch.fork_server_path", "distributed", "wfdb2dicom.convert",
                  "wfdb2dicom.batch.work", "wfdb2dicom.batch.dask_pool")
"""What ``--scheduler local``'s fork server imports once for all its workers (where there is
a fork server: see :func:`start_worker_server`)."""

DASK_EXTRA = "dask"
"""The optional dependency set that brings Dask: ``pip install 'wfdb2dicom[dask]'``."""

_RUNNERS: dict[str, Any] = {}
"""Per worker process: the runner of each run token, set up once (imports, gc tuning)."""


def import_distributed() -> Any:
    """``distributed``, or a one-line reason naming the extra to install."""
    try:
        import distributed
    except ImportError:
        raise BatchError(
            f"--scheduler needs Dask: pip install 'wfdb2dicom[{DASK_EXTRA}]'") from None
    return distributed


def start_worker_server() -> bool:
    """Start the fork server the LocalCluster's nannies will start workers from, importing
    :data:`WORKER_PRELOAD`, unless it runs already; False where there is none (workers are
    then spawned). :func:`.executor.prepare_executor` calls it while the parent plans.

    Dask spawns each worker by default: a fresh interpreter that imports ``distributed``,
    then, at its first chunk, the converter (~0.9 s of CPU a worker, measured). From a
    fork server that has imported both, a worker, or a hung worker's replacement, starts
    in milliseconds, and the imports run once, while the parent imports ``distributed``.
    """
    import importlib.util
    import multiprocessing

    if ("forkserver" not in multiprocessing.get_all_start_methods()
            or importlib.util.find_spec("distributed") is None):
        return False
    from .pool import start_fork_server

    start_fork_server(WORKER_PRELOAD)
    return True


def beat_due(current: tuple | None, previous: tuple | None, sent: tuple | None,
             since_sent: float, liveness: float) -> bool:
    """Whether the heartbeat thread sends ``current`` (the task in hand) at this look:
    one it has not sent, in hand at the previous look too (``previous``: a slow task, a
    hang's candidate), or nothing sent for ``liveness`` seconds (the chunk moves on)."""
    if current is None or current == sent:
        return False
    return current == previous or since_sent >= liveness


class _Heartbeat:
    """A worker process's heartbeat: ``mark`` notes the task (a store, no message); a
    thread looks every :data:`HEARTBEAT_SECONDS` and sends it as a Dask event when
    :func:`beat_due`. An event per record woke the worker's event loop per record:
    measured, 0.4-0.5 ms of CPU per record in the worker alone, as much again in the
    scheduler and parent."""

    def __init__(self, worker: Any) -> None:
        self.worker = worker
        self.current: tuple[str, str, int] | None = None
        """(topic, chunk key, task_id) of the task in hand; None between chunks."""
        self.liveness = LIVENESS_SECONDS
        """The running chunk's liveness period (see :func:`beat_due`)."""
        self._sent: tuple[str, str, int] | None = None
        self._sent_at = time.monotonic()
        threading.Thread(target=self._run, daemon=True, name="wfdb2dicom-heartbeat").start()

    def send(self, beat: tuple[str, str, int]) -> None:
        topic, key, task_id = beat
        self.worker.log_event(topic, (key, task_id, self.worker.address))
        self._sent, self._sent_at = beat, time.monotonic()

    def _run(self) -> None:
        previous = None
        while True:
            time.sleep(HEARTBEAT_SECONDS)
            beat = self.current
            if beat is not None and beat_due(beat, previous, self._sent,
                                             time.monotonic() - self._sent_at, self.liveness):
                try:
                    self.send(beat)
                except Exception:  # the worker is closing
                    return
            previous = beat


_HEARTBEAT: list[_Heartbeat] = []


def run_chunk_on_worker(token: str, runner: bytes, topic: str, key: str, liveness: float,
                        payload: bytes) -> bytes:
    """The Dask task: ``runner.run_chunk(chunk)``, with heartbeats (:class:`_Heartbeat`).

    The runner, the chunk and its results travel pickled (:func:`pack`): to Dask they are
    one ``bytes`` each, which it neither walks nor re-encodes (see :func:`pack`)."""
    from distributed import get_worker

    cached = _RUNNERS.get(token)
    if cached is None:
        if len(_RUNNERS) > 8:  # runs that ended on a long-lived worker
            _RUNNERS.clear()
        cached = _RUNNERS[token] = pickle.loads(runner)
    chunk: list[tuple] = pickle.loads(payload)
    if not _HEARTBEAT:
        _HEARTBEAT.append(_Heartbeat(get_worker()))
    heartbeat = _HEARTBEAT[0]
    heartbeat.liveness = liveness
    if chunk:  # at once: the parent learns the chunk's worker (and its first task)
        heartbeat.current = (topic, key, chunk[0][0])
        heartbeat.send(heartbeat.current)

    def mark(task_id: int) -> None:
        heartbeat.current = (topic, key, task_id)

    try:
        return pack(cached.run_chunk(chunk, mark))
    finally:
        heartbeat.current = None


def pack(value: Any) -> bytes:
    """``value`` pickled: what travels between the parent and a Dask task.

    Handed a chunk as a list of tuples, ``Client.submit`` walked every value of every task
    (``dask._task_spec.parse_input``, looking for futures) and the worker sent the results
    back through msgpack's per-object fallback; measured on 5,000 records, these were ~30%
    of the parent's main thread and ~15% of a worker's event loop. Pickled, each is one
    ``bytes``, passed through as it is.
    """
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


@dataclass(eq=False)
class _Chunk:
    tasks: list[tuple]
    future: Any
    task_id: int = -1
    """The task the last heartbeat named (-1: not started yet)."""
    worker: str = ""
    beat_at: float = field(default_factory=time.monotonic)


class DaskPool:
    """Chunks of tasks run on a Dask cluster; the interface of :class:`.pool.WorkerPool`.

    ``scheduler``: ``"local"`` (a ``LocalCluster`` of ``n_workers`` processes, one thread
    each, nanny-monitored) or a scheduler address (``tcp://host:8786``).
    """

    def __init__(self, runner: Any, n_workers: int, timeout: float, scheduler: str) -> None:
        local = scheduler == "local"
        fork_server = local and start_worker_server()  # started while the parent planned
        distributed = import_distributed()
        import dask

        self._distributed = distributed
        self.timeout = timeout
        self._liveness = min(LIVENESS_SECONDS, timeout / 4)
        self._runner = pack(runner)
        self._token = uuid.uuid4().hex
        self._topic = f"wfdb2dicom-{self._token}"
        self._cluster = None
        if local:
            config = dict(LOCAL_CLUSTER_CONFIG)
            if fork_server:
                config["distributed.worker.multiprocessing-method"] = "forkserver"
                # Dask would import its optional packages (pandas...) here, to preload
                # them into a fork server that is already running with ours.
                distributed.utils._forkserver_preload_set = True
            with dask.config.set(config):
                self._cluster = distributed.LocalCluster(
                    n_workers=n_workers, threads_per_worker=1, processes=True,
                    dashboard_address=None,
                    # Dask's own log lines say, with tracebacks, what the rows' errors
                    # say in one line: a hung worker's restart logged its tasks "marked
                    # as failed" and the dying worker's broken heartbeat, at ERROR.
                    silence_logs=50,  # logging.CRITICAL
                    # No dashboard, but the scheduler still serves /health on HTTP, at
                    # 8787 by default: a second run printed a warning that it was taken.
                    scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
            address: Any = self._cluster
        else:
            address = scheduler
        try:
            self._client = distributed.Client(address, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            self._close_cluster()
            raise BatchError(f"cannot reach the Dask scheduler {scheduler}: {exc}") from None
        info = self._client.scheduler_info(n_workers=-1)
        threads = sum(w.get("nthreads", 1) for w in info.get("workers", {}).values())
        self._threads = max(1, threads or n_workers)
        self._lock = threading.Lock()
        self._chunks: dict[str, _Chunk] = {}
        self._queue: deque[list[tuple]] = deque()
        self._removed: list[tuple[str, set[str]]] = []
        self._restarts: list[threading.Thread] = []
        self._fruitless_deaths = 0
        """Workers lost in a row before any of their chunks' tasks started."""
        self._wake = threading.Event()
        """Set when a chunk's future is done (in the client's thread): :meth:`poll` wakes."""
        self._client.subscribe_topic(self._topic, self._on_heartbeat)
        self._client.subscribe_topic("all", self._on_cluster_event)

    # -- the pool's interface -------------------------------------------------------------

    @property
    def n_workers(self) -> int:
        return self._threads

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def idle(self) -> bool:
        return not self._queue and not self._chunks

    def submit(self, chunk: Sequence[tuple]) -> None:
        if chunk:
            self._queue.append(list(chunk))

    def poll(self, wait: float) -> list[Result]:
        """Hand out chunks, wait up to ``wait`` seconds for one to finish, return results."""
        results: list[Result] = []
        self._dispatch()
        if self._wake.wait(wait):
            self._wake.clear()
        self._collect(results)
        self._check_crashes(results)
        self._check_timeouts(results)
        self._dispatch()
        return results

    def close(self) -> None:
        for chunk in self._chunks.values():
            chunk.future.cancel()
        for restart in self._restarts:  # a restart asked of a cluster we leave is finished
            restart.join(RESTART_SECONDS)
        try:
            for topic in (self._topic, "all"):
                self._client.unsubscribe_topic(topic)
            self._client.close(timeout=10)
        finally:
            self._close_cluster()

    def __enter__(self) -> DaskPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------

    def _close_cluster(self) -> None:
        if self._cluster is not None:
            self._cluster.close(timeout=10)
            self._cluster = None

    def _on_heartbeat(self, event: tuple[float, Any]) -> None:
        """In the client's event loop thread: the task a chunk is on."""
        key, task_id, worker = event[1]
        with self._lock:
            chunk = self._chunks.get(key)
            if chunk is not None:
                chunk.task_id, chunk.worker, chunk.beat_at = task_id, worker, time.monotonic()

    def _on_cluster_event(self, event: tuple[float, Any]) -> None:
        message = event[1]
        if isinstance(message, dict) and message.get("action") == "remove-worker":
            with self._lock:
                self._removed.append((message.get("worker", ""),
                                      set(message.get("processing-tasks", ()))))

    def _dispatch(self) -> None:
        while self._queue and len(self._chunks) < self._threads * CHUNKS_IN_FLIGHT:
            tasks = self._queue.popleft()
            key = f"wfdb2dicom-chunk-{uuid.uuid4().hex}"
            future = self._client.submit(run_chunk_on_worker, self._token, self._runner,
                                         self._topic, key, self._liveness, pack(tasks),
                                         key=key, pure=False)
            with self._lock:
                self._chunks[key] = _Chunk(tasks, future)
            future.add_done_callback(lambda _: self._wake.set())

    def _collect(self, results: list[Result]) -> None:
        finished = [(k, c) for k, c in self._chunks.items() if c.future.done()]
        for key, chunk in finished:
            status = chunk.future.status
            if status == "finished":
                results.extend(pickle.loads(chunk.future.result()))
                self._forget(key)
                self._fruitless_deaths = 0
            elif status == "error":
                exc = chunk.future.exception()
                if isinstance(exc, self._distributed.KilledWorker):
                    self._crashed(key, results, "worker died (Dask: KilledWorker)")
                else:
                    raise BatchError(f"a Dask worker could not run the conversion: "
                                     f"{type(exc).__name__}: {exc}")
            else:  # cancelled by the cluster (e.g. it restarted): run the chunk again
                self._forget(key)
                self._queue.appendleft(chunk.tasks)

    def _check_crashes(self, results: list[Result]) -> None:
        with self._lock:
            removed, self._removed = self._removed, []
        for worker, keys in removed:
            for key in keys & set(self._chunks):
                chunk = self._chunks[key]
                if chunk.future.status == "finished":
                    continue  # its results are in: nothing to blame
                self._crashed(key, results, f"worker {worker} died")

    def _crashed(self, key: str, results: list[Result], how: str) -> None:
        chunk = self._forget(key)
        self._retire(chunk, results, f"WorkerCrash: {how}")
        if chunk.task_id >= 0:
            self._fruitless_deaths = 0
            return
        self._fruitless_deaths += 1  # workers dying before any work would loop forever
        if self._fruitless_deaths > 3 + 2 * self._threads:
            raise BatchError("Dask workers keep dying before starting any work (last: "
                             f"{how}); see the workers' logs")

    def _check_timeouts(self, results: list[Result]) -> None:
        now = time.monotonic()
        with self._lock:
            hung = [(k, c) for k, c in self._chunks.items()
                    if c.task_id >= 0 and now - c.beat_at > self.timeout
                    and not c.future.done()]
        for key, chunk in hung:
            self._forget(key)
            self._retire(chunk, results, timeout_error(self.timeout))
            restart = threading.Thread(target=self._restart, args=(chunk.worker,),
                                       daemon=True, name="wfdb2dicom-restart")
            restart.start()
            self._restarts.append(restart)

    def _restart(self, worker: str) -> None:
        """Restart a hung worker through its nanny (in a thread: it takes seconds)."""
        try:
            self._client.restart_workers([worker], timeout=RESTART_SECONDS,
                                         raise_for_error=False)
        except Exception:  # closed meanwhile, or the worker left: nothing runs there now
            pass

    def _forget(self, key: str) -> _Chunk:
        with self._lock:
            chunk = self._chunks.pop(key)
        chunk.future.cancel()
        return chunk

    def _retire(self, chunk: _Chunk, results: list[Result], error: str) -> None:
        """The blamed task fails with ``error``; the chunk's others are queued again."""
        remaining = [task for task in chunk.tasks if task[0] != chunk.task_id]
        if len(remaining) < len(chunk.tasks):
            results.append((chunk.task_id, FAILED, error))
        if remaining:
            self._queue.appendleft(remaining)
