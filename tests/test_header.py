"""Our header parser agrees with wfdb.rdheader on every header we have."""

from __future__ import annotations

from pathlib import Path

import pytest
import wfdb

from wfdb2dicom.errors import RecordError
from wfdb2dicom.header import parse_header, read_header

PHYSIONET_RECORDS = ["100", "3000003_0003", "s0010_re", "test01_00s"]


def assert_same_as_wfdb(record_base: Path) -> None:
    ours = read_header(record_base.with_suffix(".hea"))
    theirs = wfdb.rdheader(str(record_base))
    assert ours.record_name == theirs.record_name
    assert ours.n_signals == theirs.n_sig
    assert ours.fs == pytest.approx(theirs.fs)
    assert ours.n_samples == theirs.sig_len
    assert ours.base_time == theirs.base_time
    assert ours.base_date == theirs.base_date
    assert [s.file_name for s in ours.signals] == theirs.file_name
    assert [s.fmt for s in ours.signals] == theirs.fmt
    assert [s.gain for s in ours.signals] == pytest.approx(theirs.adc_gain)
    assert [s.baseline for s in ours.signals] == theirs.baseline
    assert [s.units for s in ours.signals] == theirs.units
    assert [s.adc_resolution for s in ours.signals] == theirs.adc_res
    assert [s.adc_zero for s in ours.signals] == theirs.adc_zero
    assert [s.initial_value for s in ours.signals] == theirs.init_value
    assert [s.checksum for s in ours.signals] == theirs.checksum
    assert [s.description for s in ours.signals] == theirs.sig_name
    assert list(ours.comments) == theirs.comments


@pytest.mark.parametrize("name", PHYSIONET_RECORDS)
def test_physionet_headers_match_wfdb(physionet_dir: Path, name: str) -> None:
    assert_same_as_wfdb(physionet_dir / name)


def test_demo_corpus_headers_match_wfdb(demo_corpus) -> None:
    for rel in demo_corpus.good:
        assert_same_as_wfdb(demo_corpus.root / rel)


def test_base_date_and_time() -> None:
    header = parse_header("r 1 500 10 08:44:00.250 14/06/2180\nr.dat 16 200/mV 16 0 0 0 0 I\n")
    assert header.base_datetime.isoformat() == "2180-06-14T08:44:00.250000"
    assert header.signals[0].gain == 200 and header.signals[0].baseline == 0


def test_defaults_per_spec() -> None:
    """Missing gain means 200, missing baseline means adc zero, missing units mean mV."""
    spec = parse_header("r 1 360 10\nr.dat 212 0 12 1024\n").signals[0]
    assert (spec.gain, spec.baseline, spec.units, spec.adc_zero) == (200.0, 1024, "mV", 1024)


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "no record line"),
        ("r x 500\n", "bad signal count"),
        ("r 2 500 10\nr.dat 16 200 16 0 0 0 0 I\n", "declares 2 signals but 1"),
        # A signal count too small would drop a signal unseen (issue 13, property test).
        ("r 1 500 10\nr.dat 16 200 16 0 0 0 0 I\nr.dat 16 200 16 0 0 0 0 II\n",
         "declares 1 signals but 2"),
        ("r 1 500 10 25:99:00\nr.dat 16\n", "bad base time"),
        ("r 1 500 10 10:00:00 31/02/2100\nr.dat 16\n", "bad base date"),
        ("r 1 500 10\nr.dat 16 abc\n", "bad gain"),
        ("r/2 1 500 10\n", "multi-segment"),
        ("r\x1b 1 500 10\nr.dat 16\n", "bad record name"),
        ("\x80 1 500 10\nr.dat 16\n", "bad record name"),
        ("\u00b9 1 500 10\nr.dat 16\n", "bad record name"),
        # Numbers that overflow or are not finite (issue 13, item 7): OverflowError escaped.
        ("r 1 500 10 99999999999:00:00\nr.dat 16\n", "bad base time"),
        ("r 1 500 10 -2147483649\nr.dat 16\n", "bad base time"),
        ("r 1 500 10 08:35:inf\nr.dat 16\n", "bad base time"),
        ("r 1 500 10 08:35:nan\nr.dat 16\n", "bad base time"),
        ("r 1 500 10 1e400\nr.dat 16\n", "bad base time"),
        ("r 1 500 10 10:00:00 1/1/99999999999\nr.dat 16\n", "bad base date"),
        ("r 1 500 10 10:00:00 1/1/-99999999999999999999\nr.dat 16\n", "bad base date"),
        ("r 1 1e999 10\nr.dat 16\n", "bad sampling frequency"),
        ("r 1 500 10\nr.dat 16 1e999\n", "bad gain"),
    ],
)
def test_corrupt_headers_give_one_line_reason(text: str, reason: str) -> None:
    with pytest.raises(RecordError, match=reason) as info:
        parse_header(text)
    assert "\n" not in str(info.value)
