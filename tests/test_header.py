"""Our header parser agrees with wfdb.rdheader on every header we have."""

from __future__ import annotations

from pathlib import Path

import pytest
import wfdb
from hypothesis import given, settings
from hypothesis import strategies as st

from wfdb2dicom.errors import RecordError
from wfdb2dicom.header import (
    MultiSegmentHeader,
    parse_header,
    parse_multi_segment_header,
    read_any_header,
    read_header,
)

PHYSIONET_RECORDS = ["100", "3000003_0003", "s0010_re", "test01_00s"]


def assert_same_as_wfdb(record_base: Path) -> None:
    ours = read_header(record_base.with_suffix(".hea"))
    theirs = wfdb.rdheader(str(record_base))
    assert ours.record_name == theirs.record_name
    assert ours.n_signals == theirs.n_sig
    assert ours.fs == pytest.approx(theirs.fs)
    assert ours.n_samples == (theirs.sig_len or None)  # 0 means "not given" in WFDB
    assert ours.base_time == theirs.base_time
    assert ours.base_date == theirs.base_date
    assert [s.file_name for s in ours.signals] == theirs.file_name
    assert [s.fmt for s in ours.signals] == theirs.fmt
    assert [s.gain for s in ours.signals] == pytest.approx(theirs.adc_gain)
    assert [s.baseline for s in ours.signals] == theirs.baseline
    # wfdb drops a byte that is not UTF-8 (a Latin-1 degree sign), leaving its default mV
    assert [s.units.replace("\u00b0", "mV") for s in ours.signals] == theirs.units
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


def _shared_headers() -> list[Path]:
    from conftest import SHARED_DATA

    return sorted((SHARED_DATA / "physionet").rglob("*.hea"))


@pytest.mark.parametrize("hea", _shared_headers(), ids=lambda h: h.stem)
def test_every_shared_header_matches_wfdb(hea: Path) -> None:
    """Single-segment headers (layouts included) field by field; master headers by their
    segments, frame rate, length and start."""
    header = read_any_header(hea)
    if not isinstance(header, MultiSegmentHeader):
        assert_same_as_wfdb(hea.with_suffix(""))
        return
    theirs = wfdb.rdheader(str(hea.with_suffix("")))
    assert header.record_name == theirs.record_name
    assert header.n_signals == theirs.n_sig
    assert header.fs == pytest.approx(theirs.fs)
    assert header.n_frames == theirs.sig_len
    assert [name for name, _ in header.segments] == theirs.seg_name
    assert [frames for _, frames in header.segments] == theirs.seg_len
    assert (header.base_time, header.base_date) == (theirs.base_time, theirs.base_date)
    assert list(header.comments) == theirs.comments


def test_latin1_header_kept_intact(physionet_dir: Path) -> None:
    """test_generator_2 is Latin-1: its degree signs survive as the units of two signals."""
    hea = physionet_dir / "wfdb-python" / "test_generator_2.hea"
    with pytest.raises(UnicodeDecodeError):
        hea.read_bytes().decode("utf-8")
    units = [s.units for s in read_header(hea).signals]
    assert units.count("\u00b0") == 2


def test_counter_frequency_gives_the_frame_rate() -> None:
    header = parse_header("r 1 62.4725/999.56 10\nr.dat 516x4 200/mV 14 8192 0 0 0 II\n")
    assert header.fs == 62.4725 and header.signals[0].samples_per_frame == 4


def test_skew_is_parsed() -> None:
    header = parse_header("r 2 360 10\nr.dat 212 200 12 0 0 0 0 A\nr.dat 212:4 200 12 0 0 0 0 B\n")
    assert [s.skew for s in header.signals] == [0, 4]
    assert header.layout.fmt16_bits_stored is None


@pytest.mark.parametrize(
    "text, reason",
    [
        ("r/x 1 125 10\n", "bad segment count"),
        ("r/0 1 125 10\n", "no segments"),
        ("r/2 1 125 10\ns1 5\n", "declares 2 segments but 1"),
        ("r/1 1 125 10\ns1 5\ns2 5\n", "declares 1 segments but 2"),
        ("r/1 1 125 10\ns1 five\n", "bad segment line"),
        ("r/1 1 125 10\ns1 -5\n", "bad segment line"),
    ],
)
def test_corrupt_master_headers_give_one_line_reason(text: str, reason: str) -> None:
    with pytest.raises(RecordError, match=reason) as info:
        parse_multi_segment_header(text)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("prefix", ["", "# a comment first\n\n", "\r\n  # indented comment\r\n"])
def test_record_line_found_after_comments_and_blank_lines(
    tmp_path: Path, shared_data: Path, prefix: str
) -> None:
    """Whether a header is multi-segment is read from its record line, which need not be the
    first line (the usual first-line shortcut must not decide on a comment or a blank)."""
    physionet = shared_data / "physionet"
    for source, multi in ((physionet / "wfdb-python" / "multi-segment" / "041s" / "041s.hea",
                           True), (physionet / "100.hea", False)):
        copy = tmp_path / source.name
        copy.write_bytes(prefix.encode() + source.read_bytes())
        header = read_any_header(copy)
        assert isinstance(header, MultiSegmentHeader) is multi
        assert header.record_name == source.stem


@settings(max_examples=3000, deadline=None)
@given(fields=st.lists(st.text(st.sampled_from(list("0123456789:.+-Z T\u0661")), min_size=2,
                               max_size=2), min_size=3, max_size=3))
def test_base_time_fast_path_agrees_with_the_general_rule(fields: list[str]) -> None:
    """``HH:MM:SS`` is parsed by ``datetime.time.fromisoformat`` (in C); whatever it accepts
    or refuses must be what the general ``[[HH:]MM:]SS[.fff]`` rule gives."""
    from wfdb2dicom.header import _parse_time, _time_of_day

    value = ":".join(fields)
    try:
        parsed = _parse_time(value, "test")
    except RecordError:
        parsed = None
    assert parsed == _time_of_day(value)
