"""The one place that chooses what runs the chunks: local worker processes or a Dask cluster.

Both backends have the same interface (:class:`ChunkExecutor`) and run the same chunk
function (:meth:`~wfdb2dicom.batch.work.TaskRunner.run_chunk`); the engine drives whichever
this module starts and never knows which.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
"""The most records in a chunk of the local pool (a message per chunk each way)."""


def chunk_size(config: BatchConfig, n_tasks: int) -> int:
    """Records per chunk: about eight chunks per worker, so the work stays balanced to the
    end, within bounds set by what a chunk costs the backend (more for a Dask task:
    :data:`.dask_pool.CHUNK_RECORDS`)."""
    most = LOCAL_CHUNK_RECORDS
    if config.scheduler:
        from .dask_pool import CHUNK_RECORDS

        most = CHUNK_RECORDS
    return max(8, min(most, n_tasks // (config.workers * 8)))


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
