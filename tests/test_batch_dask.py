"""``batch --scheduler``: the batch's guarantees on a Dask ``LocalCluster`` of real worker
processes (nanny-monitored), with real FIFOs and real SIGKILLs.

One cluster, started in this process, serves the tests that allow it (they reach it as a
remote scheduler, ``tcp://127.0.0.1:PORT``); the byte-for-byte test uses ``--scheduler
local``, the CLI's own cluster.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_batch import (
    POSIX_FIFO,
    command,
    dicom_files,
    log_entries,
    plant_fifo,
    read_rows,
    run,
    wait_for_fifo_reader,
)

from conftest import sigkill_runs_at_random_points
from wfdb2dicom.batch.dask_pool import HEARTBEAT_SECONDS, beat_due
from wfdb2dicom.synthetic import generate_corpus

if os.environ.get("CI"):  # there, a missing Dask fails the tests (scripts/test.sh installs it)
    import distributed
else:
    distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster() -> Iterator[distributed.LocalCluster]:
    """Two single-threaded worker processes under nannies; a dead chunk is never retried
    by the scheduler (``allowed-failures: 0``, as the README asks of a cluster)."""
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        local = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                         dashboard_address=None, silence_logs=40)
    try:
        yield local
    finally:
        local.close()


def worker_addresses(cluster: distributed.LocalCluster) -> set[str]:
    return set(cluster.scheduler.workers)


def wait_for_workers(cluster: distributed.LocalCluster, n: int) -> None:
    deadline = time.monotonic() + 60
    while len(cluster.scheduler.workers) < n:
        assert time.monotonic() < deadline, "the nanny did not bring the worker back"
        time.sleep(0.1)


def test_dask_output_equals_the_local_engines_byte_for_byte(tmp_path: Path) -> None:
    corpus = generate_corpus(tmp_path / "mimic", 120, seed=11)
    work = tmp_path / "work"
    args = command(corpus, work, "--checkpoint", "25")
    assert run(args).returncode == 0
    reference = tmp_path / "reference"
    work.rename(reference)

    proc = run([*args, "--scheduler", "local"])
    assert proc.returncode == 0, proc.stderr
    assert (work / "out.csv").read_bytes() == (reference / "out.csv").read_bytes()
    manifest = "out.csv.objects.csv"  # the objects manifest (one line per object)
    assert (work / manifest).read_bytes() == (reference / manifest).read_bytes()
    assert len((work / manifest).read_text().splitlines()) > 100
    assert dicom_files(work / "dcm") == dicom_files(reference / "dcm")
    assert log_entries(work / "out.csv.errors.log") == log_entries(
        reference / "out.csv.errors.log")
    assert not list((work / "dcm").rglob("*.tmp"))


@POSIX_FIFO
def test_hung_record_times_out_its_worker_is_restarted_and_the_run_goes_on(
        tmp_path: Path, cluster: distributed.LocalCluster) -> None:
    corpus = generate_corpus(tmp_path / "mimic", 60, seed=3, broken=False)
    hung = corpus.good[20]
    plant_fifo(corpus, hung)
    work = tmp_path / "work"
    wait_for_workers(cluster, 2)
    before = worker_addresses(cluster)
    proc = run(command(corpus, work, "--timeout", "5", "--scheduler",
                       cluster.scheduler_address))
    assert proc.returncode == 0, proc.stderr
    rows = read_rows(work / "out.csv")
    errors = {r["path"]: r["dcm_error"] for r in rows if r["dcm_error"]}
    assert errors == {hung: "Timeout>5s"}
    assert sum(1 for r in rows if r["dcm_path"]) == len(corpus.good) - 1
    wait_for_workers(cluster, 2)
    assert len(before - worker_addresses(cluster)) == 1  # the nanny restarted that one
    assert not list((work / "dcm").rglob("*.tmp"))


@POSIX_FIFO
def test_local_cluster_restarts_each_hung_worker(tmp_path: Path) -> None:
    """``--scheduler local``'s own cluster (workers from a fork server, Dask's settings
    turned down): two records hang in turn on its two workers. Were a hung worker not
    replaced, the second hang would leave no worker and the run would never end."""
    corpus = generate_corpus(tmp_path / "mimic", 60, seed=4, broken=False)
    hung = {corpus.good[10], corpus.good[45]}
    for rel in hung:
        plant_fifo(corpus, rel)
    work = tmp_path / "work"
    proc = run(command(corpus, work, "--timeout", "4", "--scheduler", "local"))
    assert proc.returncode == 0, proc.stderr
    rows = read_rows(work / "out.csv")
    errors = {r["path"]: r["dcm_error"] for r in rows if r["dcm_error"]}
    assert errors == dict.fromkeys(hung, "Timeout>4s")
    assert sum(1 for r in rows if r["dcm_path"]) == len(corpus.good) - 2
    assert not list((work / "dcm").rglob("*.tmp"))


@POSIX_FIFO
def test_worker_sigkilled_mid_record_costs_that_record_only(
        tmp_path: Path, cluster: distributed.LocalCluster) -> None:
    corpus = generate_corpus(tmp_path / "mimic", 60, seed=7, broken=False)
    hung = corpus.good[25]
    fifo = plant_fifo(corpus, hung)
    work = tmp_path / "work"
    wait_for_workers(cluster, 2)
    proc = subprocess.Popen(
        command(corpus, work, "--timeout", "300", "--scheduler", cluster.scheduler_address),
        start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        writer, reader = wait_for_fifo_reader(fifo)
        # A Dask worker reports a record still in hand after a look at it (README, "Scale
        # out"): blame is exact once it has been on it for two looks, and the report is in.
        time.sleep(max(1.0, 10 * HEARTBEAT_SECONDS))
        os.kill(reader, signal.SIGKILL)
        time.sleep(0.2)
        os.close(writer)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, stderr
    assert "KilledWorker" not in stdout + stderr
    rows = read_rows(work / "out.csv")
    errors = {r["path"]: r["dcm_error"] for r in rows if r["dcm_error"]}
    assert list(errors) == [hung] and errors[hung].startswith("WorkerCrash: worker ")
    assert sum(1 for r in rows if r["dcm_path"]) == len(corpus.good) - 1
    assert not list((work / "dcm").rglob("*.tmp"))
    wait_for_workers(cluster, 2)


def test_killed_parent_resumes_to_the_end_state_of_one_run(
        tmp_path: Path, cluster: distributed.LocalCluster) -> None:
    corpus = generate_corpus(tmp_path / "mimic", 300, seed=5)
    work = tmp_path / "work"
    args = command(corpus, work, "--timeout", "30", "--checkpoint", "15", "--scheduler",
                   cluster.scheduler_address)
    assert run(args).returncode == 0  # the reference: one uninterrupted run
    reference = tmp_path / "reference"
    work.rename(reference)

    sigkill_runs_at_random_points(args, work / "dcm", len(corpus.good), kills=2, seed=99,
                                  latest=0.8)

    final = run(args)
    assert final.returncode == 0, final.stderr
    assert (work / "out.csv").read_bytes() == (reference / "out.csv").read_bytes()
    assert dicom_files(work / "dcm") == dicom_files(reference / "dcm")
    assert log_entries(work / "out.csv.errors.log") == log_entries(
        reference / "out.csv.errors.log")
    # Chunks of the killed parents may still be running on the cluster: they write the
    # same bytes atomically, so the end state cannot change; let them finish, then look.
    time.sleep(1.0)
    assert dicom_files(work / "dcm") == dicom_files(reference / "dcm")


def test_local_cluster_starts_from_a_directory_with_a_dask_py(tmp_path: Path) -> None:
    """The fork server ``--scheduler local`` starts workers from is run with ``python -c``,
    which put the current directory first on its path: a ``dask.py`` there (bench/ has
    one) shadowed Dask and no worker started."""
    corpus = generate_corpus(tmp_path / "mimic", 5, seed=2, broken=False)
    here = tmp_path / "cwd"
    here.mkdir()
    (here / "dask.py").write_text('"""Not Dask: a script that happens to be named so."""\n')
    proc = subprocess.run(command(corpus, tmp_path / "work", "--scheduler", "local"),
                          cwd=here, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert len(dicom_files(tmp_path / "work" / "dcm")) == len(corpus.good)


def test_local_cluster_is_quiet_when_port_8787_is_taken(tmp_path: Path) -> None:
    """Another cluster (or anything) on 8787, Dask's dashboard port: the scheduler's HTTP
    server (no dashboard, but /health) took it by default and warned on stderr."""
    corpus = generate_corpus(tmp_path / "mimic", 5, seed=6, broken=False)
    with socket.socket() as taken:
        try:
            taken.bind(("127.0.0.1", 8787))
            taken.listen()
        except OSError:  # taken already: the same situation
            pass
        proc = run(command(corpus, tmp_path / "work", "--scheduler", "local"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_heartbeat_reports_a_slow_task_at_once_and_fast_ones_once_a_liveness_period() -> None:
    """What a worker's heartbeat thread sends, look by look: one event per slow (or hung)
    task, one per liveness period while fast tasks go by, nothing sent twice."""
    a, b, c = ("topic", "chunk", 1), ("topic", "chunk", 2), ("topic", "chunk", 3)
    liveness = 1.0
    # Fast tasks: a new one at every look; sent only when the liveness period has passed.
    assert not beat_due(b, a, a, 0.3, liveness)
    assert beat_due(c, b, a, 1.0, liveness)
    # A slow task: in hand at two looks in a row, sent at the second, whenever the last was.
    assert beat_due(b, b, a, 0.1, liveness)
    # Once sent, a hung task is not sent again: the parent's clock runs from that event.
    assert not beat_due(b, b, b, 30.0, liveness)
    # Between chunks there is nothing to send.
    assert not beat_due(None, b, b, 30.0, liveness)


def test_missing_dask_names_the_extra(tmp_path: Path) -> None:
    corpus = generate_corpus(tmp_path / "mimic", 5, seed=1, broken=False)
    blocker = tmp_path / "nodask"
    blocker.mkdir()
    (blocker / "distributed.py").write_text("raise ImportError('blocked by the test')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", "")])}
    proc = run(command(corpus, tmp_path / "work", "--scheduler", "local"), env=env)
    assert proc.returncode == 2
    assert "pip install 'wfdb2dicom[dask]'" in proc.stderr
