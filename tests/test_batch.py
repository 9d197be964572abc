"""The batch command end to end, run as users run it: real processes, files, FIFOs and kills.

Corpora come from :func:`wfdb2dicom.synthetic.generate_corpus` (MIMIC-IV-ECG layout and
tables, with one record of each defect). Each test makes its own, so tests that plant FIFOs
or kill processes cannot disturb the others.
"""

from __future__ import annotations

import csv
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest

from conftest import sigkill_runs_at_random_points
from wfdb2dicom.synthetic import SyntheticCorpus, generate_corpus
from wfdb2dicom.validate import quick_check

REPO_ROOT = Path(__file__).resolve().parents[1]
RUN_CONVERT = REPO_ROOT / "run_convert.py"
POSIX_FIFO = pytest.mark.skipif(
    not hasattr(os, "mkfifo") or not Path("/proc/self/fd").is_dir(),
    reason="needs FIFOs and /proc (Linux)",
)

EXPECTED_ERRORS = {
    "missing_dat": "RecordError: missing signal file ",
    "truncated_dat": "RecordError: signal file ",
    "corrupt_header": "RecordError: ",
    "checksum_mismatch": "RecordError: checksum mismatch",
    "longer_dat": "RecordError: signal file ",
    "numerics_only": "UnsupportedRecord: no signal of the record fits a DICOM waveform IOD",
    "missing_metadata": "Missing df_info row for study_id",
}
"""How each defect of the synthetic corpus is reported (a prefix; the last one exactly)."""


def command(corpus: SyntheticCorpus, work: Path, *extra: str, metadata: bool = True) -> list[str]:
    """The seed's command line, with MIMIC's own tables as input and metadata."""
    args = [
        sys.executable, str(RUN_CONVERT),
        "--input_csv", str(corpus.record_list_csv),
        "--output_csv", str(work / "out.csv"),
        "--wfdb_dir", str(corpus.root),
        "--dcm_dir", str(work / "dcm"),
        "--workers", "2",
        "--no-progress",
        *extra,
    ]
    if metadata:
        args += ["--df_info_pkl", str(corpus.machine_measurements_csv)]
    return args


def run(args: list[str], *, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    return proc


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def log_entries(path: Path) -> set[tuple[str, ...]]:
    lines = path.read_text().splitlines()
    return {tuple(line.split("\t")) for line in lines if not line.startswith("=== RUN ")}


def dicom_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.dcm"))}


def assert_valid_objects(rows: list[dict[str, str]]) -> None:
    for row in rows:
        if row["dcm_path"]:
            quick_check(pydicom.dcmread(row["dcm_path"]))


def plant_fifo(corpus: SyntheticCorpus, rel: str) -> Path:
    """Replace a good record's ``.dat`` by a FIFO nobody writes: ``open`` blocks forever."""
    dat = corpus.root / f"{rel}.dat"
    dat.unlink()
    os.mkfifo(dat)
    return dat


@POSIX_FIFO
def test_seed_command_line_on_a_broken_corpus(tmp_path: Path) -> None:
    corpus = generate_corpus(tmp_path / "mimic", 150, seed=3)
    hung = corpus.good[40]
    plant_fifo(corpus, hung)
    work = tmp_path / "work"
    started = time.monotonic()
    proc = run(command(corpus, work, "--timeout", "5", "--checkpoint", "50"))
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert elapsed < 60

    with corpus.record_list_csv.open(newline="") as handle:
        inputs = list(csv.DictReader(handle))
    rows = read_rows(work / "out.csv")
    assert list(rows[0]) == [*inputs[0], "dcm_path", "dcm_error"]
    assert [{k: r[k] for k in inputs[0]} for r in rows] == inputs  # every row, once, in order
    by_path = {r["path"]: r for r in rows}
    assert by_path[hung]["dcm_error"] == "Timeout>5s" and by_path[hung]["dcm_path"] == ""
    for rel, kind in corpus.broken.items():
        error = by_path[rel]["dcm_error"]
        assert error.startswith(EXPECTED_ERRORS[kind]), (kind, error)
        assert by_path[rel]["dcm_path"] == ""
        assert not (work / "dcm" / rel).parent.exists()  # a failed study leaves no folder
    assert by_path[next(r for r, k in corpus.broken.items() if k == "missing_metadata")][
        "dcm_error"] == "Missing df_info row for study_id"
    good = [r for r in rows if r["path"] not in corpus.broken and r["path"] != hung]
    assert all(r["dcm_error"] == "" for r in good)
    for row in good:
        assert row["dcm_path"] == str((work / "dcm" / f"{row['path']}.dcm").absolute())
    assert_valid_objects(rows)

    log_lines = (work / "out.csv.errors.log").read_text().splitlines()
    assert log_lines[0].startswith("=== RUN ") and log_lines[0].endswith(f"| todo={len(rows)} ===")
    assert log_entries(work / "out.csv.errors.log") == {
        (r["study_id"], r["path"], r["dcm_error"]) for r in rows if r["dcm_error"]
    }
    assert "failed:                   8" in proc.stdout and "Timeout" in proc.stdout
    assert str(work / "out.csv") in proc.stdout
    assert not list((work / "dcm").rglob("*.tmp"))


def test_sigkill_of_the_whole_run_then_resume_equals_one_run(tmp_path: Path) -> None:
    corpus = generate_corpus(tmp_path / "mimic", 300, seed=5)
    work = tmp_path / "work"
    args = command(corpus, work, "--timeout", "30", "--checkpoint", "15")

    assert run(args).returncode == 0  # the reference: one uninterrupted run
    reference = tmp_path / "reference"
    work.rename(reference)

    sigkill_runs_at_random_points(args, work / "dcm", len(corpus.good), kills=3, seed=1234)

    final = run(args)
    assert final.returncode == 0
    assert (work / "out.csv").read_bytes() == (reference / "out.csv").read_bytes()
    assert dicom_files(work / "dcm") == dicom_files(reference / "dcm")
    assert not [p for p in (work / "dcm").rglob("*") if p.name.endswith(".tmp")]
    assert log_entries(work / "out.csv.errors.log") == log_entries(
        reference / "out.csv.errors.log")


@POSIX_FIFO
def test_worker_killed_mid_study_costs_that_study_only(tmp_path: Path) -> None:
    corpus = generate_corpus(tmp_path / "mimic", 30, seed=7, broken=False)
    hung = corpus.good[12]
    fifo = plant_fifo(corpus, hung)
    work = tmp_path / "work"
    proc = subprocess.Popen(command(corpus, work, "--timeout", "300"), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        writer, reader = wait_for_fifo_reader(fifo)
        os.kill(reader, signal.SIGKILL)
        time.sleep(0.2)
        os.close(writer)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, stderr
    rows = read_rows(work / "out.csv")
    errors = {r["path"]: r["dcm_error"] for r in rows if r["dcm_error"]}
    assert errors == {hung: "WorkerCrash: worker died with exit code -9 (SIGKILL)"}
    assert sum(1 for r in rows if r["dcm_path"]) == len(corpus.good) - 1
    assert_valid_objects(rows)
    assert not list((work / "dcm").rglob("*.tmp"))


def _pids_holding(path: Path) -> list[int]:
    target = os.path.realpath(path)
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{entry.name}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{entry.name}/fd/{fd}") == target:
                    pids.append(int(entry.name))
                    break
            except OSError:
                pass
    return pids


def wait_for_fifo_reader(fifo: Path, timeout: float = 60) -> tuple[int, int]:
    """Wait for one process to open ``fifo`` to read it; returns our write end (close it to
    let the reader go on) and the reader's pid. Opening the write end succeeds once a reader
    has opened the FIFO; the reader then blocks in read(), holding the FIFO open."""
    deadline = time.monotonic() + timeout
    writer = None
    while writer is None:
        assert time.monotonic() < deadline, "no worker opened the FIFO"
        try:
            writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            time.sleep(0.01)
    holders: list[int] = []
    while not holders:  # the woken reader may not have its descriptor yet
        assert time.monotonic() < deadline, "no process holds the FIFO"
        holders = [pid for pid in _pids_holding(fifo) if pid != os.getpid()]
        time.sleep(0.01)
    assert len(holders) == 1, holders
    return writer, holders[0]


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks need privileges on Windows")
def test_paths_escaping_the_roots_are_refused(tmp_path: Path) -> None:
    corpus = generate_corpus(tmp_path / "mimic", 4, seed=9, broken=False)
    outside = tmp_path / "outside"
    (outside / "rec").mkdir(parents=True)
    good = corpus.good[0]
    for suffix in (".hea", ".dat"):
        shutil.copy(corpus.root / f"{good}{suffix}", outside / "rec" / f"x{suffix}")
    (corpus.root / "files" / "escape").symlink_to(outside / "rec")
    out_escape = corpus.good[1]
    work = tmp_path / "work"
    dcm_parent = work / "dcm" / Path(out_escape).parent.parent
    dcm_parent.mkdir(parents=True)
    (dcm_parent / Path(out_escape).parent.name).symlink_to(outside, target_is_directory=True)
    before = sorted(p.relative_to(outside) for p in outside.rglob("*"))

    sid = good.rsplit("/", 1)[1]
    other = [rel.rsplit("/", 1)[1] for rel in corpus.good[2:4]]  # studies not listed
    linked = corpus.root / "files" / "linked"  # a real header, its .dat a link leading out
    linked.mkdir()
    shutil.copy(corpus.root / f"{good}.hea", linked / f"{sid}.hea")
    (linked / f"{sid}.dat").symlink_to(outside / "rec" / "x.dat")
    listing = tmp_path / "list.csv"
    with listing.open("w", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(["study_id", "path"])
        w.writerows([[sid, good], [sid, "../outside/rec/x"], [sid, str(outside / "rec" / "x")],
                     [other[0], "files/escape/x"], [out_escape.rsplit("/", 1)[1], out_escape],
                     [other[1], f"files/linked/{sid}"]])  # other studies: no DuplicateStudy
    args = command(corpus, work)
    args[args.index("--input_csv") + 1] = str(listing)
    proc = run(args)
    assert proc.returncode == 0
    rows = read_rows(work / "out.csv")
    assert rows[0]["dcm_error"] == "" and Path(rows[0]["dcm_path"]).is_file()
    for row in rows[1:]:
        assert row["dcm_error"].startswith("UnsafePath: "), row
        assert row["dcm_path"] == ""
    assert "outside --dcm_dir" in rows[4]["dcm_error"]
    assert rows[5]["dcm_error"] == (
        f"UnsafePath: files/linked/{sid}.dat resolves outside --wfdb_dir (symlink)")
    assert sorted(p.relative_to(outside) for p in outside.rglob("*")) == before


def test_resume_skips_done_overwrite_redoes_deleted_is_redone(tmp_path: Path) -> None:
    corpus = generate_corpus(tmp_path / "mimic", 20, seed=11, broken=False)
    work = tmp_path / "work"
    args = command(corpus, work)
    assert run(args).returncode == 0
    first_csv = (work / "out.csv").read_bytes()
    umask = os.umask(0o022)
    os.umask(umask)
    assert (work / "out.csv").stat().st_mode & 0o777 == 0o666 & ~umask
    files = sorted((work / "dcm").rglob("*.dcm"))
    stats = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in files}
    content = {p: p.read_bytes() for p in files}

    again = run(args)
    assert again.returncode == 0
    assert "converted:                0" in again.stdout
    assert "skipped (already done):   20" in again.stdout
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in files} == stats
    assert (work / "out.csv").read_bytes() == first_csv

    files[3].unlink()
    files[5].write_bytes(content[files[5]][:300])  # damaged, but a stat cannot tell
    resumed = run(args)
    assert "converted:                1" in resumed.stdout
    assert files[3].read_bytes() == content[files[3]]
    assert files[5].stat().st_size == 300

    verified = run(args + ["--verify-existing"])
    assert verified.returncode == 0
    assert "converted:                1" in verified.stdout
    assert "skipped (already done):   19" in verified.stdout
    assert files[5].read_bytes() == content[files[5]]

    redone = run(args + ["--overwrite"])
    assert "converted:                20" in redone.stdout
    assert all(p.stat().st_ino != stats[p][0] for p in files if p != files[3])
    assert {p: p.read_bytes() for p in files} == content
    assert (work / "out.csv").read_bytes() == first_csv


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_every_start_method_gives_the_same_output_as_the_default(tmp_path: Path,
                                                                 method: str) -> None:
    """The default is ``forkserver`` where there is one (see ``pool.start_method``)."""
    if method not in mp.get_all_start_methods():
        pytest.skip(f"this platform has no {method} start method")
    corpus = generate_corpus(tmp_path / "mimic", 10, seed=13)
    work = tmp_path / "work"
    args = command(corpus, work, "--checkpoint", "4")
    assert run(args, env={"WFDB2DICOM_START_METHOD": method}).returncode == 0
    other = tmp_path / method
    work.rename(other)
    assert run(args).returncode == 0
    assert (work / "out.csv").read_bytes() == (other / "out.csv").read_bytes()
    assert dicom_files(work / "dcm") == dicom_files(other / "dcm")


def test_seed_pickle_and_seed_output_are_adopted(tmp_path: Path) -> None:
    import pandas as pd

    corpus = generate_corpus(tmp_path / "mimic", 8, seed=17, broken=False)
    pickle_path = tmp_path / "machine_measurements_info.pkl"
    pd.read_csv(corpus.machine_measurements_csv).to_pickle(pickle_path)
    work = tmp_path / "work"
    args = command(corpus, work, metadata=False) + ["--df_info_pkl", str(pickle_path)]
    proc = run(args)
    assert proc.returncode == 0, proc.stderr
    assert "warning:" in proc.stderr and "pickle" in proc.stderr
    assert_valid_objects(read_rows(work / "out.csv"))

    # An output CSV without a ledger (as the seed's tool leaves it): its rows count as done.
    (work / "out.csv.ledger.sqlite").unlink()
    adopted = run(args)
    assert "skipped (already done):   8" in adopted.stdout


def test_duplicate_rows_are_deterministic(tmp_path: Path) -> None:
    corpus = generate_corpus(tmp_path / "mimic", 3, seed=19, broken=False)
    a, b = corpus.good[0], corpus.good[1]
    sid_a, sid_b = a.rsplit("/", 1)[1], b.rsplit("/", 1)[1]
    listing = tmp_path / "list.csv"
    with listing.open("w", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(["study_id", "path", "comment"])
        w.writerows([[sid_a, a, "first"], [sid_b, a, "other study, same file"],
                     [sid_a, f"{a}.hea", "same as first"], [sid_b, b, ""], [sid_a, a, "copy"]])
    work = tmp_path / "work"
    args = command(corpus, work)
    args[args.index("--input_csv") + 1] = str(listing)
    assert run(args).returncode == 0
    rows = read_rows(work / "out.csv")
    assert [r["comment"] for r in rows] == ["first", "other study, same file", "same as first",
                                          "", "copy"]
    assert rows[0]["dcm_path"] == rows[2]["dcm_path"] == rows[4]["dcm_path"] != ""
    assert rows[1]["dcm_error"].startswith(f"DuplicateOutput: {a}.dcm already belongs to "
                                           f"study_id {sid_a} (row 1)")
    assert rows[3]["dcm_error"] == ""
    assert len(list((work / "dcm").rglob("*.dcm"))) == 2


def test_input_with_a_header_only_gives_a_header_only_output(tmp_path: Path) -> None:
    corpus = generate_corpus(tmp_path / "corpus", 2, seed=5, broken=False)
    header = corpus.record_list_csv.read_text().splitlines()[0]
    corpus.record_list_csv.write_text(header + "\n")
    proc = run(command(corpus, tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out.csv").read_text() == header + ",dcm_path,dcm_error\n"


def test_the_batch_parent_never_imports_pandas(tmp_path: Path) -> None:
    """pyarrow imports pandas (~60 MB, a fraction of a second) the first time it converts a
    Python or numpy object; the parent, which holds the plan and the metadata table and
    shares the CPU with the workers, must never pay for it, nor for OpenBLAS's threads."""
    corpus = generate_corpus(tmp_path / "mimic", 6, seed=19)
    work = tmp_path / "work"
    args = command(corpus, work)
    probe = (
        "import runpy, sys\n"
        f"sys.argv = {args[1:]!r}\n"
        "try:\n"
        "    runpy.run_path(sys.argv[0], run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('pandas imported:', 'pandas' in sys.modules)\n"
        "import os; print('BLAS threads:', os.environ.get('OPENBLAS_NUM_THREADS'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=120, env=env)
    assert "pandas imported: False" in proc.stdout, proc.stdout + proc.stderr
    assert "BLAS threads: 1" in proc.stdout  # none spinning beside the workers
    rows = read_rows(work / "out.csv")
    assert sum(1 for row in rows if row["dcm_path"]) == 6


def test_batch_passes_signal_classes_and_writes_several_objects(
        challenge_record: Path, tmp_path: Path) -> None:
    """``--signal-class`` reaches the workers; a record that makes several objects converts
    whole, its row's ``dcm_path`` its ECG object."""
    listing = tmp_path / "in.csv"
    listing.write_text("study_id,path\na103l,a103l\n")

    def batch(work: Path, *extra: str) -> dict[str, str]:
        proc = run([sys.executable, "-m", "wfdb2dicom.cli", "batch", "--input_csv", str(listing),
                    "--output_csv", str(work / "out.csv"), "--wfdb_dir",
                    str(challenge_record.parent), "--dcm_dir", str(work / "dcm"), "--workers",
                    "1", "--no-progress", "--acquisition-datetime", "2000-01-01T00:00:00",
                    *extra])
        assert proc.returncode in (0, 1), proc.stderr
        (row,) = read_rows(work / "out.csv")
        return row

    row = batch(tmp_path / "all")
    assert row["dcm_error"] == "" and row["dcm_path"].endswith("a103l_s0001_p001_ecg.dcm")
    assert sorted(p.name for p in (tmp_path / "all" / "dcm").iterdir()) == [
        f"a103l_s0001_p001_{kind}.dcm" for kind in ("ecg", "hd", "pulse", "resp")]
    row = batch(tmp_path / "ecg", "--signal-class", "ABP=other", "--signal-class",
                "PLETH=other", "--signal-class", "RESP=other")
    assert row["dcm_error"] == "" and row["dcm_path"].endswith("a103l.dcm")
    assert Path(row["dcm_path"]).is_file()
    proc = run([sys.executable, "-m", "wfdb2dicom.cli", "batch", "--input_csv", str(listing),
                "--output_csv", str(tmp_path / "bad" / "out.csv"), "--wfdb_dir",
                str(challenge_record.parent), "--dcm_dir", str(tmp_path / "bad"),
                "--signal-class", "RESP=lung"])
    assert proc.returncode == 2 and "unknown class 'lung'" in proc.stderr
