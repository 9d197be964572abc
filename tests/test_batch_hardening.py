"""What a hostile test of the batch broke (issue 13), each kept mended by a test here.

Real processes, real signals, real file systems (a tiny tmpfs for a full disk), and strace
for the order of system calls: nothing of the file system is mocked.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pydicom
import pytest
from test_batch import command, read_rows, run

from conftest import require_tool, run_on_tmpfs
from wfdb2dicom.atomic import run_tag, temp_prefix
from wfdb2dicom.batch.cli import main as run_convert_main
from wfdb2dicom.errors import MAX_REASON_CHARS, ExitStatus
from wfdb2dicom.synthetic import generate_corpus

LINUX = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux (/proc, strace)")


def batch_command(args: list[str]) -> list[str]:
    """``command``'s arguments run as ``wfdb2dicom batch`` instead of ``run_convert.py``."""
    return [sys.executable, "-m", "wfdb2dicom.cli", "batch", *args[2:]]


def with_input(args: list[str], listing: Path) -> list[str]:
    args = list(args)
    args[args.index("--input_csv") + 1] = str(listing)
    return args


def write_listing(path: Path, rows: list[list[str]], header=("study_id", "path")) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


# -- 1. outputs that are inputs ----------------------------------------------------------------


def test_outputs_that_are_the_runs_inputs_are_refused(tmp_path: Path, capsys) -> None:
    corpus = generate_corpus(tmp_path / "mimic", 2, seed=3, broken=False)
    listing, table = corpus.record_list_csv, corpus.machine_measurements_csv
    originals = {p: p.read_bytes() for p in (listing, table)}
    (tmp_path / "dcm").mkdir()
    hard_link = tmp_path / "same-list.csv"
    os.link(listing, hard_link)
    inside_dcm = tmp_path / "dcm" / "list.dcm"
    shutil.copy(listing, inside_dcm)
    out = tmp_path / "out.csv"
    base = ["--wfdb_dir", str(corpus.root), "--dcm_dir", str(tmp_path / "dcm"),
            "--df_info_pkl", str(table), "--workers", "1", "--no-progress"]
    cases = [
        ["--input_csv", str(listing), "--output_csv", str(out), "--error_log", str(listing)],
        ["--input_csv", str(listing), "--output_csv", str(table)],
        ["--input_csv", str(listing), "--output_csv", str(listing)],
        ["--input_csv", str(hard_link), "--output_csv", str(out), "--error_log", str(listing)],
        ["--input_csv", str(listing), "--output_csv",
         str(tmp_path / "mimic" / ".." / "mimic" / table.name)],
        ["--input_csv", str(inside_dcm), "--output_csv", str(out)],
        ["--input_csv", str(listing), "--output_csv", str(out), "--error_log", str(out)],
    ]
    for case in cases:
        assert run_convert_main(base + case) == ExitStatus.NOTHING_STARTED, case
        line = one_error_line(capsys.readouterr().err)
        assert "overwrite its own input" in line or "--dcm_dir" in line or (
            "is --output_csv" in line), line
        assert {p: p.read_bytes() for p in originals} == originals
        assert not Path(f"{out}.ledger.sqlite").exists()  # nothing started
        assert [p for p in (tmp_path / "dcm").rglob("*") if p != inside_dcm] == []


# -- 2. records sharing a study ----------------------------------------------------------------


def test_plan_refuses_a_study_key_taken_by_another_record(tmp_path: Path) -> None:
    from wfdb2dicom.batch.ledger import Ledger
    from wfdb2dicom.batch.paths import Layout
    from wfdb2dicom.batch.plan import build_plan, read_input

    listing = write_listing(tmp_path / "in.csv", [
        ["1", "a/1"], [" 1", "a/2"], ["1", "a/1.hea"], ["", "b/3"], ["", "c/3"], ["3", "d/9"],
        ["4", "e/4"],
    ])
    with Ledger.open(tmp_path / "l.sqlite") as ledger:
        plan = build_plan(read_input(listing, "study_id", "path"), ledger,
                          Layout(tmp_path, tmp_path / "dcm"))
    errors = {row: error.split(":")[0] for row, error in plan.row_errors.items()}
    assert errors == {1: "DuplicateStudy", 4: "DuplicateStudy", 5: "DuplicateStudy"}
    assert plan.row_errors[1].startswith("DuplicateStudy: study 1 already belongs to record "
                                         "a/1 (row 1); this row's record a/2 is not converted")
    assert "study 3 already belongs to record b/3 (row 4)" in plan.row_errors[5]
    assert plan.row_task.tolist() == [0, -1, 0, 1, -1, -1, 2]  # the same record twice: one task
    assert plan.n_tasks == 3


def test_two_records_of_one_study_never_share_uids(tmp_path: Path) -> None:
    corpus = generate_corpus(tmp_path / "mimic", 3, seed=19, broken=False)
    a, b, c = corpus.good
    sid_a, sid_c = a.rsplit("/", 1)[1], c.rsplit("/", 1)[1]
    listing = write_listing(tmp_path / "list.csv", [[sid_a, a], [sid_a, b], [f" {sid_c}", c]])
    work = tmp_path / "work"
    args = with_input(command(corpus, work), listing)
    assert run(batch_command(args)).returncode == ExitStatus.ROWS_FAILED
    rows = read_rows(work / "out.csv")
    assert rows[0]["dcm_error"] == rows[2]["dcm_error"] == ""
    assert rows[1]["dcm_error"] == (
        f"DuplicateStudy: study {sid_a} already belongs to record {a} (row 1); this row's "
        f"record {b} is not converted (two records would share the study's UIDs)")
    uids = [pydicom.dcmread(p).SOPInstanceUID for p in (work / "dcm").rglob("*.dcm")]
    assert len(uids) == 2 and len(set(uids)) == 2

    # The outcome depends on the input alone: b done by an earlier run changes nothing.
    history = tmp_path / "history"
    write_listing(tmp_path / "b-only.csv", [[sid_a, b]])
    assert run(with_input(command(corpus, history), tmp_path / "b-only.csv")).returncode == 0
    assert run(batch_command(with_input(command(corpus, history), listing))).returncode == 1
    again = read_rows(history / "out.csv")
    assert [r["dcm_error"] for r in again] == [r["dcm_error"] for r in rows]
    assert again[0]["dcm_path"] and not again[1]["dcm_path"]


# -- 4. durability: every recorded file synced before its commit ---------------------------------

_SYSCALL = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+(.*)$")
_RESULT = re.compile(r"= (-?\d+)[^<]*<(\d+\.\d+)>\s*$")


def _strace_calls(trace: Path) -> list[tuple[int, str, float, float, str]]:
    """``(pid, name, start, end, text)`` of each system call in an ``strace -f -ttt -T`` log,
    its unfinished and resumed halves joined."""
    pending: dict[int, tuple[float, str]] = {}
    calls = []
    for line in trace.read_text(errors="replace").splitlines():
        match = _SYSCALL.match(line)
        if not match:
            continue
        pid, stamp, text = int(match[1]), float(match[2]), match[3]
        if text.endswith("<unfinished ...>"):
            pending[pid] = (stamp, text[: -len("<unfinished ...>")])
            continue
        if text.startswith("<... "):
            if pid not in pending:
                continue
            start, head = pending.pop(pid)
            text = head + text.split("resumed>", 1)[1]
        else:
            start = stamp
        result = _RESULT.search(text)
        if not result or not re.match(r"^\w+\(", text):
            continue
        name = text.split("(", 1)[0]
        end = (stamp if start != stamp else start) + (float(result[2]) if start == stamp else 0)
        calls.append((pid, name, start, end, text))
    return calls


@LINUX
def test_every_recorded_file_is_synced_before_the_commit_that_records_it(
        tmp_path: Path) -> None:
    strace = require_tool("strace")
    corpus = generate_corpus(tmp_path / "mimic", 40, seed=21, broken=False)
    work = tmp_path / "work"
    trace = tmp_path / "trace.txt"
    args = command(corpus, work, "--checkpoint", "8")
    proc = subprocess.run(
        [strace, "-f", "-ttt", "-T", "-y", "-s", "100000", "-o", str(trace), "-e",
         "trace=rename,renameat,renameat2,syncfs,fsync,fdatasync,pwrite64", *args],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    calls = _strace_calls(trace)
    dcm_root = os.path.realpath(work / "dcm") + "/"
    renamed: dict[str, float] = {}  # record -> when its file got its name
    for _, name, _, end, text in calls:
        if name.startswith("rename") and ".tmp" in text:
            target = re.findall(r'"([^"]+)"', text)[-1]
            if target.startswith(dcm_root) and target.endswith(".dcm"):
                renamed[target[len(dcm_root):-4]] = end
    assert len(renamed) == 40
    wal = [(start, end, name, text) for _, name, start, end, text in calls
           if re.match(r"\w+\(\d+<[^>]*ledger\.sqlite-wal>", text)]
    syncs = [(start, end) for _, name, start, end, text in calls
             if name == "syncfs" and text.rstrip().split("= ")[-1].startswith("0")]
    assert syncs, "no syncfs"
    for rel, named in renamed.items():
        written = next(start for start, _, name, text in wal
                       if name == "pwrite64" and rel in text)  # the commit that records it
        commit = next(start for start, _, name, _ in wal
                      if name in ("fsync", "fdatasync") and start > written)
        assert any(named <= start and end <= commit for start, end in syncs), (
            f"{rel} renamed at {named}, recorded by the commit at {commit}, no sync between")


# -- 5. two runs started at the same moment ----------------------------------------------------

_AT_ONCE = """
import sys, time
from wfdb2dicom.batch.cli import main
import wfdb2dicom.batch.engine  # the imports done before the start line
start = float(sys.argv[1])
time.sleep(max(0.0, start - time.time()))
sys.exit(main(sys.argv[2:]))
"""


def test_two_runs_started_at_once_exactly_one_proceeds(tmp_path: Path) -> None:
    corpus = generate_corpus(tmp_path / "mimic", 4, seed=29, broken=False)
    for trial in range(20):
        work = tmp_path / f"trial{trial}"
        args = command(corpus, work, "--workers", "1")[2:]
        start = time.time() + 1.5
        procs = [subprocess.Popen([sys.executable, "-c", _AT_ONCE, str(start), *args],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
        statuses = sorted(status for status, _, _ in results)
        assert statuses == [0, 2], (trial, results)
        refused = next(err for status, _, err in results if status == 2)
        assert "another run is using" in one_error_line(refused)
        with closing(sqlite3.connect(work / "out.csv.ledger.sqlite")) as db:
            assert db.execute("SELECT value FROM meta WHERE key='state'").fetchone() == (
                "finished",)
            assert db.execute("SELECT count(*) FROM results WHERE ok=1").fetchone() == (4,)


# -- 6. runs sharing --dcm_dir -----------------------------------------------------------------


def test_a_runs_sweep_removes_only_its_own_temporary_files(tmp_path: Path) -> None:
    corpus = generate_corpus(tmp_path / "mimic", 4, seed=31, broken=False)
    dcm = tmp_path / "dcm"
    out_a, out_b = tmp_path / "a" / "out.csv", tmp_path / "b" / "out.csv"
    target = dcm / f"{corpus.good[0]}.dcm"
    target.parent.mkdir(parents=True)
    planted = {out: target.parent / f"{temp_prefix(target, run_tag(out))}4242.tmp"
               for out in (out_a, out_b)}
    for path in planted.values():
        path.write_bytes(b"in flight")
    args = command(corpus, tmp_path)
    args[args.index("--dcm_dir") + 1] = str(dcm)

    def run_with(out: Path) -> None:
        out_args = list(args)
        out_args[out_args.index("--output_csv") + 1] = str(out)
        assert run(out_args).returncode == 0

    run_with(out_b)  # B's start-up sweep (a new run, on a --dcm_dir with files in it)
    assert planted[out_a].exists() and not planted[out_b].exists()
    run_with(out_a)
    assert not planted[out_a].exists()


def test_two_concurrent_runs_on_one_dcm_dir_both_succeed(tmp_path: Path) -> None:
    corpus = generate_corpus(tmp_path / "mimic", 150, seed=37, broken=False)
    dcm = tmp_path / "dcm"
    procs = []
    for name in ("a", "b"):
        args = command(corpus, tmp_path / name, "--checkpoint", "10")
        args[args.index("--dcm_dir") + 1] = str(dcm)
        procs.append(subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
        time.sleep(0.4)  # B starts (and sweeps) while A writes
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    for name in ("a", "b"):
        rows = read_rows(tmp_path / name / "out.csv")
        assert [r["dcm_error"] for r in rows] == [""] * 150, name
    assert not [p for p in dcm.rglob("*") if p.name.endswith(".tmp")]


# -- 10. a huge field in a header ---------------------------------------------------------------


def test_a_huge_error_text_is_cut_everywhere_and_the_output_reads_back(tmp_path: Path) -> None:
    """Two sources of huge error texts: a header field (3 MB: under the reader's 4 MB bound
    on a header, 25 times csv's field limit) and input cells (each under csv's limit, the
    error quoting three of them over it). Each error is cut to one bounded line in the
    output CSV, the error log and the ledger; the run reads its own output CSV back."""
    corpus = generate_corpus(tmp_path / "mimic", 3, seed=41, broken=False)
    rel = corpus.good[0]
    header = corpus.root / f"{rel}.hea"
    lines = header.read_text().splitlines()
    fields = lines[1].split(" ")
    fields[-1] = "x" * 3_000_000  # the first signal's description (its lead name)
    lines[1] = " ".join(fields)
    header.write_text("\n".join(lines) + "\n")
    long_path = "/".join(["d" * 200] * 300)  # 60 kB; two studies claim its output file
    listing = write_listing(tmp_path / "list.csv", [
        *([r.rsplit("/", 1)[1], r] for r in corpus.good),
        ["7" * 60_000, long_path], ["8" * 60_000, long_path]])
    work = tmp_path / "work"
    args = with_input(command(corpus, work), listing)
    first = run(args, timeout=300)
    assert first.returncode == 0, first.stderr[:2000]
    assert len(first.stdout) + len(first.stderr) < 10_000
    rows = read_rows(work / "out.csv")
    errors = [r["dcm_error"] for r in rows]
    assert errors[0].startswith("MetadataError: signal name 'xxx")
    assert errors[4].startswith("DuplicateOutput: ") and errors[4].endswith(" characters in all]")
    assert max(map(len, errors)) <= MAX_REASON_CHARS + 50
    logged = [ln.rsplit("\t", 1)[-1] for ln in (work / "out.csv.errors.log").read_text(
        ).splitlines() if not ln.startswith("=== RUN")]
    assert len(logged) == 3 and max(map(len, logged)) <= MAX_REASON_CHARS + 50
    with closing(sqlite3.connect(work / "out.csv.ledger.sqlite")) as db:
        (longest,), = db.execute("SELECT max(length(error)) FROM results")
    assert longest <= MAX_REASON_CHARS + 50

    (work / "out.csv.ledger.sqlite").unlink()  # the next run reads its own output CSV back
    again = run(args, timeout=300)
    assert again.returncode == 0, again.stderr[:2000]
    assert "skipped (already done):   2" in again.stdout
    assert read_rows(work / "out.csv") == rows


# -- 11. signals early in a run ----------------------------------------------------------------


def _fork_server_of(pid: int) -> bool:
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            cmdline = Path(entry.path, "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"forkserver" in cmdline:
            return True
    return False


@LINUX
@pytest.mark.parametrize(("signum", "status", "word"), [
    (signal.SIGINT, ExitStatus.INTERRUPTED, "interrupted"),
    (signal.SIGTERM, ExitStatus.TERMINATED, "terminated"),
])
def test_a_signal_early_in_a_run_ends_it_with_one_line(tmp_path: Path, signum: int,
                                                       status: int, word: str) -> None:
    """Moments are counted from when the run's own code holds its ledger, and from when its
    fork server starts (importing what workers need): before that, Python itself is still
    starting, and a signal there is the interpreter's to report."""
    corpus = generate_corpus(tmp_path / "mimic", 150, seed=43, broken=False)
    for when in (("ledger locked", 0.0), ("ledger locked", 0.1), ("fork server", 0.0),
                 ("fork server", 0.15), ("fork server", 0.4)):
        work = tmp_path / f"after-{when[0]}-{when[1]}"
        lock = work / "out.csv.ledger.sqlite.lock"
        proc = subprocess.Popen(command(corpus, work), start_new_session=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while not (lock.exists() if when[0] == "ledger locked" else
                       _fork_server_of(proc.pid)):
                assert time.monotonic() < deadline and proc.poll() is None, when
                time.sleep(0.001)
            time.sleep(when[1])
            os.killpg(proc.pid, signum)  # the whole group, as a terminal's Ctrl-C does
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        assert proc.returncode == status, (when, err)
        assert word in one_error_line(err), (when, err)
        time.sleep(0.2)  # killed workers' ends
        assert not [p for p in work.rglob("*") if p.name.endswith(".tmp")], when


# -- 12. full disk, BOM, damaged ledger --------------------------------------------------------


@LINUX
def test_a_full_disk_under_the_error_log_stops_the_run_naming_it(tmp_path: Path) -> None:
    corpus = generate_corpus(tmp_path / "mimic", 2, seed=47, broken=False)
    full = tmp_path / "fs"
    full.mkdir()
    listing = write_listing(tmp_path / "list.csv",
                            [[str(i), f"files/missing/{i:08d}"] for i in range(1, 401)])
    work = tmp_path / "work"
    log = full / "errors.log"
    args = with_input(command(corpus, work, "--checkpoint", "20", "--error_log", str(log),
                              metadata=False), listing)
    proc, _, resumed, _ = run_on_tmpfs(
        full, "size=16k", args, ["mount", "-o", "remount,size=1m", full], args,
        ["cp", log, tmp_path / "errors.log"])  # the log, for after the tmpfs is gone
    assert proc.returncode == ExitStatus.STOPPED_BY_IO_ERROR
    line = one_error_line(proc.stderr)
    assert str(log) in line and "No space left on device" in line and "resume" in line

    assert resumed.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr
    rows = read_rows(work / "out.csv")
    assert all(r["dcm_error"].startswith("RecordError: ") for r in rows)
    entries = {ln for ln in (tmp_path / "errors.log").read_text().splitlines()
               if not ln.startswith("=== RUN")}
    assert entries == {f"{r['study_id']}\t{r['path']}\t{r['dcm_error']}" for r in rows}


@LINUX
def test_a_full_disk_under_the_output_csv_stops_the_run_naming_it(tmp_path: Path) -> None:
    corpus = generate_corpus(tmp_path / "mimic", 2, seed=53, broken=False)
    full = tmp_path / "fs"
    full.mkdir()
    wide = "w" * 5000  # the output CSV repeats every input column; the ledger does not
    listing = write_listing(tmp_path / "list.csv",
                            [[str(i), f"files/missing/{i:08d}", wide] for i in range(1, 61)],
                            header=("study_id", "path", "note"))
    out = full / "out.csv"
    args = with_input(command(corpus, tmp_path, "--error_log", str(tmp_path / "errors.log"),
                              metadata=False), listing)
    args[args.index("--output_csv") + 1] = str(out)
    proc, listed = run_on_tmpfs(full, "size=128k", args, ["ls", "-A", full])
    assert proc.returncode == ExitStatus.STOPPED_BY_IO_ERROR, proc.stderr
    line = one_error_line(proc.stderr)
    assert str(out) in line and "No space left on device" in line
    assert listed.returncode == 0
    assert not [name for name in listed.stdout.split() if name.endswith(".tmp")]


def test_a_metadata_csv_with_a_byte_order_mark_works(tmp_path: Path) -> None:
    corpus = generate_corpus(tmp_path / "mimic", 3, seed=59, broken=False)
    table = corpus.machine_measurements_csv
    text = table.read_text()
    names = text.split("\n", 1)[0].split(",")
    reordered = [names.index("study_id")] + [i for i in range(len(names))
                                             if names[i] != "study_id"]
    rows = list(csv.reader(text.splitlines()))
    with table.open("w", newline="", encoding="utf-8-sig") as handle:  # BOM, then study_id
        csv.writer(handle).writerows([[row[i] for i in reordered] for row in rows])
    assert table.read_bytes().startswith(b"\xef\xbb\xbfstudy_id,")
    proc = run(command(corpus, tmp_path / "work"))
    assert proc.returncode == 0, proc.stderr
    assert all(r["dcm_error"] == "" for r in read_rows(tmp_path / "work" / "out.csv"))


@pytest.mark.parametrize("damage", ["table", "pages"])
def test_a_damaged_ledger_is_refused_in_one_line(tmp_path: Path, damage: str) -> None:
    corpus = generate_corpus(tmp_path / "mimic", 30, seed=61, broken=False)
    work = tmp_path / "work"
    args = command(corpus, work)
    assert run(args).returncode == 0
    ledger = work / "out.csv.ledger.sqlite"
    if damage == "table":
        with closing(sqlite3.connect(ledger)) as db:
            db.executescript("DROP TABLE results; CREATE TABLE results (path TEXT, x INTEGER);")
    else:
        data = bytearray(ledger.read_bytes())
        data[4096:len(data)] = b"\x5a" * (len(data) - 4096)  # every page after the first
        ledger.write_bytes(bytes(data))
    proc = run(args)
    assert proc.returncode == ExitStatus.NOTHING_STARTED, proc.stderr
    line = one_error_line(proc.stderr)
    assert f"ledger {ledger} is damaged" in line and "delete it" in line


def test_a_ledger_of_an_older_schema_is_refused_as_such_not_as_damaged(tmp_path: Path) -> None:
    """A schema-1 ledger (an older wfdb2dicom's: no objects per record) is refused naming
    the file, its schema and what it lacks; nothing of the run starts."""
    corpus = generate_corpus(tmp_path / "mimic", 3, seed=83, broken=False)
    work = tmp_path / "work"
    work.mkdir()
    ledger = work / "out.csv.ledger.sqlite"
    with closing(sqlite3.connect(ledger)) as db:  # schema 1, as that version created it
        db.executescript(
            "CREATE TABLE results (path TEXT PRIMARY KEY, study_id TEXT NOT NULL, "
            "ok INTEGER NOT NULL, error TEXT) WITHOUT ROWID;"
            "CREATE TABLE log (seq INTEGER PRIMARY KEY, log_path TEXT NOT NULL, "
            "text TEXT NOT NULL);"
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
            "INSERT INTO meta VALUES ('schema', '1');")
    proc = run(command(corpus, work))
    assert proc.returncode == ExitStatus.NOTHING_STARTED, proc.stderr
    line = one_error_line(proc.stderr)
    assert f"ledger {ledger} was written by another version of wfdb2dicom (schema 1;" in line
    assert "lists the DICOM objects of each record" in line and "damaged" not in line
    assert line.endswith(f"delete {ledger} to start the run over")
    assert not (work / "out.csv").exists() and not list(work.rglob("*.dcm"))


# -- 13. internal errors -----------------------------------------------------------------------


def test_a_bug_in_a_conversion_is_labelled_and_counted_apart(tmp_path: Path) -> None:
    from wfdb2dicom.batch.outcomes import FAILED, describe_failure
    from wfdb2dicom.batch.paths import Layout
    from wfdb2dicom.batch.report import Summary
    from wfdb2dicom.batch.work import OptionValues, TaskRunner
    from wfdb2dicom.errors import RecordError

    corpus = generate_corpus(tmp_path / "mimic", 1, seed=67, broken=False)
    runner = TaskRunner(Layout(corpus.root, tmp_path / "dcm"), OptionValues())
    rel = corpus.good[0]
    # A metadata row of the wrong shape: the engine never makes one, so it is a bug.
    (status, error), = [r[1:] for r in runner.run_chunk([(0, rel, "1", ("x",), False)],
                                                        lambda task: None)]
    assert status == FAILED and error.startswith("InternalError: "), error
    assert describe_failure(TypeError("a\nb")) == "InternalError: TypeError: a b"
    assert describe_failure(RecordError("bad")) == "RecordError: bad"
    assert describe_failure(OSError(28, "No space left on device")) == (
        "OSError: [Errno 28] No space left on device")
    summary = Summary(rows=3)
    summary.add_failure(error)
    summary.add_failure("RecordError: bad")
    assert (summary.failed, summary.internal) == (2, 1)
    assert "internal errors (bugs):   1" in summary.render(output_csv="o", error_log="e",
                                                          dcm_dir="d")


def test_no_internal_error_on_the_test_corpora(tmp_path: Path, demo_corpus,
                                               physionet_dir: Path) -> None:
    """The demo corpus (with its broken records) and every PhysioNet record of the shared
    data go through the batch: each converts or is refused as bad input, none is a bug."""
    work = tmp_path / "demo"
    proc = run(command(demo_corpus, work), timeout=300)
    assert proc.returncode == 0, proc.stderr
    errors = [r["dcm_error"] for r in read_rows(work / "out.csv")]
    assert any(errors) and not [e for e in errors if e.startswith("InternalError")]

    records = sorted({str(p.relative_to(physionet_dir).with_suffix(""))
                      for p in physionet_dir.rglob("*.hea")})
    listing = write_listing(tmp_path / "physionet.csv",
                            [[f"{i}", rel] for i, rel in enumerate(records, 1)])
    args = [sys.executable, "-m", "wfdb2dicom.cli", "batch", "--input_csv", str(listing),
            "--output_csv", str(tmp_path / "physionet" / "out.csv"), "--wfdb_dir",
            str(physionet_dir), "--dcm_dir", str(tmp_path / "physionet" / "dcm"),
            "--acquisition-datetime", "2020-01-01T00:00:00", "--workers", "2",
            "--timeout", "120", "--no-progress"]
    proc = run(args, timeout=600)
    assert proc.returncode in (0, 1), proc.stderr
    rows = read_rows(tmp_path / "physionet" / "out.csv")
    assert len(rows) == len(records) and any(r["dcm_path"] for r in rows)
    internal = [(r["path"], r["dcm_error"]) for r in rows
                if r["dcm_error"].startswith("InternalError")]
    assert not internal
    assert "internal errors" not in proc.stdout


# -- 14. run_convert.py keeps the seed's exit status -------------------------------------------


def test_run_convert_exits_0_once_a_run_completes_batch_says_1(tmp_path: Path) -> None:
    corpus = generate_corpus(tmp_path / "mimic", 3, seed=71)  # with its broken records
    seed = run(command(corpus, tmp_path / "seed"))
    assert seed.returncode == 0, seed.stderr
    assert "failed:                   7" in seed.stdout
    ours = run(batch_command(command(corpus, tmp_path / "ours")))
    assert ours.returncode == ExitStatus.ROWS_FAILED
    refused = run(with_input(command(corpus, tmp_path / "seed"), tmp_path / "absent.csv"))
    assert refused.returncode == ExitStatus.NOTHING_STARTED  # could not complete


# -- 16. one reader of a run's output CSV ------------------------------------------------------


def test_resume_verify_and_send_read_a_runs_csv_alike(tmp_path: Path) -> None:
    from wfdb2dicom.batch.runcsv import RunCsv
    from wfdb2dicom.send import _read_run
    from wfdb2dicom.verify import read_run

    corpus = generate_corpus(tmp_path / "mimic", 4, seed=73, broken=False)
    work = tmp_path / "work"
    assert run(command(corpus, work)).returncode == 0
    rows = read_rows(work / "out.csv")
    # As a spreadsheet or the seed may leave it: a BOM, NA for "no error", relative paths.
    edited = tmp_path / "elsewhere" / "run.csv"
    edited.parent.mkdir()
    shutil.move(str(work / "dcm"), str(edited.parent / "dcm"))
    with edited.open("w", newline="", encoding="utf-8-sig") as handle:
        writer = csv.writer(handle)
        writer.writerow(list(rows[0]))
        for i, row in enumerate(rows):
            dcm = os.path.relpath(row["dcm_path"], work)
            row = {**row, "dcm_path": dcm, "dcm_error": "NA" if i % 2 else ""}
            writer.writerow(list(row.values()))
        writer.writerow(list({**rows[0], "study_id": "99999999", "path": "files/none/99999999",
                              "dcm_path": "NA", "dcm_error": "Timeout>60s"}.values()))
    expected = [str(edited.parent / os.path.relpath(r["dcm_path"], work)) for r in rows]

    cwd = os.getcwd()
    os.chdir(tmp_path)  # relative paths are the CSV's, not the working directory's
    try:
        objects = list(RunCsv(edited).iter_objects())
        verify_tasks = read_run(edited, corpus.root)
        send_items, not_converted = _read_run(edited, "study_id", "dcm_path", "dcm_error")
    finally:
        os.chdir(cwd)
    assert [o.file for o in objects] == expected
    assert [t[2] for t in verify_tasks] == expected
    assert [i.path for i in send_items] == expected and not_converted == 1
    assert all(Path(p).is_file() for p in expected)


# -- 17. tables that are not regular files -----------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs (POSIX)")
def test_tables_that_are_fifos_are_refused_in_one_line_not_waited_on(tmp_path: Path) -> None:
    """A FIFO nobody writes, given as any table a command reads: a read would wait forever
    (``verify`` and ``send`` have no timeout, the batch reads its tables before any worker
    starts); each command refuses it in one line with exit 2, at once."""
    corpus = generate_corpus(tmp_path / "mimic", 2, seed=79, broken=False)
    work = tmp_path / "work"
    fifo = tmp_path / "table.csv"
    os.mkfifo(fifo)
    done = tmp_path / "done"
    assert run(command(corpus, done)).returncode == 0
    manifest = done / "out.csv.objects.csv"
    manifest.unlink()
    os.mkfifo(manifest)
    cli = [sys.executable, "-m", "wfdb2dicom.cli"]
    cases = [
        (with_input(command(corpus, work), fifo),
         f"input CSV is not a regular file (a FIFO): {fifo}"),
        (command(corpus, work, "--df_info_pkl", str(fifo), metadata=False),
         f"metadata file is not a regular file (a FIFO): {fifo}"),
        (batch_command(with_input(command(corpus, work), fifo)),
         f"input CSV is not a regular file (a FIFO): {fifo}"),
        ([*cli, "verify", "--output_csv", str(fifo), "--wfdb_dir", str(corpus.root)],
         f"cannot read {fifo}: not a regular file (a FIFO)"),
        ([*cli, "send", "--output_csv", str(fifo), "--to", "dicom://X@127.0.0.1:9"],
         f"cannot read {fifo}: not a regular file (a FIFO)"),
        ([*cli, "verify", "--output_csv", str(done / "out.csv"), "--wfdb_dir", str(corpus.root)],
         f"cannot read {manifest}: not a regular file (a FIFO)"),
    ]
    for args, reason in cases:
        proc = run(args, timeout=30)
        assert proc.returncode == ExitStatus.NOTHING_STARTED, (args, proc.stderr)
        assert one_error_line(proc.stderr).endswith(reason), args
    assert not work.exists()
