"""Both read paths give wfdb's samples; every defect is refused with a one-line reason."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import wfdb

from wfdb2dicom import reader
from wfdb2dicom.errors import RecordError, UnsupportedRecord
from wfdb2dicom.formats import FORMATS
from wfdb2dicom.header import Header, read_any_header, read_header
from wfdb2dicom.reader import read_record, read_segments

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
        (slow_group,) = reader._read_groups_with_wfdb(base, header, True)
        slow = slow_group.samples
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


def test_checksums_written_unsigned_are_the_same_checksums(record_copy: Path) -> None:
    """A WFDB checksum is a 16-bit sum: ``-27318`` and ``38218`` are the same one. The fast
    comparison (the signed sums, in one step) must fall back to comparing modulo 2**16."""
    from wfdb2dicom.header import read_header

    hea = record_copy.with_suffix(".hea")
    header = read_header(hea)
    signed = [c for c in header.checksums if c is not None and c < 0]
    assert signed, "the fixture needs a negative checksum for this test to mean anything"
    text = hea.read_text()
    for checksum in signed:
        text = text.replace(f" {checksum} ", f" {checksum & 0xFFFF} ", 1)
    hea.write_text(text)
    assert read_header(hea).checksums != header.checksums
    record = read_record(record_copy)
    assert record.groups[0].samples.shape[0] == header.n_samples
    dat = record_copy.with_suffix(".dat")  # and a corrupt sample is still caught
    data = bytearray(dat.read_bytes())
    data[0] ^= 0x01
    dat.write_bytes(bytes(data))
    assert_refused(record_copy, "checksum mismatch")


def test_latin1_header_kept_intact(record_copy: Path) -> None:
    """A header that is not UTF-8 is Latin-1 (what WFDB headers historically are)."""
    hea = record_copy.with_suffix(".hea")
    hea.write_bytes(hea.read_bytes().replace(b"ECG 1", b"ECG \xb0", 1))
    record = read_record(record_copy, verify_checksums=False)
    assert record.groups[0].channels[0].label == "ECG \u00b0"


def test_latin1_units_of_real_header(physionet_dir: Path) -> None:
    """test_generator_2 has a Latin-1 degree sign as the units of two signals."""
    record = read_record(physionet_dir / "wfdb-python" / "test_generator_2")
    units = [c.units for g in record.groups for c in g.channels]
    assert units.count("\u00b0") == 2


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


# --- every record of the shared data, all formats and layouts --------------------------------

def _shared_headers() -> list[Path]:
    from conftest import SHARED_DATA

    return sorted((SHARED_DATA / "physionet").rglob("*.hea"))


def _is_layout(hea: Path) -> bool:
    return hea.stem.endswith("_layout")


def _signal_files_present(hea: Path) -> bool:
    """Every signal file (every segment's, for a multi-segment record) is there."""
    header = wfdb.rdheader(str(hea.with_suffix("")))
    if isinstance(header, wfdb.MultiRecord):
        return all(_signal_files_present(hea.with_name(f"{name}.hea"))
                   for name, length in zip(header.seg_name, header.seg_len, strict=True)
                   if name != "~" and length > 0 and hea.with_name(f"{name}.hea").exists())\
            and all(hea.with_name(f"{name}.hea").exists() for name, length
                    in zip(header.seg_name, header.seg_len, strict=True)
                    if name != "~" and length > 0)
    return all(hea.with_name(name).exists() for name in header.file_name)


SHARED_RECORDS = [h for h in _shared_headers() if not _is_layout(h)]


def _wfdb_segments(base: Path) -> list[tuple[int, int, wfdb.Record]]:
    """(index, start frame, record) of each segment with samples, as wfdb reads them."""
    try:
        record = wfdb.rdrecord(str(base), physical=False, smooth_frames=False, m2s=False)
    except ValueError:  # wfdb 4.3 fails to size the dtype of binformats' columns unsmoothed
        record = wfdb.rdrecord(str(base), physical=False)
        assert set(record.samps_per_frame) == {1}
        record.e_d_signal = list(record.d_signal.T)
    if not isinstance(record, wfdb.MultiRecord):
        return [(1, 0, record)]
    result, start = [], 0
    for index, (segment, length) in enumerate(
            zip(record.segments, record.seg_len, strict=True), start=1):
        if segment is not None and length > 0:
            result.append((index, start, segment))
        start += length
    return result


def _assert_group_bits_cover(group) -> None:
    assert group.bits_stored is not None
    assert group.samples.dtype == np.dtype("<i4" if max(group.bits_stored) > 16 else "<i2")
    assert group.samples.flags.c_contiguous
    for position, (channel, bits) in enumerate(
            zip(group.channels, group.bits_stored, strict=True)):
        column = group.samples[:, position]
        if column.size:
            assert -(2 ** (bits - 1)) <= column.min() and column.max() < 2 ** (bits - 1)
        declared = channel.adc_resolution
        if FORMATS[channel.fmt].sample_range[0] >= -(2 ** (declared - 1)):
            assert bits >= declared


@pytest.mark.parametrize("hea", [h for h in SHARED_RECORDS if _signal_files_present(h)],
                         ids=lambda h: h.stem)
def test_every_shared_record_equals_wfdb(hea: Path) -> None:
    """Per signal and time span: wfdb's rdrecord(physical=False, smooth_frames=False)."""
    base = hea.with_suffix("")
    ours = list(read_segments(base))
    theirs = _wfdb_segments(base)
    assert [(s.index, s.start_frame) for s in ours] == [(i, f) for i, f, _ in theirs]
    for segment, (_, _, expected) in zip(ours, theirs, strict=True):
        assert segment.frame_rate == pytest.approx(wfdb.rdheader(str(base)).fs)
        by_name: dict[tuple[str, float], np.ndarray] = {}
        for group in segment.record.groups:
            _assert_group_bits_cover(group)
            for position, channel in enumerate(group.channels):
                by_name[channel.label, group.sampling_frequency] = group.samples[:, position]
        assert sum(len(g.channels) for g in segment.record.groups) == expected.n_sig
        for name, spf, column in zip(expected.sig_name, expected.samps_per_frame,
                                     expected.e_d_signal, strict=True):
            np.testing.assert_array_equal(by_name[name, expected.fs * spf], column, name)


def _fmt16_single_file(hea: Path) -> bool:
    header = read_any_header(hea)
    return isinstance(header, Header) and reader._fast_path_applies(header)


@pytest.mark.parametrize("hea", [h for h in SHARED_RECORDS if _fmt16_single_file(h)],
                         ids=lambda h: h.stem)
def test_fast_path_equals_wfdb_path_on_shared_records(hea: Path) -> None:
    """Single-file format-16 records of the shared data: both paths, identical samples."""
    base = hea.with_suffix("")
    header = read_header(hea)
    fast = reader._read_fmt16_single_file(str(base), header)
    (slow_group,) = reader._read_groups_with_wfdb(base, header, True)
    np.testing.assert_array_equal(fast, slow_group.samples)


@pytest.mark.parametrize(("rel", "chunk"), [
    ("100", 99_991), ("wfdb-python/mixedsignals", 99_991), ("wfdb-python/flacformats", 997),
    ("wfdb-python/multi-segment/041s/041s01", 997), ("wfdb-python/311derive_3", 997),
    ("wfdb-python/test_generator_2", 99_991),
])
def test_chunked_read_equals_one_read(physionet_dir: Path, rel: str, chunk: int) -> None:
    """Chunks that do not divide the record give the same groups as one read."""
    base = physionet_dir / rel
    header = read_header(base.with_suffix(".hea"))
    whole = reader._read_groups_with_wfdb(base, header, True, chunk_samples=1 << 40)
    chunked = reader._read_groups_with_wfdb(base, header, True, chunk_samples=chunk)
    assert len(whole) == len(chunked)
    for a, b in zip(whole, chunked, strict=True):
        assert a.bits_stored == b.bits_stored and a.samples.dtype == b.samples.dtype
        np.testing.assert_array_equal(a.samples, b.samples)


def test_segment_start_times_follow_the_master_header(physionet_dir: Path) -> None:
    base = physionet_dir / "wfdb-python/multi-segment/s25047/s25047-2704-05-04-10-44"
    segments = list(read_segments(base))
    assert [s.index for s in segments] == list(range(3, 21))  # layout and gap skipped
    first = segments[0]
    assert first.start_frame == 25740 and first.frame_rate == 125
    assert first.record.base_datetime.isoformat() == "2704-05-04T10:47:44.449000"
    assert segments[-1].record.base_datetime.isoformat() == "2704-05-04T11:44:12.649000"
    assert "<age>: ?? <sex>: ?" in first.record.comments  # the master's comments carry over
    assert len(segments[-1].record.groups[0].channels) == 3  # this segment adds ABP


def test_segments_are_read_lazily(tmp_path: Path, physionet_dir: Path) -> None:
    """A segment's samples are read when it is taken: the first comes out whole although
    the second's samples are corrupt, which shows only when the second is taken."""
    for path in (physionet_dir / "wfdb-python/multi-segment/041s").iterdir():
        shutil.copy(path, tmp_path / path.name)
    dat = tmp_path / "041s02.dat"
    data = bytearray(dat.read_bytes())
    data[100] ^= 0x01
    dat.write_bytes(bytes(data))
    segments = read_segments(tmp_path / "041s")
    assert next(segments).record.name == "041s01"
    with pytest.raises(RecordError, match="checksum mismatch"):
        next(segments)


def test_missing_segment_refused_naming_it(physionet_dir: Path) -> None:
    base = physionet_dir / "wfdb-python/multi-segment/p000878/p000878-2137-10-26-16-57"
    with pytest.raises(RecordError, match="3269321_0003.hea"):
        next(read_segments(base))


def test_missing_segment_signal_file_refused_before_any_segment(tmp_path: Path,
                                                                 physionet_dir: Path) -> None:
    for path in (physionet_dir / "wfdb-python/multi-segment/041s").iterdir():
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "041s02.dat").unlink()
    with pytest.raises(RecordError, match="missing signal file 041s02.dat"):
        next(read_segments(tmp_path / "041s"))


@pytest.mark.parametrize(("old", "new", "reason"), [
    ("041s01 7 125 1000", "041s01 7 250 1000", "runs at 250 frames/s, the record at 125"),
    ("041s01 7 125 1000", "041s01 7 125 999", "has 999 frames, the record header says 1000"),
])
def test_segment_disagreeing_with_master_refused(tmp_path: Path, physionet_dir: Path,
                                                 old: str, new: str, reason: str) -> None:
    for path in (physionet_dir / "wfdb-python/multi-segment/041s").iterdir():
        shutil.copy(path, tmp_path / path.name)
    hea = tmp_path / "041s01.hea"
    hea.write_text(hea.read_text().replace(old, new))
    with pytest.raises(RecordError, match=reason):
        next(read_segments(tmp_path / "041s"))


def test_layout_header_is_not_a_record(physionet_dir: Path) -> None:
    assert_refused(physionet_dir / "wfdb-python/multi-segment/s25047/3234460_layout",
                   "layout header")


def test_single_segment_record_is_one_segment(physionet_dir: Path) -> None:
    (segment,) = read_segments(physionet_dir / "100")
    assert (segment.index, segment.start_frame, segment.frame_rate) == (1, 0, 360)
    record = read_record(physionet_dir / "100")
    assert segment.record.name == record.name
    np.testing.assert_array_equal(segment.record.groups[0].samples, record.groups[0].samples)


def test_record_100_bits_stored_cover_its_samples(physionet_dir: Path) -> None:
    """Format 212, ADC zero 1024, resolution 11: samples 481..1311 need 12 bits."""
    (group,) = read_record(physionet_dir / "100").groups
    assert group.bits_stored == (12, 12)
    assert group.samples.dtype == np.dtype("<i2")


def test_counter_frequency_and_samples_per_frame(physionet_dir: Path) -> None:
    """mixedsignals: frame rate 62.4725 (counter 999.56), 4, 2 and 1 samples per frame."""
    record = read_record(physionet_dir / "wfdb-python/mixedsignals")
    rates = [(g.sampling_frequency, [c.label for c in g.channels]) for g in record.groups]
    assert rates == [(pytest.approx(249.89), ["II", "III", "V"]),
                     (pytest.approx(124.945), ["ABP", "Pleth"]),
                     (pytest.approx(62.4725), ["Resp"])]


def test_wide_formats_give_int32(physionet_dir: Path) -> None:
    """Formats 24, 32 and FLAC 524 need more than 16 bits; format 8's signal here does not."""
    record = read_record(physionet_dir / "wfdb-python/binformats")
    (group,) = record.groups
    assert group.samples.dtype == np.dtype("<i4")
    bits = dict(zip((c.fmt for c in group.channels), group.bits_stored, strict=True))
    assert bits["24"] == 24 and bits["32"] == 32 and bits["8"] == 12 and bits["212"] == 12
    (flac,) = read_record(physionet_dir / "wfdb-python/flacformats").groups
    assert flac.samples.dtype == np.dtype("<i4") and flac.bits_stored == (8, 16, 24)


def test_fast_path_takes_bits_from_the_layout(demo_corpus) -> None:
    """Format 16 at 16-bit resolution: Bits Stored 16 without looking at the samples."""
    for rel in demo_corpus.good[:3]:
        base = demo_corpus.root / rel
        header = read_header(base.with_suffix(".hea"))
        (group,) = read_record(base).groups
        assert group.bits_stored is header.layout.fmt16_bits_stored
        assert group.bits_stored == (16,) * header.n_signals


def test_fast_path_narrow_resolution_computes_bits(record_copy: Path) -> None:
    """A format-16 record declaring 12 bits gets at least 12, more if its samples need."""
    hea = record_copy.with_suffix(".hea")
    text = hea.read_text()
    hea.write_text(text.replace(" 16 0 ", " 12 0 "))
    header = read_header(hea)
    assert reader._fast_path_applies(header) and header.layout.fmt16_bits_stored is None
    (group,) = read_record(record_copy).groups
    _assert_group_bits_cover(group)
    assert all(bits >= 12 for bits in group.bits_stored)


# --- skew: checksums over the samples as stored, samples de-skewed as wfdb does --------------

def _skewed_record(directory: Path, skews: list[int], spf: list[int] | None = None,
                   fmt: str = "212") -> Path:
    """A record written by wfdb.wrsamp, its header then edited to declare skews.

    The checksums wfdb wrote cover the samples as stored, which a skew does not change.
    """
    rng = np.random.default_rng(sum(skews))
    n_frames = 300
    spf = spf or [1] * len(skews)
    signals = [rng.integers(-1000, 1000, n_frames * s) for s in spf]
    if set(spf) == {1}:
        wfdb.wrsamp("skewed", fs=250, units=["mV"] * len(skews),
                    sig_name=[f"S{i}" for i in range(len(skews))],
                    d_signal=np.stack(signals, axis=1).astype(np.int16), fmt=[fmt] * len(skews),
                    adc_gain=[200.0] * len(skews), baseline=[0] * len(skews),
                    write_dir=str(directory))
    else:
        wfdb.wrsamp("skewed", fs=250, units=["mV"] * len(skews),
                    sig_name=[f"S{i}" for i in range(len(skews))],
                    e_d_signal=[s.astype(np.int16) for s in signals], fmt=[fmt] * len(skews),
                    samps_per_frame=spf, adc_gain=[200.0] * len(skews),
                    baseline=[0] * len(skews), write_dir=str(directory))
    hea = directory / "skewed.hea"
    lines = hea.read_text().splitlines()
    for i, skew in enumerate(skews):
        fields = lines[1 + i].split(" ")
        fields[1] += f":{skew}"
        lines[1 + i] = " ".join(fields)
    hea.write_text("\n".join(lines) + "\n")
    return directory / "skewed"


def test_skewed_212_record_equals_wfdb(tmp_path: Path) -> None:
    """Three signals in format 212, two skewed: once refused as "checksum mismatch"."""
    base = _skewed_record(tmp_path, [0, 4, 4])
    assert ":4" in base.with_suffix(".hea").read_text()
    (group,) = read_record(base).groups
    # wfdb 4.3 fails on skew unsmoothed; with one sample per frame smoothing changes nothing
    np.testing.assert_array_equal(group.samples, wfdb.rdrecord(str(base), physical=False).d_signal)
    _assert_group_bits_cover(group)


def test_unequal_skews_shift_each_signal(tmp_path: Path) -> None:
    """Each signal moves by its own skew; the frames past the stored end are invalid.
    (wfdb 4.3 fails on skews that differ from each other; the rule is the one it applies
    when they are equal.)"""
    base = _skewed_record(tmp_path, [0, 4, 7])
    (group,) = read_record(base).groups
    (chunked,) = reader._read_groups_with_wfdb(base, read_header(base.with_suffix(".hea")),
                                               True, chunk_samples=100)
    np.testing.assert_array_equal(chunked.samples, group.samples)
    stored = wfdb.rdrecord(str(base), physical=False, ignore_skew=True).d_signal
    for position, skew in enumerate([0, 4, 7]):
        np.testing.assert_array_equal(group.samples[:300 - skew, position], stored[skew:, position])
        assert (group.samples[300 - skew:, position] == FORMATS["212"].invalid_value).all()
    _assert_group_bits_cover(group)


def test_skewed_record_checksum_still_checked(tmp_path: Path) -> None:
    base = _skewed_record(tmp_path, [0, 4, 7])
    hea = base.with_suffix(".hea")
    lines = hea.read_text().splitlines()
    fields = lines[2].split(" ")
    fields[6] = str(int(fields[6]) + 1)
    lines[2] = " ".join(fields)
    hea.write_text("\n".join(lines) + "\n")
    assert_refused(base, "checksum mismatch on signal 'S1'")


def test_skew_with_several_samples_per_frame(tmp_path: Path) -> None:
    """A skew counts frames: k frames of a 2-sample-per-frame signal are 2k samples, and
    every one of them past the stored end is the invalid value. (wfdb 4.3 cannot read this
    record with smooth_frames=False: its de-skew of expanded signals fails.)"""
    base = _skewed_record(tmp_path, [0, 3], spf=[1, 2], fmt="16")
    record = read_record(base)
    wide = next(g for g in record.groups if g.sampling_frequency == 500)
    stored = wfdb.rdrecord(str(base), physical=False, smooth_frames=False,
                           ignore_skew=True).e_d_signal[1]
    np.testing.assert_array_equal(wide.samples[:-6, 0], stored[6:])
    assert (wide.samples[-6:, 0] == FORMATS["16"].invalid_value).all()


# --- format 8: first differences, width as the samples need ---------------------------------

def _format8_record(directory: Path, samples: np.ndarray) -> Path:
    """A one-signal format-8 record (wfdb cannot write format 8): its first differences."""
    differences = np.diff(samples)
    assert np.abs(differences).max() <= 127
    (directory / "f8.dat").write_bytes(differences.astype(np.int8).tobytes())
    checksum = int(samples[1:].sum()) & 0xFFFF
    checksum = checksum - 0x10000 if checksum >= 0x8000 else checksum
    (directory / "f8.hea").write_text(
        f"f8 1 250 {len(differences)}\n"
        f"f8.dat 8 200/mV 0 0 {samples[0]} {checksum} 0 ECG\n")
    return directory / "f8"


@pytest.mark.parametrize("start", [0, 40000])
def test_format_8_width_follows_samples(tmp_path: Path, start: int) -> None:
    """Format 8's running sum may pass 16 bits; then (only then) the samples are int32."""
    ramp = start + np.cumsum(np.full(1000, 100))
    base = _format8_record(tmp_path, ramp)
    (group,) = read_record(base).groups
    expected = wfdb.rdrecord(str(base), physical=False).d_signal[:, 0]
    np.testing.assert_array_equal(group.samples[:, 0], expected)
    wide = expected.max() > 32767
    assert group.samples.dtype == np.dtype("<i4" if wide else "<i2")
    _assert_group_bits_cover(group)


def test_skewed_format_8_is_refused(tmp_path: Path) -> None:
    base = _format8_record(tmp_path, np.arange(0, 500, 5))
    hea = base.with_suffix(".hea")
    hea.write_text(hea.read_text().replace(" 8 200/mV", " 8:2 200/mV"))
    with pytest.raises(UnsupportedRecord, match="no invalid value"):
        read_record(base)


def test_flac_frames_checked_with_several_samples_per_frame(tmp_path: Path,
                                                             physionet_dir: Path) -> None:
    """mixedsignals_e.dat holds 4 samples per frame of 14400 frames: 57600 FLAC frames."""
    for path in (physionet_dir / "wfdb-python").glob("mixedsignals*"):
        shutil.copy(path, tmp_path / path.name)
    hea = tmp_path / "mixedsignals.hea"
    hea.write_text(hea.read_text().replace("999.56 14400", "999.56 14399", 1))
    assert_refused(tmp_path / "mixedsignals",
                   "mixedsignals_e.dat holds 57600 frames, the header declares 57596")


def test_segment_signal_file_checked_by_the_opener_first(tmp_path: Path,
                                                         physionet_dir: Path) -> None:
    """A FIFO as the second segment's signal file is refused before the first is read."""
    from wfdb2dicom.fileio import open_regular_file

    for path in (physionet_dir / "wfdb-python/multi-segment/041s").iterdir():
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "041s02.dat").unlink()
    os.mkfifo(tmp_path / "041s02.dat")
    with pytest.raises(RecordError, match="cannot read signal file 041s02.dat .segment 041s02.: "
                                          "not a regular file"):
        next(read_segments(tmp_path / "041s", opener=open_regular_file))
