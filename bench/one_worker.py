"""One worker's work, in this process alone: what bench/throughput.py traces for its
deterministic cost figures (system calls with strace, instructions with valgrind).

    python bench/one_worker.py floor  LISTING SRC DST
    python bench/one_worker.py batch  LISTING SRC DST METADATA
    python bench/one_worker.py verify RUN.csv SRC [--stages]

It runs the code a worker runs, as the pool hands it over (chunks of 128), with no parent
polling the pool beside it: the floor's copy loop, the batch's ``TaskRunner``, verify's
``VerifyRunner``. Run at two sizes, the difference is the cost of the extra records alone
(start-up and imports cancel). ``--stages`` (verify) prints where the time went, by stage.
"""

from __future__ import annotations

import sys
from pathlib import Path

CHUNK = 128


def run_floor(listing: str, src: str, dst: str) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from floor import copy_slice

    copy_slice((Path(listing).read_text().split(), src, dst))


def run_batch(listing: str, src: str, dst: str, metadata: str) -> None:
    from wfdb2dicom.batch.paths import Layout
    from wfdb2dicom.batch.work import OptionValues, TaskRunner
    from wfdb2dicom.metadata import MetadataTable

    rels = Path(listing).read_text().split()
    table = MetadataTable.load(metadata)
    runner = TaskRunner(Layout(Path(src), Path(dst)), OptionValues())
    runner.setup()
    for start in range(0, len(rels), CHUNK):
        part = rels[start:start + CHUNK]
        sids = [Path(rel).name for rel in part]
        rows = table.raw_rows(sids)
        tasks = [(start + i, rel, sid, row, False)
                 for i, (rel, sid, row) in enumerate(zip(part, sids, rows, strict=True))]
        for _, _, error in runner.run_chunk(tasks, lambda task_id: None):
            if error:
                raise SystemExit(f"batch worker failed: {error}")


def run_verify(run_csv: str, src: str, stages: bool) -> None:
    from wfdb2dicom.verification import StageClock, VerifyRunner
    from wfdb2dicom.verify import read_run

    tasks = read_run(Path(run_csv), Path(src))
    runner = VerifyRunner()
    runner.setup()
    checker = runner._checker
    for warm in tasks[:8]:  # the first objects pay for one-time parses: not a stage's cost
        checker.check(warm[1], warm[2])
    checker.clock = StageClock()
    for start in range(0, len(tasks), CHUNK):
        chunk = [(start + i, record, dcm)
                 for i, (_, record, dcm) in enumerate(tasks[start:start + CHUNK])]
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
        run_batch(*rest)
    elif kind == "verify":
        run_verify(rest[0], rest[1], "--stages" in rest)
    else:
        raise SystemExit(f"unknown kind {kind!r}")
