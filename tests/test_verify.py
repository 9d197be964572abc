"""`wfdb2dicom verify` passes on a converted run and names the record whose samples changed."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from wfdb2dicom.convert import convert_record


@pytest.fixture(scope="module")
def run_csv(demo_corpus, demo_metadata, tmp_path_factory) -> tuple[Path, Path]:
    """A run CSV in the batch's format, for the demo corpus (broken rows failed)."""
    out = tmp_path_factory.mktemp("verify")
    rows = []
    with demo_corpus.record_list_csv.open(newline="") as handle:
        for row in csv.DictReader(handle):
            target = out / "dicom" / (row["path"] + ".dcm")
            try:
                convert_record(demo_corpus.root / row["path"], target, demo_metadata)
                row.update(dcm_path=str(target), dcm_error="")
            except Exception as exc:
                row.update(dcm_path="", dcm_error=f"{type(exc).__name__}: {exc}")
            rows.append(row)
    path = out / "run.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path, demo_corpus.root


def verify(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wfdb2dicom.cli", "verify", *args],
                          capture_output=True, text=True, timeout=300)


def test_verify_passes_on_a_converted_run(run_csv, demo_corpus) -> None:
    path, root = run_csv
    proc = verify("--output_csv", str(path), "--wfdb_dir", str(root), "--workers", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(demo_corpus.good)} passed, 0 failed" in proc.stdout


def test_verify_fails_on_altered_samples(run_csv, tmp_path) -> None:
    path, root = run_csv
    rows = list(csv.DictReader(path.open(newline="")))
    victim = next(r for r in rows if r["dcm_path"])
    ds = pydicom.dcmread(victim["dcm_path"])
    data = bytearray(ds.WaveformSequence[0].WaveformData)
    data[100] ^= 0x04
    ds.WaveformSequence[0].WaveformData = bytes(data)
    altered = tmp_path / "altered.dcm"
    ds.save_as(altered)
    victim["dcm_path"] = str(altered)
    changed = tmp_path / "run.csv"
    with changed.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    proc = verify("--output_csv", str(changed), "--wfdb_dir", str(root), "--workers", "1")
    assert proc.returncode == 1
    failures = [line for line in proc.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failures) == 1
    assert victim["study_id"] in failures[0] and "differ from the WFDB record" in failures[0]


def test_verify_single_record(physionet_dir, tmp_path) -> None:
    out = tmp_path / "s.dcm"
    import datetime as dt

    from wfdb2dicom.builder import ConversionOptions

    convert_record(physionet_dir / "s0010_re", out,
                   options=ConversionOptions(acquisition_datetime=dt.datetime(2000, 1, 1)))
    proc = verify(str(physionet_dir / "s0010_re"), str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    other = verify(str(physionet_dir / "test01_00s"), str(out))
    assert other.returncode == 1 and "not in the record" in other.stdout


def test_verify_a_batch_run_by_its_output_csv_alone(demo_corpus, tmp_path) -> None:
    """`verify --output_csv RUN.csv`: the run's --wfdb_dir comes from its ledger."""
    out = tmp_path / "run.csv"
    batch = subprocess.run(
        [sys.executable, "-m", "wfdb2dicom.cli", "batch", "--input_csv",
         str(demo_corpus.record_list_csv), "--output_csv", str(out), "--wfdb_dir",
         str(demo_corpus.root), "--dcm_dir", str(tmp_path / "dcm"), "--df_info_pkl",
         str(demo_corpus.machine_measurements_csv), "--workers", "2"],
        capture_output=True, text=True, timeout=300)
    assert batch.returncode == 1  # the corpus's deliberately broken records
    proc = verify("--output_csv", str(out), "--workers", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(demo_corpus.good)} passed, 0 failed" in proc.stdout
