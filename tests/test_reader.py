"""Both read paths give wfdb's samples; every defect is refused with a one-line reason."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import wfdb

from wfdb2dicom import reader
from wfdb2dicom.errors import RecordError
from wfdb2dicom.header import read_header
from wfdb2dicom.reader import read_record

PHYSIONET_RECORDS = ["100", "3000003_0003", "s0010_re", "test01_00s"]


def wfdb_columns(base: Path) -> np.ndarray:
    return wfdb.rdrecord(str(base), physical=False).d_signal


@pytest.mark.parametrize("name", PHYSIONET_RECORDS)
def test_samples_equal_wfdb(physionet_dir: Path, name: str) -> None:
    record = read_record(physionet_dir / name)
    ours = np.concatenate([g.samples for g in record.groups], axis=1)
    np.testing.assert_array_equal(ours, wfdb_columns(physionet_dir / name))


def test_fast_path_equals_wfdb_path(demo_corpus) -> None:
    """The fmt-16 fast path and the wfdb path give identical samples on every demo record."""
    for rel in demo_corpus.good:
        base = demo_corpus.root / rel
        header = read_header(base.with_suffix(".hea"))
        assert reader._fast_path_applies(header)
        fast = reader._read_fmt16_single_file(base, header)
        slow = np.stack(reader._read_columns_with_wfdb(base, header), axis=1)
        np.testing.assert_array_equal(fast, slow)
        assert fast.dtype == np.dtype("<i2")


def test_trailing_hea_is_accepted(physionet_dir: Path) -> None:
    record = read_record(physionet_dir / "test01_00s.hea")
    assert record.name == "test01_00s"


@pytest.fixture
def record_copy(tmp_path: Path, physionet_dir: Path) -> Path:
    for suffix in (".hea", ".dat"):
        shutil.copy(physionet_dir / f"test01_00s{suffix}", tmp_path / f"test01_00s{suffix}")
    return tmp_path / "test01_00s"


def assert_refused(base: Path, reason: str, **kwargs) -> None:
    with pytest.raises(RecordError, match=reason) as info:
        read_record(base, **kwargs)
    assert "\n" not in str(info.value)


def test_missing_dat(record_copy: Path) -> None:
    record_copy.with_suffix(".dat").unlink()
    assert_refused(record_copy, "missing signal file test01_00s.dat")


def test_missing_header(record_copy: Path) -> None:
    record_copy.with_suffix(".hea").unlink()
    assert_refused(record_copy, "missing header file")


def test_truncated_dat(record_copy: Path) -> None:
    dat = record_copy.with_suffix(".dat")
    dat.write_bytes(dat.read_bytes()[:-10])
    assert_refused(record_copy, "shorter than the header says")


def test_longer_dat(record_copy: Path) -> None:
    dat = record_copy.with_suffix(".dat")
    dat.write_bytes(dat.read_bytes() + b"\0\0")
    assert_refused(record_copy, "longer than the header says")


def test_truncated_dat_on_wfdb_path(tmp_path: Path, physionet_dir: Path) -> None:
    for suffix in (".hea", ".dat"):
        shutil.copy(physionet_dir / f"100{suffix}", tmp_path / f"100{suffix}")
    dat = tmp_path / "100.dat"
    dat.write_bytes(dat.read_bytes()[:-300])
    assert_refused(tmp_path / "100", "shorter than the header says")


def test_checksum_mismatch_and_switch(record_copy: Path) -> None:
    dat = record_copy.with_suffix(".dat")
    data = bytearray(dat.read_bytes())
    data[0] ^= 0x01
    dat.write_bytes(bytes(data))
    assert_refused(record_copy, "checksum mismatch on signal 'ECG 1'")
    record = read_record(record_copy, verify_checksums=False)
    assert record.groups[0].samples[0, 0] == np.frombuffer(bytes(data[:2]), "<i2")[0]


def test_non_utf8_header(record_copy: Path) -> None:
    hea = record_copy.with_suffix(".hea")
    hea.write_bytes(hea.read_bytes().replace(b"ECG 1", b"ECG \xff"))
    assert_refused(record_copy, "not UTF-8")


def test_signal_file_outside_record_dir(record_copy: Path) -> None:
    hea = record_copy.with_suffix(".hea")
    hea.write_text(hea.read_text().replace("test01_00s.dat", "../etc/passwd", 1))
    assert_refused(record_copy, "not in the record's directory")


def test_signal_file_name_with_nul(record_copy: Path) -> None:
    """Found by tests/test_convert_properties.py: os.open raised ValueError (exit 3)."""
    hea = record_copy.with_suffix(".hea")
    hea.write_text(hea.read_text().replace("test01_00s.dat", "test01\x00.dat", 1))
    assert_refused(record_copy, "holds a NUL character")


@pytest.mark.parametrize("shape", [(5000, 12), (4001, 3), (997, 2), (650000, 2), (1, 1)])
def test_column_sums_match_numpy_mod_16_bits(shape) -> None:
    samples = np.random.default_rng(1).integers(-32768, 32768, shape).astype("<i2")
    expected = samples.sum(axis=0, dtype=np.int64) & 0xFFFF
    assert [s & 0xFFFF for s in reader.column_sums(samples)] == expected.tolist()
