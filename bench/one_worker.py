"""One worker's work, in this process alone: what bench/throughput.py traces for its
deterministic cost figures (system calls with strace, instructions with valgrind).

    python bench/one_worker.py floor  LISTING SRC DST
    python bench/one_worker.py batch  LISTING SRC DST METADATA [--stages]
    python bench/one_worker.py verify RUN.csv SRC [--stages]

It runs the code a worker runs, as the pool hands it over (chunks of 128), with no parent
polling the pool beside it: the floor's copy loop, the batch's ``TaskRunner``, verify's
``VerifyRunner``. Run at two sizes, the difference is the cost of the extra records alone
(start-up and imports cancel). ``--stages`` prints where the time went, by stage, measured
in this process (the batch's from the heartbeat the runner gives before each step of each
record: its order within a chunk is fixed, see ``TaskRunner.run_chunk``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

CHUNK = 128
BATCH_STAGES = ("prepare", "read", "map", "check", "encode", "write")


class HeartbeatClock:
    """Time between the runner's heartbeats, charged to the stage each heartbeat opens."""

    def __init__(self) -> None:
        self.ns = dict.fromkeys(BATCH_STAGES, 0)
        self._stage: str | None = None
        self._since = 0

    def beat(self, stage: str | None) -> None:
        now = time.perf_counter_ns()
        if self._stage is not None:
            self.ns[self._stage] += now - self._since
        self._stage, self._since = stage, now

    def report(self, records: int) -> str:
        total = sum(self.ns.values()) or 1
        lines = [f"  {name:15s} {ns / records / 1e3:8.1f} µs/record  {100 * ns / total:5.1f}%"
                 for name, ns in self.ns.items()]
        lines.append(f"  {'total':15s} {total / records / 1e3:8.1f} µs/record ({records} records)")
        return "\n".join(lines)


def heartbeat_stages(n_tasks: int, group: int) -> list[str]:
    """The stage of each heartbeat of a chunk of ``n_tasks`` records that all convert."""
    stages = ["prepare"] * n_tasks
    for start in range(0, n_tasks, group):
        size = min(group, n_tasks - start)
        for stage in BATCH_STAGES[1:]:
            stages += [stage] * size
    return stages


def run_floor(listing: str, src: str, dst: str) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from floor import copy_slice

    copy_slice((Path(listing).read_text().split(), src, dst))


def run_batch(listing: str, src: str, dst: str, metadata: str, stages: bool = False) -> None:
    from wfdb2dicom.batch.paths import Layout
    from wfdb2dicom.batch.work import STAGE_GROUP, OptionValues, TaskRunner
    from wfdb2dicom.metadata import MetadataTable

    rels = Path(listing).read_text().split()
    table = MetadataTable.load(metadata)
    runner = TaskRunner(Layout(Path(src), Path(dst)), OptionValues())
    runner.setup()
    clock = HeartbeatClock()
    for start in range(0, len(rels), CHUNK):
        part = rels[start:start + CHUNK]
        sids = [Path(rel).name for rel in part]
        rows = table.raw_rows(sids)
        tasks = [(start + i, rel, sid, row, False)
                 for i, (rel, sid, row) in enumerate(zip(part, sids, rows, strict=True))]
        timed = stages and start > 0  # the first chunk pays for one-time caches: not a stage's
        beats = iter(heartbeat_stages(len(tasks), STAGE_GROUP))
        results = runner.run_chunk(tasks, (lambda task_id, beats=beats: clock.beat(next(beats)))
                                   if timed else (lambda task_id: None))
        clock.beat(None)
        for _, _, error, *_ in results:  # (task, status, error, files, objects...)
            if error:
                raise SystemExit(f"batch worker failed: {error}")
    if stages:
        print(clock.report(len(rels) - CHUNK))


def run_verify(run_csv: str, src: str, stages: bool) -> None:
    from wfdb2dicom.verification import StageClock, VerifyRunner
    from wfdb2dicom.verify import read_run

    tasks = read_run(Path(run_csv), Path(src))
    runner = VerifyRunner()
    runner.setup()
    checker = runner._checker
    # the first objects pay for one-time parses: not a stage's cost
    runner.run_chunk([task.for_worker(i) for i, task in enumerate(tasks[:8])], lambda task_id: None)
    checker.clock = StageClock()
    for start in range(0, len(tasks), CHUNK):
        chunk = [task.for_worker(start + i) for i, task in enumerate(tasks[start:start + CHUNK])]
        for _, _, problem, *_ in runner.run_chunk(chunk, lambda task_id: None):
            if problem:
                raise SystemExit(f"verify worker failed: {problem}")
    if stages:
        print(checker.clock.report())


if __name__ == "__main__":
    kind, *rest = sys.argv[1:]
    if kind == "floor":
        run_floor(*rest)
    elif kind == "batch":
        run_batch(*[a for a in rest if a != "--stages"], stages="--stages" in rest)
    elif kind == "verify":
        run_verify(rest[0], rest[1], "--stages" in rest)
    else:
        raise SystemExit(f"unknown kind {kind!r}")
