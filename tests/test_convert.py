"""``wfdb2dicom convert`` on hostile input: every outcome is an object dciodvfy passes, or one
line on stderr, exit 2, and nothing written (issue 13).

Most cases run the real command line in-process (``cli.main``); those that could hang (FIFOs,
devices) or need a file system of their own (full, read-only) run it as a process.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from conftest import REPO_ROOT, require_tool, run_on_tmpfs
from wfdb2dicom.cli import main
from wfdb2dicom.validate import run_dciodvfy

WHEN = "2101-02-03T04:05:06"


def copy_record(physionet_dir: Path, directory: Path, name: str = "test01_00s") -> Path:
    """A private copy of a PhysioNet record (header, and every signal file it names)."""
    directory.mkdir(parents=True, exist_ok=True)
    for source in physionet_dir.glob(f"{name}.*"):
        shutil.copy(source, directory / source.name)
    return directory / name


@pytest.fixture
def record(physionet_dir: Path, tmp_path: Path) -> Path:
    return copy_record(physionet_dir, tmp_path / "rec")


def convert(capsys: pytest.CaptureFixture, *args: str | Path) -> tuple[int, list[str]]:
    """Run ``wfdb2dicom convert ARGS`` in-process: (exit status, stderr lines)."""
    status = main(["convert", *map(str, args)])
    return status, capsys.readouterr().err.splitlines()


def assert_refused(status: int, err: list[str], reason: str, out: Path | None = None) -> None:
    assert status == 2, err
    assert len(err) == 1 and reason in err[0], err
    if out is not None:
        assert not out.exists()


def header_with_record_line(base: Path, line: str) -> None:
    hea = base.with_suffix(".hea")
    lines = hea.read_text().splitlines()
    hea.write_text("\n".join([line, *lines[1:]]) + "\n")


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}


def write_metadata(path: Path, study_id: str, reports: list[str], **columns: str) -> Path:
    row = {"subject_id": "7", "study_id": study_id, "ecg_time": "2101-01-01 10:00:00",
           **columns, **{f"report_{i}": text for i, text in enumerate(reports)}}
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(row))
        writer.writeheader()
        writer.writerow(row)
    return path


# Item 1: the output may not be one of the conversion's own inputs.

def test_output_that_is_an_input_is_refused(capsys, physionet_dir: Path, tmp_path: Path) -> None:
    base = copy_record(physionet_dir, tmp_path / "rec", "s0010_re")  # two signal files
    metadata = write_metadata(tmp_path / "rec" / "md.csv", "s0010_re", ["Sinus rhythm"])
    os.link(base.with_suffix(".dat"), tmp_path / "rec" / "hard.dcm")
    os.symlink(base.with_suffix(".hea"), tmp_path / "rec" / "link.dcm")
    before = snapshot(tmp_path / "rec")
    outputs = [base.with_suffix(".dat"), base.with_suffix(".hea"), base.with_suffix(".xyz"),
               tmp_path / "rec" / ".." / "rec" / "s0010_re.dat", tmp_path / "rec" / "hard.dcm",
               tmp_path / "rec" / "link.dcm", metadata]
    cwd = os.getcwd()
    try:  # a relative spelling of the same file
        os.chdir(tmp_path / "rec")
        status, err = convert(capsys, "s0010_re", "-o", "s0010_re.dat", "--metadata", "md.csv")
    finally:
        os.chdir(cwd)
    assert_refused(status, err, "an input of this conversion")
    for out in outputs:
        status, err = convert(capsys, base, "-o", out, "--metadata", metadata)
        assert_refused(status, err, "an input of this conversion")
        assert str(out) in err[0]
    assert snapshot(tmp_path / "rec") == before
    assert os.path.islink(tmp_path / "rec" / "link.dcm")


# Item 3: text and dates that dciodvfy would reject.

def test_control_characters_become_spaces(capsys, record: Path, tmp_path: Path) -> None:
    require_tool("dciodvfy")
    statements = ["a\tb", "c\x00d", "e\x07f", "g\x01h", "i\x7fj", "k\r\nl", "\x00\x07"]
    metadata = write_metadata(tmp_path / "md.csv", record.name, statements)
    hea = record.with_suffix(".hea")
    hea.write_bytes(hea.read_bytes().replace(b"ECG 1", b"EC\x00G\x07").replace(b"ECG 2", b"\x00"))
    out = tmp_path / "o.dcm"
    status, err = convert(capsys, record, "-o", out, "--metadata", metadata)
    assert status == 0, err
    report = run_dciodvfy(out)
    assert report.clean, report.errors + report.warnings
    ds = pydicom.dcmread(out)
    texts = [item.UnformattedTextValue for item in ds.WaveformAnnotationSequence]
    # CR and LF are allowed in ST; a statement of control characters only says nothing.
    assert texts == ["a b", "c d", "e f", "g h", "i j", "k\r\nl"]
    labels = [item.ChannelLabel for item in ds.WaveformSequence[0].ChannelDefinitionSequence]
    assert labels[:2] == ["EC G", "Unspecified lead"]


@pytest.mark.parametrize("statement, length", [("心" * 400, 1200), ("é" * 1024, 2048),
                                               ("x" * 1025, 1025)])
def test_statement_too_long_in_utf8_bytes_is_refused(capsys, record: Path, tmp_path: Path,
                                                     statement: str, length: int) -> None:
    metadata = write_metadata(tmp_path / "md.csv", record.name, ["ok", statement])
    out = tmp_path / "o.dcm"
    status, err = convert(capsys, record, "-o", out, "--metadata", metadata)
    assert_refused(status, err, f"{length} bytes in UTF-8, at most 1024", out)
    assert len(err[0]) < 300  # the statement is not repeated whole


def test_statement_of_1024_bytes_passes(capsys, record: Path, tmp_path: Path) -> None:
    require_tool("dciodvfy")
    metadata = write_metadata(tmp_path / "md.csv", record.name, ["é" * 512, "心" * 341 + "x"])
    out = tmp_path / "o.dcm"
    status, err = convert(capsys, record, "-o", out, "--metadata", metadata)
    assert status == 0, err
    assert run_dciodvfy(out).clean


def test_lead_name_too_long_in_bytes_is_refused(capsys, record: Path, tmp_path: Path) -> None:
    hea = record.with_suffix(".hea")
    hea.write_text(hea.read_text().replace("ECG 1", "é" * 9))  # 9 characters, 18 bytes
    out = tmp_path / "o.dcm"
    status, err = convert(capsys, record, "-o", out, "--acquisition-datetime", WHEN)
    assert_refused(status, err, "Channel Label (SH) allows: 18 bytes", out)


@pytest.mark.parametrize("date", ["1/1/1", "31/12/999", "1/1/3000", "1/1/9999"])
def test_header_date_dciodvfy_rejects_is_refused(capsys, record: Path, tmp_path: Path,
                                                 date: str) -> None:
    header_with_record_line(record, f"test01_00s 4 500 4000 10:00:00 {date}")
    out = tmp_path / "o.dcm"
    status, err = convert(capsys, record, "-o", out)
    assert_refused(status, err, "header base date", out)


def test_acquisition_datetime_dciodvfy_rejects_is_refused(capsys, record: Path,
                                                          tmp_path: Path) -> None:
    out = tmp_path / "o.dcm"
    status, err = convert(capsys, record, "-o", out, "--acquisition-datetime",
                          "0001-01-01T00:00:00")
    assert_refused(status, err, "--acquisition-datetime 0001-01-01", out)


@pytest.mark.parametrize("date", ["1/1/1000", "31/12/2999"])
def test_dates_at_the_bounds_pass_dciodvfy(capsys, record: Path, tmp_path: Path,
                                           date: str) -> None:
    require_tool("dciodvfy")
    header_with_record_line(record, f"test01_00s 4 500 4000 10:00:00 {date}")
    out = tmp_path / "o.dcm"
    status, err = convert(capsys, record, "-o", out)
    assert status == 0, err
    assert run_dciodvfy(out).clean


# Item 7: base times that overflow.

@pytest.mark.parametrize("time", ["99999999999:00:00", "-2147483649", "08:35:inf", "nan",
                                  "1e400", "0:0:-1e308"])
def test_base_time_that_overflows_is_refused(capsys, record: Path, tmp_path: Path,
                                             time: str) -> None:
    header_with_record_line(record, f"test01_00s 4 500 4000 {time} 01/01/2100")
    out = tmp_path / "o.dcm"
    status, err = convert(capsys, record, "-o", out)
    assert_refused(status, err, "bad base time", out)


# Item 8: a sample count the files cannot hold, refused before anything is allocated.

@pytest.mark.parametrize("name, line", [
    ("test01_00s", "test01_00s 4 500 {}"),  # format 16, one file: the fast path
    ("100", "100 2 360 {}"),  # format 212: the wfdb path
])
@pytest.mark.parametrize("count", ["999999999999", "18446744073709551617"])
def test_huge_sample_count_is_refused(capsys, physionet_dir: Path, tmp_path: Path, name: str,
                                      line: str, count: str) -> None:
    base = copy_record(physionet_dir, tmp_path / "rec", name)
    hea = base.with_suffix(".hea")
    lines = [x for x in hea.read_text().splitlines() if x.split()[:1] == [name]]
    hea.write_text(hea.read_text().replace(lines[0], line.format(count)))
    out = tmp_path / "o.dcm"
    status, err = convert(capsys, base, "-o", out, "--acquisition-datetime", WHEN)
    assert_refused(status, err, "shorter than the header says", out)


# Item 9: what is not a regular file is refused, without blocking.

def run_cli(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "wfdb2dicom.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs (POSIX)")
@pytest.mark.parametrize("suffix, make", [
    (".dat", os.mkfifo),
    (".hea", os.mkfifo),
    (".dat", lambda path: os.symlink("/dev/zero", path)),
    (".hea", lambda path: os.symlink("/dev/zero", path)),
])
def test_convert_refuses_what_is_not_a_regular_file(record: Path, tmp_path: Path, suffix: str,
                                                    make) -> None:
    target = record.with_suffix(suffix)
    target.unlink()
    make(target)
    out = tmp_path / "o.dcm"
    proc = run_cli("convert", record, "-o", out, "--acquisition-datetime", WHEN, timeout=30)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "not a regular file" in lines[0], proc.stderr
    assert not out.exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs (POSIX)")
@pytest.mark.parametrize("name, make, kind", [
    ("md.csv", os.mkfifo, "a FIFO"),
    ("md.pkl", os.mkfifo, "a FIFO"),
    ("md.parquet", lambda path: os.symlink("/dev/zero", path), "a character device"),
])
def test_convert_refuses_a_metadata_table_that_is_not_a_regular_file(
        record: Path, tmp_path: Path, name: str, make, kind: str) -> None:
    table = tmp_path / name
    make(table)
    out = tmp_path / "o.dcm"
    proc = run_cli("convert", record, "-o", out, "--metadata", table, timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        f"wfdb2dicom convert: metadata file is not a regular file ({kind}): {table}"]
    assert not out.exists()


# Item 12: a full or read-only file system is a refusal naming the path, and leaves nothing.

@pytest.mark.parametrize("mount_options, reason", [("size=16k", "No space left on device"),
                                                   ("ro", "Read-only file system")])
def test_unwritable_output_is_a_refusal(record: Path, tmp_path: Path, mount_options: str,
                                        reason: str) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    for out in (mnt / "o.dcm", mnt / "new" / "deeper" / "o.dcm"):
        converted, listed = run_on_tmpfs(
            mnt, mount_options,
            [sys.executable, "-m", "wfdb2dicom.cli", "convert", record, "-o", out,
             "--acquisition-datetime", WHEN],
            ["ls", "-A", mnt])
        lines = converted.stderr.splitlines()
        assert len(lines) == 1, converted.stderr
        assert f"cannot write {out}: {reason}" in lines[0]
        # Exit 2, and neither the file nor the directories made for it are left.
        assert (converted.returncode, listed.stdout) == (2, "")


def test_output_under_a_file_is_a_refusal(capsys, record: Path, tmp_path: Path) -> None:
    out = record.with_suffix(".hea") / "o.dcm"
    status, err = convert(capsys, record, "-o", out, "--acquisition-datetime", WHEN)
    assert_refused(status, err, f"cannot write {out}")


@pytest.mark.parametrize("count", ["999999999999", "18446744073709551617", "1999"])
def test_flac_sample_count_is_checked_before_reading(capsys, physionet_dir: Path,
                                                     tmp_path: Path, count: str) -> None:
    """FLAC (format 516): the file's own frame count is compared with the header's before
    wfdb allocates what the header declares."""
    import wfdb

    mitdb = wfdb.rdrecord(str(physionet_dir / "100"), physical=False, sampto=2000)
    wfdb.wrsamp("flac", fs=500, units=mitdb.units, sig_name=mitdb.sig_name,
                d_signal=mitdb.d_signal, fmt=["516", "516"], adc_gain=mitdb.adc_gain,
                baseline=mitdb.baseline, write_dir=str(tmp_path))
    base = tmp_path / "flac"
    header_text = base.with_suffix(".hea").read_text()
    header_with_record_line(base, f"flac 2 500 {count}")
    out = tmp_path / "o.dcm"
    status, err = convert(capsys, base, "-o", out, "--acquisition-datetime", WHEN)
    assert_refused(status, err, f"holds 2000 frames, the header declares {count}", out)
    base.with_suffix(".hea").write_text(header_text)  # as written: converts
    status, err = convert(capsys, base, "-o", out, "--acquisition-datetime", WHEN)
    assert status == 0, err


def test_signal_file_name_with_nul_is_refused(capsys, record: Path, tmp_path: Path) -> None:
    """Found by test_convert_properties: the output check met the name first (exit 3)."""
    hea = record.with_suffix(".hea")
    hea.write_text(hea.read_text().replace("test01_00s.dat", "\x00", 1))
    out = tmp_path / "o.dcm"
    status, err = convert(capsys, record, "-o", out, "--acquisition-datetime", WHEN)
    assert_refused(status, err, "holds a NUL character", out)
