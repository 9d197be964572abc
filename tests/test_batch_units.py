"""Batch engine parts on their own: path rules, planning, ledger, error log, worker pool."""

from __future__ import annotations

import csv
import datetime as dt
import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wfdb2dicom.atomic import sweep_temps
from wfdb2dicom.batch import BatchError
from wfdb2dicom.batch.ledger import (
    Ledger,
    decode_objects,
    encode_objects,
    encode_single_object,
)
from wfdb2dicom.batch.outcomes import (
    DONE,
    FAILED,
    MISSING_METADATA,
    describe_exception,
    error_kind,
    timeout_error,
    worker_crash_error,
)
from wfdb2dicom.batch.paths import Layout, UnsafePath, normalise_record_path
from wfdb2dicom.batch.plan import build_plan, group_by_path, read_input
from wfdb2dicom.batch.pool import START_METHOD_ENV, WorkerPool, start_method
from wfdb2dicom.batch.report import CsvText, ErrorLog
from wfdb2dicom.batch.runcsv import CHANNEL_SEPARATOR
from wfdb2dicom.convert import MISSING_METADATA as CONVERT_MISSING_METADATA
from wfdb2dicom.validate import ValidationFailed

# -- the seed's error vocabulary -------------------------------------------------------------


def test_error_strings_are_the_seeds() -> None:
    assert timeout_error(60) == "Timeout>60s"
    assert timeout_error(2.5) == "Timeout>2.5s"
    assert MISSING_METADATA == CONVERT_MISSING_METADATA == "Missing df_info row for study_id"
    assert worker_crash_error(-9) == "WorkerCrash: worker died with exit code -9 (SIGKILL)"
    assert describe_exception(ValidationFailed("group 1: bad\tthing\n")) == (
        "ValidationFailed: group 1: bad thing"
    )
    assert describe_exception(OSError("disk\nfull")) == "OSError: disk full"
    assert error_kind("Timeout>5s") == "Timeout"
    assert error_kind("RecordError: missing signal file 1.dat") == "RecordError"


@given(name=st.text(min_size=1, max_size=30),
       channels=st.lists(st.text(max_size=12), min_size=1, max_size=13),
       start=st.datetimes(min_value=dt.datetime(1000, 1, 1)))
def test_single_object_entry_equals_the_general_encoding(name, channels, start) -> None:
    """The cached JSON of a one-object record's manifest entry is what ``encode_objects``
    gives, whatever the file name and channel labels hold (quotes, backslashes, Unicode)."""
    sop, modality = "1.2.840.10008.5.1.4.1.1.9.1.1", "ECG"
    expected = encode_objects(
        [(name, sop, modality, 1, 1, start.isoformat(), CHANNEL_SEPARATOR.join(channels))], "")
    assert encode_single_object(name, sop, modality, start.isoformat(),
                                tuple(channels)) == expected
    assert decode_objects(expected)[0][0][0] == name


@settings(max_examples=500, deadline=None)
@given(rows=st.lists(st.lists(st.one_of(
    st.text(st.sampled_from(list('ab,"\n\r \t\\é')), max_size=6), st.integers(), st.none()),
    max_size=5), max_size=6))
def test_csv_text_equals_csv_writer(rows) -> None:
    """The batch's CSV fast path writes exactly what csv.writer writes, quoting included."""
    import io

    expected = io.StringIO()
    writer = csv.writer(expected, lineterminator="\n")
    lines = CsvText()
    for row in rows:
        writer.writerow(row)
        lines.row(row)
    assert lines.take() == expected.getvalue()
    assert lines.take() == ""


# -- paths -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("files/p1000/p10000032/s40689238/40689238", "files/p1000/p10000032/s40689238/40689238"),
        ("p1000/x.hea", "p1000/x"),
        ("p1000/x.DAT", "p1000/x"),
        (" p1000//./x ", "p1000/x"),
        ("p1000\\x", "p1000/x"),
        ("p1000/.hidden/x", "p1000/.hidden/x"),
        ("p1000/x.v2", "p1000/x.v2"),
    ],
)
def test_normalise_record_path(raw: str, expected: str) -> None:
    assert normalise_record_path(raw) == expected


@pytest.mark.parametrize(
    "raw", ["../x", "a/../../x", "a/..", "/etc/passwd", "C:/x", "c:x", "\\\\srv\\share\\x", "",
            "   ", ".hea", "a\x00b"],
)
def test_escaping_paths_are_refused(raw: str) -> None:
    with pytest.raises(UnsafePath):
        normalise_record_path(raw)


@pytest.mark.skipif(not hasattr(os, "symlink") or sys.platform == "win32", reason="symlinks")
def test_layout_follows_symlinks_only_inside(tmp_path: Path) -> None:
    wfdb, dcm, outside = tmp_path / "wfdb", tmp_path / "dcm", tmp_path / "outside"
    for d in (wfdb / "real", dcm, outside):
        d.mkdir(parents=True)
    (wfdb / "inside_link").symlink_to(wfdb / "real")
    (wfdb / "out_link").symlink_to(outside)
    (wfdb / "real" / "x.hea").write_text("x 1 500\n")
    (wfdb / "real" / "y.hea").symlink_to(outside / "y.hea")
    (dcm / "evil").symlink_to(outside)
    (wfdb / "real" / "z.hea").symlink_to(wfdb / "real" / "x.hea")  # a link that stays inside
    layout = Layout(wfdb, dcm)
    assert layout.record_base("inside_link/x").endswith("x")
    assert layout.record_base("not/there/yet")  # missing: the reader reports it
    with pytest.raises(UnsafePath, match="outside --wfdb_dir"):
        layout.record_base("out_link/x")
    base = layout.record_base("real/y")  # the directory is fine; the file is checked on open
    with pytest.raises(UnsafePath, match="real/y.hea resolves outside --wfdb_dir"):
        layout.open_input(base + ".hea")
    for name in ("x.hea", "z.hea"):
        fd = layout.open_input(str(wfdb.resolve() / "real" / name))
        assert os.read(fd, 100) == b"x 1 500\n"
        os.close(fd)
    with pytest.raises(FileNotFoundError):
        layout.open_input(str(wfdb.resolve() / "real" / "missing.hea"))
    with pytest.raises(UnsafePath, match="outside --dcm_dir"):
        layout.output("evil/sub/x")
    assert not (outside / "sub").exists()  # nothing was made through the link
    assert layout.output("fine/x") == str(dcm.resolve() / "fine" / "x.dcm")
    assert layout.output("new/deeper/x") == str(dcm.resolve() / "new" / "deeper" / "x.dcm")
    assert (dcm / "new" / "deeper").is_dir()  # output() makes the directories it checks
    (dcm / "inside_link").symlink_to(dcm / "fine")
    (dcm / "made_by_another").mkdir()  # e.g. by the other worker: found, not made
    assert layout.output("inside_link/y").endswith("y.dcm")
    assert layout.output("made_by_another/z").endswith("z.dcm")


def test_sweep_temps_removes_only_this_files_temporaries(tmp_path: Path) -> None:
    keep = [tmp_path / "a.dcm", tmp_path / ".b.dcm.x1.tmp", tmp_path / ".a.dcmx.tmp"]
    gone = [tmp_path / ".a.dcm.k2j3.tmp", tmp_path / ".a.dcm.zz.tmp"]
    for f in keep + gone:
        f.write_bytes(b"x")
    assert sweep_temps(str(tmp_path / "a.dcm")) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in keep)
    assert sweep_temps(str(tmp_path / "nowhere" / "a.dcm")) == 0


# -- planning ----------------------------------------------------------------------------------


def _csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([["study_id", "path", "note"], *rows])
    return path


def test_plan_duplicates_and_refusals(tmp_path: Path) -> None:
    rows = read_input(_csv(tmp_path / "in.csv", [
        ["1", "a/1", "first"],
        ["2", "a/2", ""],
        ["1.0", "a/1.hea", "same study and file as row 1"],
        ["3", "a/2", "same output file as row 2, other study"],
        ["4", "../4", "refused"],
        ["1", "a/1", "identical to row 1"],
    ]), "study_id", "path")
    ledger = Ledger.open(tmp_path / "l.sqlite")
    plan = build_plan(rows, ledger, Layout(tmp_path, tmp_path / "dcm"))
    assert plan.n_tasks == 2
    assert plan.row_task.tolist() == [0, 1, 0, -1, -1, 0]
    assert plan.rows_of(0) == [0, 2, 5]
    assert plan.row_errors[3].startswith("DuplicateOutput: a/2.dcm already belongs to study_id 2")
    assert plan.row_errors[4].startswith("UnsafePath: path ../4 climbs out")
    assert plan.raw_values(2) == ("1.0", "a/1.hea")
    assert plan.todo_rows() == 6
    ledger.close()


@pytest.mark.parametrize("block", [3, 65536])
def test_input_columns_across_blocks(tmp_path: Path, monkeypatch, block: int) -> None:
    """Rows are kept in blocks of ``plan.BLOCK``; every row reads back as written, refused
    paths as null, whatever the block boundaries."""
    import wfdb2dicom.batch.plan as plan_module

    monkeypatch.setattr(plan_module, "BLOCK", block)
    written = [[str(i), f"p/{'x' * (i % 5)}{i}", ""] for i in range(10)]
    written[4][1] = "../escape"
    written[6][1] = "é/ü/ß"  # non-ASCII: offsets count bytes
    rows = read_input(_csv(tmp_path / "in.csv", written), "study_id", "path")
    assert rows.n_rows == 10
    assert [len(chunk) for chunk in rows.paths.chunks][0] == min(block, 10)
    assert rows.study_ids.to_pylist() == [str(i) for i in range(10)]
    assert rows.paths.to_pylist() == [None if i == 4 else r[1] for i, r in enumerate(written)]
    assert rows.path_hashes.tolist() == [0 if i == 4 else hash(r[1])
                                         for i, r in enumerate(written)]
    empty = read_input(_csv(tmp_path / "empty.csv", []), "study_id", "path")
    assert empty.n_rows == 0 and empty.paths.to_pylist() == [] and len(empty.path_hashes) == 0


def test_hash_collisions_never_merge_different_paths(tmp_path: Path) -> None:
    rows = read_input(_csv(tmp_path / "in.csv", [
        ["1", "a/1", ""], ["2", "a/2", ""], ["1", "a/1", ""], ["3", "a/3", ""],
    ]), "study_id", "path")
    rows.path_hashes = np.full(rows.n_rows, 42, dtype=np.int64)  # every path "collides"
    task = group_by_path(rows)
    assert task[0] == task[2]
    assert len({task[0], task[1], task[3]}) == 3


def test_plan_skips_only_done_rows_with_files(tmp_path: Path) -> None:
    rows = read_input(_csv(tmp_path / "in.csv", [["1", "a/1", ""], ["2", "a/2", ""],
                                                 ["3", "a/3", ""]]), "study_id", "path")
    layout = Layout(tmp_path, tmp_path / "dcm")
    for rel in ("a/1", "a/3"):
        Path(layout.output_path(rel)).parent.mkdir(parents=True, exist_ok=True)
        Path(layout.output_path(rel)).write_bytes(b"DICM")
    with Ledger.open(tmp_path / "l.sqlite") as ledger:
        ledger.commit([("a/1", "1", 1, None, None, "[]"),
                       ("a/2", "2", 1, None, None, "[]"),  # a/2: file missing
                       ("a/3", "9", 1, None, None, "[]")])  # a/3: for another study_id
        plan = build_plan(rows, ledger, layout)
        assert plan.done.tolist() == [True, False, False]
        # a record of several objects is done only when each of its files is there
        several = "1_s0001_p001_ecg.dcm\n1_s0001_p001_hd.dcm"
        ledger.commit([("a/1", "1", 1, None, several, "[]")])
        assert build_plan(rows, ledger, layout).done.tolist() == [False, False, False]
        Path(tmp_path / "dcm/a/1_s0001_p001_ecg.dcm").write_bytes(b"DICM")
        assert build_plan(rows, ledger, layout).done.tolist() == [False, False, False]
        Path(tmp_path / "dcm/a/1_s0001_p001_hd.dcm").write_bytes(b"DICM")
        assert build_plan(rows, ledger, layout).done.tolist() == [True, False, False]
        assert build_plan(rows, ledger, layout, overwrite=True).done.tolist() == [False] * 3
        verify = build_plan(rows, ledger, layout, verify_existing=True)
        assert verify.done.tolist() == [False] * 3 and verify.verify.tolist() == [
            True, False, False]


# -- ledger and error log ----------------------------------------------------------------------


def test_ledger_refuses_a_second_run_on_the_same_output(tmp_path: Path) -> None:
    path = tmp_path / "out.csv.ledger.sqlite"
    with Ledger.open(path):
        probe = subprocess.run(
            [sys.executable, "-c",
             "import sys; from wfdb2dicom.batch.ledger import Ledger\n"
             f"try:\n Ledger.open({str(path)!r})\nexcept Exception as e:\n print(e)"],
            capture_output=True, text=True, timeout=60,
        )
        assert "another run is using" in probe.stdout
    with Ledger.open(path) as ledger:  # released with the first connection
        assert ledger.existed


def test_error_log_reconciles_with_the_ledger(tmp_path: Path) -> None:
    log = ErrorLog(tmp_path / "out.csv.errors.log")
    log.path.write_text("seed line\n")
    with Ledger.open(tmp_path / "l.sqlite") as ledger:
        log.reconcile(ledger)  # adopts what is there
        committed = "=== RUN x | todo=2 ===\n1\ta/1\tRecordError: x\n"
        ledger.commit([], log_path=log.key, log_text=committed, log_size=log.append(committed))
        log.append("2\ta/2\tRecordError: half a li")  # a kill before the commit
        log.reconcile(ledger)
        assert log.path.read_text() == "seed line\n" + committed
        log.path.unlink()  # lost: restored from the ledger (the seed's line is gone for good)
        log.reconcile(ledger)
        assert log.path.read_text() == committed
        log.reconcile(ledger)
        assert log.path.read_text() == committed


# -- worker pool -------------------------------------------------------------------------------


class ToyRunner:
    """Module-level, so spawned workers can import it."""

    def __call__(self, task: tuple) -> tuple[int, str | None]:
        kind = task[1]
        if kind == "hang":
            time.sleep(600)
        if kind == "die":
            os._exit(7)
        if kind == "fail":
            return FAILED, "ValueError: no"
        return DONE, None


@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="needs fork")
def test_pool_returns_every_task_once_despite_hangs_and_deaths() -> None:
    kinds = ["ok"] * 40
    kinds[3], kinds[17], kinds[30] = "hang", "die", "fail"
    tasks = list(enumerate(kinds))
    results: dict[int, tuple[int, str | None]] = {}
    started = time.monotonic()
    with WorkerPool(ToyRunner(), 2, timeout=1.0, method="fork") as pool:
        for i in range(0, len(tasks), 8):
            pool.submit(tasks[i:i + 8])
        while not pool.idle:
            for task, status, error in pool.poll(0.1):
                assert task not in results
                results[task] = (status, error)
    assert sorted(results) == list(range(40))
    assert results[3] == (FAILED, "Timeout>1s")
    assert results[17] == (FAILED, "WorkerCrash: worker died with exit code 7")
    assert results[30] == (FAILED, "ValueError: no")
    assert all(results[i] == (DONE, None) for i in range(40) if i not in (3, 17, 30))
    assert time.monotonic() - started < 30


def test_bad_arguments_exit_2_with_one_line(tmp_path: Path, capsys) -> None:
    from wfdb2dicom.batch.cli import main

    good = _csv(tmp_path / "in.csv", [["1", "a/1", ""]])
    base = ["--output_csv", str(tmp_path / "o.csv"), "--wfdb_dir", str(tmp_path),
            "--dcm_dir", str(tmp_path / "dcm")]
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    cases = [
        (["--input_csv", str(tmp_path / "missing.csv")], "input CSV not found"),
        (["--input_csv", str(good), "--study_id_col", "sid"], "no column 'sid'"),
        (["--input_csv", str(good), "--metadata", str(tmp_path / "bad.parquet")],
         "cannot read metadata"),
        (["--input_csv", str(good), "--workers", "0"], "--workers must be at least 1"),
        (["--input_csv", str(good), "--metadata", str(tmp_path / "none.csv")],
         "metadata file not found"),
        (["--input_csv", str(good), "--uid-root", "1.2.x"], "is not a UID root"),
        (["--input_csv", str(good), "--timeout", "0"], "--timeout must be positive"),
    ]
    for extra, message in cases:
        assert main(base + extra) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1, err


def test_register_adds_the_batch_subcommand(tmp_path: Path) -> None:
    import argparse

    from wfdb2dicom.batch.cli import register

    parser = argparse.ArgumentParser(prog="wfdb2dicom")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["batch", "--input_csv", str(tmp_path / "none.csv"),
                              "--output_csv", "o", "--wfdb_dir", ".", "--dcm_dir", "d",
                              "--metadata", "m.csv"])
    assert args.df_info_pkl == Path("m.csv") and args.workers == (os.cpu_count() or 1)
    assert args.timeout == 60 and args.checkpoint == 2000
    assert args.handler(args) == 2  # the input CSV does not exist


def test_batch_error_is_a_conversion_error() -> None:
    from wfdb2dicom.errors import ConversionError

    assert issubclass(BatchError, ConversionError)  # wfdb2dicom.cli maps it to exit 2


def test_write_atomic_mode_and_stale_temp(tmp_path: Path) -> None:
    """Outputs get ordinary modes (umask), and a stale temp of a dead same-pid writer is
    replaced, not an error."""
    import os

    from wfdb2dicom.atomic import write_atomic

    target = tmp_path / "sub" / "x.dcm"
    target.parent.mkdir()
    stale = target.parent / f".x.dcm.{os.getpid()}.tmp"
    stale.write_bytes(b"partial")
    write_atomic(target, b"complete")
    assert target.read_bytes() == b"complete"
    assert not stale.exists()
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_write_atomic_pieces_with_and_without_writev(tmp_path: Path, monkeypatch) -> None:
    """Pieces (bytes and flat sample views) land in order: by one gathered write, after a
    short gathered write, and where the platform has no ``os.writev`` (Windows). A short
    write cannot be provoked on a local file, so a writev that stops early stands in."""
    import os

    import numpy as np

    from wfdb2dicom import atomic

    samples = np.arange(-600, 600, dtype="<i2").reshape(100, 12)
    pieces = [b"head", memoryview(samples).cast("B"), b"", b"tail"]
    expected = b"head" + samples.tobytes() + b"tail"
    atomic.write_atomic(tmp_path / "a" / "gathered.dcm", pieces)
    monkeypatch.setattr(atomic, "_WRITEV", lambda fd, parts: os.write(fd, b"".join(parts)[:7]))
    atomic.write_atomic(tmp_path / "a" / "short.dcm", pieces)
    monkeypatch.setattr(atomic, "_WRITEV", None)
    atomic.write_atomic(tmp_path / "a" / "plain.dcm", pieces)
    for name in ("gathered", "short", "plain"):
        assert (tmp_path / "a" / f"{name}.dcm").read_bytes() == expected, name
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "gathered.dcm", "plain.dcm", "short.dcm"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork: POSIX only")
def test_temp_names_use_the_forked_childs_pid(tmp_path: Path) -> None:
    """Workers are forked: each must name its temporary files with its own pid, or two
    writers of one output could share a temporary file."""
    from wfdb2dicom import atomic

    child = os.fork()
    if child == 0:  # the child reports by exit status only
        os._exit(0 if atomic._pid == os.getpid() != os.getppid() else 1)
    _, status = os.waitpid(child, 0)
    assert os.WEXITSTATUS(status) == 0
    assert atomic._pid == os.getpid()


def test_workers_start_from_a_fork_server_where_there_is_one(monkeypatch) -> None:
    """So a worker never carries the parent's plan or metadata table (bench/memory.py)."""
    monkeypatch.delenv(START_METHOD_ENV, raising=False)
    has_server = "forkserver" in mp.get_all_start_methods()
    assert start_method() == ("forkserver" if has_server else None)
    assert start_method("spawn") == "spawn"
    monkeypatch.setenv(START_METHOD_ENV, "spawn")
    assert start_method() == "spawn"


def test_a_chunk_with_failures_leaves_nothing_for_the_garbage_collector(tmp_path: Path) -> None:
    """A failed record's exception reaches the chunk's results through its traceback; the
    worker must break that cycle, or each chunk with a failure stays in memory (samples
    included) until a full collection."""
    import gc

    from wfdb2dicom.batch.work import OptionValues, TaskRunner
    from wfdb2dicom.metadata import MetadataTable
    from wfdb2dicom.synthetic import generate_corpus

    corpus = generate_corpus(tmp_path / "mimic", 6, seed=23)
    with corpus.record_list_csv.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    table = MetadataTable.load(corpus.machine_measurements_csv)
    values = table.raw_rows([row["study_id"] for row in rows])
    tasks = [(i, row["path"], row["study_id"], value, False)
             for i, (row, value) in enumerate(zip(rows, values, strict=True))
             if value is not None]
    runner = TaskRunner(Layout(corpus.root, tmp_path / "dcm"), OptionValues())
    runner.run_chunk(tasks[:1], lambda task_id: None)  # one-time caches made outside the count
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        results = runner.run_chunk(tasks, lambda task_id: None)
        gc.collect()
        kinds = {type(obj).__name__ for obj in gc.garbage}
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if enabled:
            gc.enable()
    assert sum(status == FAILED for _, status, *_ in results) >= 5  # the broken records
    assert not kinds & {"frame", "traceback"}, kinds


def test_a_chunk_gives_what_its_tasks_give_one_by_one(tmp_path: Path) -> None:
    """A chunk goes through the stages in groups (``work.STAGE_GROUP``); outcomes and files
    must not depend on where the groups fall, failures included."""
    from wfdb2dicom.batch.work import STAGE_GROUP, OptionValues, TaskRunner
    from wfdb2dicom.metadata import MetadataTable
    from wfdb2dicom.synthetic import generate_corpus

    corpus = generate_corpus(tmp_path / "mimic", 2 * STAGE_GROUP + 5, seed=29)
    with corpus.record_list_csv.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    values = MetadataTable.load(corpus.machine_measurements_csv).raw_rows(
        [row["study_id"] for row in rows])
    tasks = [(i, row["path"], row["study_id"], value, False)
             for i, (row, value) in enumerate(zip(rows, values, strict=True))]
    assert len(tasks) > 2 * STAGE_GROUP and corpus.broken
    marked: list[int] = []
    together = TaskRunner(Layout(corpus.root, tmp_path / "together"), OptionValues())
    chunk_results = together.run_chunk(tasks, marked.append)
    alone = TaskRunner(Layout(corpus.root, tmp_path / "alone"), OptionValues())
    assert chunk_results == [(task[0], *alone(task)) for task in tasks]
    assert sorted(set(marked)) == [task[0] for task in tasks]  # every task named its steps
    files = {p.relative_to(tmp_path / "together"): p.read_bytes()
             for p in (tmp_path / "together").rglob("*.dcm")}
    assert files == {p.relative_to(tmp_path / "alone"): p.read_bytes()
                     for p in (tmp_path / "alone").rglob("*.dcm")}
    assert len(files) == sum(status == DONE for _, status, *_ in chunk_results) >= 2 * STAGE_GROUP
