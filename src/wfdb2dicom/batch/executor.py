"""The one place that chooses what runs the chunks: local worker processes or a Dask cluster.

Both backends have the same interface (:class:`ChunkExecutor`) and run the same chunk
function (:meth:`~wfdb2dicom.batch.work.TaskRunner.run_chunk`); the engine drives whichever
this module starts and never knows which.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from .outcomes import Result

if TYPE_CHECKING:
    from .engine import BatchConfig

PRELOAD = ("wfdb2dicom.convert", "wfdb2dicom.batch.work")
"""What the local worker pool's fork server imports once, for all workers."""


class ChunkExecutor(Protocol):
    """Runs chunks of tasks; every submitted task comes back from :meth:`poll` exactly
    once as ``(task_id, status, error)``, even when its worker hangs or dies."""

    @property
    def n_workers(self) -> int: ...

    @property
    def queued(self) -> int: ...

    @property
    def idle(self) -> bool: ...

    def submit(self, chunk: Sequence[tuple]) -> None: ...

    def poll(self, wait: float) -> list[Result]: ...

    def close(self) -> None: ...

    def __enter__(self) -> ChunkExecutor: ...

    def __exit__(self, *exc: object) -> None: ...


LOCAL_CHUNK_RECORDS = 128
"""The most tasks in a chunk of the local pool (a message per chunk each way)."""


def chunk_limit(config: BatchConfig) -> int:
    """The most tasks in a chunk for the run's backend: a Dask task costs more than a
    message of the local pool (:data:`.dask_pool.CHUNK_RECORDS`)."""
    if config.scheduler:
        from .dask_pool import CHUNK_RECORDS

        return CHUNK_RECORDS
    return LOCAL_CHUNK_RECORDS


def prepare_executor(config: BatchConfig) -> None:
    """Start what the run's executor needs and another process can make while the parent
    plans: ``--scheduler local``'s fork server, whose imports (``distributed`` and the
    converter, ~1 s of CPU) then overlap the plan instead of delaying the first chunk. The
    local engine starts its own fork server later (:func:`start_executor`), unchanged."""
    if config.scheduler == "local":
        from .dask_pool import start_worker_server

        start_worker_server()


def start_executor(config: BatchConfig, runner: Any, n_workers: int,
                   load_table: Callable[[], Any]) -> tuple[ChunkExecutor, Any]:
    """Start the run's executor, and load the metadata table (``load_table``) when it
    costs the workers least; the executor and the table."""
    if config.scheduler:
        from .dask_pool import DaskPool

        table = load_table()  # the cluster's workers never see the parent's memory
        return DaskPool(runner, n_workers, config.timeout, config.scheduler), table
    from .pool import WorkerPool, start_fork_server, start_method

    method = start_method(config.start_method)
    table = None
    if method == "forkserver":  # its imports run while the table loads
        start_fork_server(PRELOAD)
        table = load_table()
    elif method == "fork":
        from .. import convert  # noqa: F401 - loaded once, before the workers fork
    pool = WorkerPool(runner, n_workers, config.timeout, method=method, preload=PRELOAD)
    if method != "forkserver":  # after the workers start: fork would copy it
        try:
            table = load_table()
        except BaseException:
            pool.close()
            raise
    return pool, table


def chunking(n_tasks: int, workers: int,
             most: int = LOCAL_CHUNK_RECORDS) -> tuple[int, int]:
    """``(tasks per chunk, workers to start)`` for ``n_tasks``: about eight chunks per
    worker (a hang or crash costs a re-run of one small chunk), 8 to ``most`` tasks each
    (one message per tens of tasks; see :func:`chunk_limit`), and no more workers than
    there are chunks."""
    chunk = max(8, min(most, n_tasks // (workers * 8)))
    return chunk, max(1, min(workers, -(-n_tasks // chunk)))


def drive(executor: ChunkExecutor, chunks: Iterator[list[tuple]],
          on_results: Callable[[list[Result]], None], poll_seconds: float) -> None:
    """Run every chunk of ``chunks`` on ``executor`` and hand each :meth:`poll`'s results
    to ``on_results``, until every task is back. Chunks are taken from the iterator only
    while fewer than one per worker wait (so a plan of 800,000 rows is never queued whole);
    ``on_results`` is called at least every ``poll_seconds``, also with no results, so a
    caller can do its periodic work there (the batch's checkpoints)."""
    exhausted = False
    while True:
        while not exhausted and executor.queued < executor.n_workers:
            chunk = next(chunks, None)
            if chunk is None:
                exhausted = True
            else:
                executor.submit(chunk)
        if exhausted and executor.idle:
            break
        on_results(executor.poll(poll_seconds))
