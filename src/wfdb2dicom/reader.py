"""Read WFDB records into :class:`~wfdb2dicom.record.EcgRecord`.

Two paths give identical samples (``tests/test_reader.py`` proves it):

* the fast path, for the common single-file format-16 record (all of MIMIC-IV-ECG): the
  ``.dat`` bytes are little-endian int16 interleaved by frame, exactly DICOM Waveform Data,
  so they are used as they are, without a copy;
* everything else through ``wfdb.rdrecord(physical=False)``, which knows every format.

Both paths refuse a signal file shorter or longer than the header declares, and verify the
header checksums unless told not to.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import RecordError, UnsupportedRecord
from .fileio import NotRegularFile, Opener, SizeMismatch, read_file, sibling
from .formats import FORMATS, bits_for_range
from .header import Header, MultiSegmentHeader, SignalSpec, read_any_header, read_header
from .record import EcgRecord, MultiplexGroup, RecordSegment


def record_base(path: str | Path) -> Path:
    """The record path without extension; a trailing ``.hea`` (or ``.dat``) is accepted."""
    path = Path(path)
    if path.suffix in (".hea", ".dat"):
        return path.with_suffix("")
    return path


def read_record(path: str | Path, *, verify_checksums: bool = True,
                opener: Opener | None = None) -> EcgRecord:
    """Read the single-segment record at ``path`` (no extension needed); defects raise
    ``RecordError``.

    ``opener`` opens each of the record's files (see :data:`~wfdb2dicom.fileio.Opener`).
    """
    base = _base(path)
    return _read_single_segment(base, read_header(base + ".hea", opener), verify_checksums,
                                opener)


def read_segments(path: str | Path, *, verify_checksums: bool = True,
                  opener: Opener | None = None) -> Iterator[RecordSegment]:
    """The record at ``path`` as segments, read one at a time (memory: one segment).

    A single-segment record is one segment. A multi-segment record (fixed or variable
    layout) yields each segment that has samples, read as a record of its own with its own
    header (gain, units... of a variable layout's segment), skipping gaps (``~``) and layout
    segments (0 frames). Before the first segment is read, every segment's header and
    signal files must be there: a record with one absent is refused, naming the file, before
    anything is made of it.
    """
    found = open_segments(path, verify_checksums=verify_checksums, opener=opener)
    if isinstance(found, RecordSegment):
        yield found
    else:
        yield from found


def open_segments(path: str | Path, *, verify_checksums: bool = True,
                  opener: Opener | None = None) -> RecordSegment | Iterator[RecordSegment]:
    """:func:`read_segments`, but a single-segment record's one segment is read at once and
    returned as it is: the batch's hot path (all of MIMIC-IV-ECG) pays for no generator. A
    multi-segment record gives the iterator of its segments, read as it is consumed."""
    base = _base(path)
    header = read_any_header(base + ".hea", opener)
    if isinstance(header, Header):
        return RecordSegment(1, 0, header.fs,
                             _read_single_segment(base, header, verify_checksums, opener))
    return _multi_segments(base, header, verify_checksums, opener)


def _multi_segments(base: str, header: MultiSegmentHeader, verify_checksums: bool,
                    opener: Opener | None) -> Iterator[RecordSegment]:
    directory = os.path.dirname(base)
    planned = _plan_segments(directory, header, opener)
    start = header.base_datetime
    for index, start_frame, segment_base, segment_header in planned:
        record = _read_single_segment(segment_base, segment_header, verify_checksums, opener)
        offset = dt.timedelta(microseconds=round(start_frame * 1_000_000 / header.fs))
        yield RecordSegment(index, start_frame, header.fs, record._replace(
            base_datetime=None if start is None else start + offset,
            comments=tuple(dict.fromkeys(header.comments + record.comments)),
        ))


def _base(path: str | Path) -> str:
    base = os.fspath(path)
    return base[:-4] if base.endswith((".hea", ".dat")) else base


def _plan_segments(directory: str, header: MultiSegmentHeader, opener: Opener | None
                   ) -> list[tuple[int, int, str, Header]]:
    """(index, start frame, path, header) of each segment with samples, every file checked."""
    planned = []
    start_frame = 0
    for index, (name, frames) in enumerate(header.segments, start=1):
        if name != "~" and frames > 0:
            if "/" in name or "\\" in name or name in (".", ".."):
                raise RecordError(f"segment {name!r} is not in the record's directory")
            segment_base = os.path.join(directory, name)
            segment = read_header(segment_base + ".hea", opener)
            if segment.fs != header.fs:
                raise RecordError(
                    f"segment {name} runs at {segment.fs:g} frames/s, the record at "
                    f"{header.fs:g}")
            if segment.n_samples is not None and segment.n_samples != frames:
                raise RecordError(
                    f"segment {name} has {segment.n_samples} frames, the record header says "
                    f"{frames}")
            _check_signals(segment)
            for file_name in dict.fromkeys(segment.file_names):
                _check_segment_file(os.path.join(directory, file_name), name, opener)
            planned.append((index, start_frame, segment_base, segment))
        start_frame += frames
    if not planned:
        raise RecordError(f"multi-segment record {header.record_name} has no segment with "
                          f"samples")
    return planned


def _check_segment_file(path: str, segment: str, opener: Opener | None) -> None:
    """The signal file is there (and, with an opener, opens as the opener allows)."""
    name = os.path.basename(path)
    if opener is None:
        if not os.path.exists(path):
            raise RecordError(f"missing signal file {name} (segment {segment})")
        return
    try:
        os.close(opener(path))
    except FileNotFoundError:
        raise RecordError(f"missing signal file {name} (segment {segment})") from None
    except OSError as exc:
        raise RecordError(f"cannot read signal file {name} (segment {segment}): "
                          f"{exc.strerror}") from None


def _read_single_segment(base: str, header: Header, verify_checksums: bool,
                         opener: Opener | None) -> EcgRecord:
    _check_signals(header)
    if _fast_path_applies(header):
        samples = _read_fmt16_single_file(base, header, opener)
        if verify_checksums:
            _verify_checksums(header, column_sums(samples))
        bits_stored = header.layout.fmt16_bits_stored or _bits_stored(
            header.layout.declared_bits, samples.T)
        groups: tuple[MultiplexGroup, ...] = (
            MultiplexGroup(header.fs, header.layout.channels, samples, bits_stored),
        )
    else:
        if opener is not None:  # wfdb opens the files itself: let the opener see them first
            for name in dict.fromkeys(header.file_names):
                try:
                    os.close(opener(os.path.join(os.path.dirname(base), name)))
                except NotRegularFile as exc:  # wfdb would block on it, or read it forever
                    raise RecordError(f"cannot read signal file {name}: {exc.strerror}"
                                      ) from None
                except OSError:  # missing or unreadable: reading reports it below
                    pass
        groups = _read_groups_with_wfdb(Path(base), header, verify_checksums)
    return EcgRecord(
        name=header.record_name,
        groups=groups,
        base_datetime=header.base_datetime,
        comments=header.comments,
    )


def _check_signals(header: Header) -> None:
    """Every signal file must be a plain name in the record's directory (checked once each)."""
    for name in dict.fromkeys(header.file_names):  # one name for all of MIMIC's signals
        if name == "~":
            if set(header.file_names) == {"~"} and not header.n_samples:
                raise RecordError(
                    f"{header.record_name} is a layout header: it lists the signals of a "
                    f"multi-segment record and holds no samples")
            description = header.layout.common[header.file_names.index(name)][10]
            raise RecordError(f"signal {description!r} has no signal file ('~')")
        if "/" in name or "\\" in name or name in (".", ".."):
            raise RecordError(f"signal file {name!r} is not in the record's directory")
        if "\0" in name:  # no file system takes it (os.open raises ValueError)
            raise RecordError(f"signal file name {name!r} holds a NUL character")


def _fast_path_applies(header: Header) -> bool:
    return (header.n_samples is not None and header.layout.single_fmt16
            and len(set(header.file_names)) == 1)


def _read_signal_file(path: str, expected: int | None = None,
                      opener: Opener | None = None) -> bytes:
    try:
        return read_file(path, expected, opener)
    except FileNotFoundError:
        raise RecordError(f"missing signal file {os.path.basename(path)}") from None
    except IsADirectoryError:
        raise RecordError(f"signal file {os.path.basename(path)} is a directory") from None
    except OSError as exc:
        raise RecordError(
            f"cannot read signal file {os.path.basename(path)}: {exc.strerror}") from None


def _size_mismatch(name: str, actual: int | None, expected: int, what: str) -> RecordError:
    """``actual`` None: a stream that gave more than ``expected`` bytes."""
    if actual is None:
        return RecordError(f"signal file {name} is longer than the header says: more than "
                           f"{expected} bytes ({what})")
    relation = "shorter" if actual < expected else "longer"
    return RecordError(
        f"signal file {name} is {relation} than the header says: {actual} bytes, expected "
        f"{expected} ({what})"
    )


def _read_fmt16_single_file(base: str, header: Header, opener: Opener | None = None
                            ) -> np.ndarray:
    file_name = header.file_names[0]
    n_samples = header.n_samples or 0
    expected = n_samples * header.n_signals * 2
    try:
        data = _read_signal_file(sibling(base, file_name), expected,
                                 opener)
    except SizeMismatch as exc:  # found before reading more than the header declares
        raise _size_mismatch(
            file_name, exc.actual, expected,
            f"{n_samples} samples x {header.n_signals} signals x 2 bytes",
        ) from None
    return np.frombuffer(data, dtype="<i2").reshape(n_samples, header.n_signals)


def _expected_file_sizes(header: Header) -> dict[str, tuple[int, str]]:
    """Byte size each signal file must have, for the formats where it is determined."""
    if header.n_samples is None:
        return {}
    per_file: dict[str, list[SignalSpec]] = {}
    for spec in header.signals:
        per_file.setdefault(spec.file_name, []).append(spec)
    sizes = {}
    for name, specs in per_file.items():
        formats = {s.fmt for s in specs}
        fmt = FORMATS.get(formats.pop()) if len(formats) == 1 else None
        samples_per_frame = sum(s.samples_per_frame for s in specs)
        data_bytes = fmt and fmt.file_bytes(header.n_samples * samples_per_frame)
        if data_bytes is None:
            continue
        size = specs[0].byte_offset + data_bytes
        sizes[name] = (size, f"{header.n_samples} frames x {samples_per_frame} samples")
    return sizes


def _check_flac_frames(base: Path, header: Header) -> None:
    """A FLAC file's frame count (its STREAMINFO) must be the header's (frames times the
    file's samples per frame), checked before wfdb allocates what the header declares
    (``999999999999`` frames: 3.6 TiB)."""
    if header.n_samples is None:
        return
    per_file: dict[str, list[SignalSpec]] = {}
    for spec in header.signals:
        per_file.setdefault(spec.file_name, []).append(spec)
    for name, specs in per_file.items():
        spf = specs[0].samples_per_frame
        if not all(FORMATS[s.fmt].compressed and s.samples_per_frame == spf for s in specs):
            continue  # (wfdb refuses a FLAC file whose signals differ in samples per frame)
        import soundfile  # wfdb's FLAC reader; deferred like wfdb

        try:
            frames = soundfile.info(str(base.with_name(name))).frames
        except Exception as exc:  # libsndfile's error types vary by version
            raise RecordError(f"signal file {name} is not FLAC: {exc}") from None
        if frames != header.n_samples * spf:
            raise RecordError(f"signal file {name} holds {frames} frames, the header declares "
                              f"{header.n_samples * spf}")


CHUNK_SAMPLES = 1 << 20
"""Samples (all signals') read from wfdb at a time. wfdb returns int64, so a chunk costs
8 MB however long the segment, and only the record's own samples (int16 mostly) grow with
its length. Chunks are no slower than one read: a 6-hour FLAC segment (38 M samples) read
in 3.1 s whole, 1.7 s in 4 M-sample chunks, 2.0 s in 1 M, 3.4 s in 256 k."""


def _check_signal_files(base: Path, header: Header) -> None:
    """Every signal file exists and, where the format fixes it, has the declared size (a
    FLAC file: the declared frames)."""
    for name in dict.fromkeys(s.file_name for s in header.signals):
        path = base.with_name(name)
        if not path.exists():
            raise RecordError(f"missing signal file {name}")
    for name, (expected, what) in _expected_file_sizes(header).items():
        actual = base.with_name(name).stat().st_size
        if actual != expected:
            raise _size_mismatch(name, actual, expected, what)
    _check_flac_frames(base, header)


def _read_chunk(base: Path, multi_rate: bool, start: int | None, stop: int | None
                ) -> list[np.ndarray]:
    """Per signal, the samples as stored (not de-skewed) of frames ``start:stop``."""
    import wfdb  # deferred: costs ~0.3 s to import and the fast path never needs it

    try:
        rec = wfdb.rdrecord(str(base), physical=False, smooth_frames=not multi_rate,
                            ignore_skew=True, sampfrom=start or 0, sampto=stop)
    except Exception as exc:  # wfdb raises many types for corrupt input
        raise RecordError(f"wfdb cannot read the record: {type(exc).__name__}: {exc}") from None
    if multi_rate:
        return list(rec.e_d_signal)
    return [rec.d_signal[:, i] for i in range(rec.d_signal.shape[1])]


def _read_groups_with_wfdb(base: Path, header: Header, verify_checksums: bool,
                           chunk_samples: int = CHUNK_SAMPLES) -> tuple[MultiplexGroup, ...]:
    """The record's multiplex groups, read through wfdb chunk by chunk.

    One group per samples-per-frame value, in order of first appearance. Samples are int16
    unless a signal needs more bits (formats 24, 32, 524, a format-8 signal that wanders
    far): then its group is int32, losslessly either way. Checksums are verified on the
    samples as stored, then skewed signals are aligned (:func:`_deskew`).
    """
    specs = header.signals
    for spec in specs:
        if spec.fmt not in FORMATS:
            raise RecordError(f"signal {spec.description!r} has unknown format {spec.fmt}")
    _check_signal_files(base, header)
    multi_rate = len({s.samples_per_frame for s in specs}) > 1
    frames = header.n_samples
    if frames is None or any(s.fmt == "8" for s in specs):
        # no declared length, or format 8, whose differences sum from the file's start
        bounds: list[tuple[int | None, int | None]] = [(None, None)]
    else:
        step = max(1, chunk_samples // sum(s.samples_per_frame for s in specs))
        bounds = [(start, min(start + step, frames)) for start in range(0, frames, step)]
    by_rate: dict[int, list[int]] = {}
    for index, spec in enumerate(specs):
        by_rate.setdefault(spec.samples_per_frame, []).append(index)
    narrow = {spf: all(FORMATS[specs[i].fmt].sample_range[0] >= -32768 for i in indices)
              for spf, indices in by_rate.items()}
    arrays: dict[int, np.ndarray] = {}
    where = {i: (spf, position) for spf, indices in by_rate.items()
             for position, i in enumerate(indices)}
    sums = [0] * len(specs)
    lows = [0] * len(specs)
    highs = [0] * len(specs)
    for start, stop in bounds:
        columns = _read_chunk(base, multi_rate, start, stop)
        if not arrays:
            if frames is None:
                frames = len(columns[0]) // specs[0].samples_per_frame
            arrays = {spf: np.empty((frames * spf, len(indices)),
                                    "<i2" if narrow[spf] else "<i4")
                      for spf, indices in by_rate.items()}
        first = start or 0
        for i, (spec, column) in enumerate(zip(specs, columns, strict=True)):
            expected = ((stop if stop is not None else frames) - first) * spec.samples_per_frame
            if len(column) != expected:
                raise RecordError(
                    f"signal {spec.description!r} has {len(column)} samples where the header "
                    f"declares {expected}")
            if not expected:
                continue
            spf, position = where[i]
            arrays[spf][first * spf:first * spf + expected, position] = column
            sums[i] += int(column.sum(dtype=np.int64))
            low, high = int(column.min()), int(column.max())
            lows[i] = low if first == 0 else min(lows[i], low)
            highs[i] = high if first == 0 else max(highs[i], high)
    if verify_checksums:  # WFDB's checksums cover the samples as stored, before de-skew
        _verify_checksums(header, sums)
    _deskew(header, arrays, where, lows)
    groups = []
    for spf, indices in by_rate.items():
        bits_stored = tuple(
            max(header.layout.declared_bits[i], bits_for_range(lows[i], highs[i]))
            for i in indices)
        samples = arrays[spf]
        if samples.dtype != np.dtype("<i2") and max(bits_stored) <= 16:
            samples = samples.astype("<i2")
        channels = tuple(header.layout.channels[i] for i in indices)
        groups.append(MultiplexGroup(header.fs * spf, channels, samples, bits_stored))
    return tuple(groups)


def _bits_stored(declared_bits: tuple[int, ...], columns: np.ndarray) -> tuple[int, ...]:
    """Per signal (a row of ``columns``), the bits its samples need, never less than its
    declared ADC resolution."""
    return tuple(
        max(declared, bits_for_range(column.min(), column.max()) if column.size else 1)
        for declared, column in zip(declared_bits, columns, strict=True)
    )


def _deskew(header: Header, arrays: dict[int, np.ndarray], where: dict[int, tuple[int, int]],
            lows: list[int]) -> None:
    """Align skewed signals with the others, in place, as wfdb does.

    A signal with skew ``k`` has its sample of frame ``t`` stored at frame ``t + k``: its
    de-skewed samples are the stored ones from frame ``k`` on, and its last ``k`` frames,
    which the file does not hold, are the format's invalid value: every sample of those
    frames, for a signal with several samples per frame (wfdb 4.3 fails on that case).
    ``lows`` (each signal's smallest sample) takes the invalid value in.
    """
    for i, spec in enumerate(header.signals):
        if not spec.skew:
            continue
        invalid = FORMATS[spec.fmt].invalid_value
        if invalid is None:
            raise UnsupportedRecord(
                f"signal {spec.description!r} is skewed in format {spec.fmt}, which has "
                f"no invalid value to mark the frames it lacks")
        spf, position = where[i]
        column = arrays[spf][:, position]
        shift = min(spec.skew * spf, len(column))
        column[:len(column) - shift] = column[shift:].copy()
        column[len(column) - shift:] = invalid
        if shift:
            lows[i] = min(lows[i], invalid)


def column_sums(samples: np.ndarray) -> list[int]:
    """Per-channel sums of an (n_samples, n_channels) array modulo 2**16, as signed 16-bit
    values (how WFDB writes checksums: a header's list compares equal in one step).

    ``samples.sum(axis=0)`` on a 12-wide int16 array runs at a fraction of memory speed
    (~10x slower); summing wide rows of k frames at once, in int16 (no casting), and folding
    the k partial sums is exact for what a WFDB checksum needs: the sum modulo 2**16, which
    int16 wrap-around preserves.
    """
    n_samples, n_channels = samples.shape
    frames = _frames_per_row(n_samples)
    add = np.add.reduce
    partial = add(samples.reshape(n_samples // frames, frames * n_channels), 0, np.int16)
    return add(partial.reshape(frames, n_channels), 0, np.int16).tolist()


@lru_cache(maxsize=256)
def _frames_per_row(n_samples: int) -> int:
    """The most frames (up to 40) that divide ``n_samples``: rows of a few hundred values."""
    frames = 40
    while n_samples % frames:
        frames -= 1
    return frames


def _verify_checksums(header: Header, sums: list[int]) -> None:
    """WFDB checksums are the 16-bit sums of each signal's samples."""
    if tuple(sums) == header.checksums:  # every checksum given, written signed: all of MIMIC
        return
    for index, (checksum, total) in enumerate(zip(header.checksums, sums, strict=True)):
        if checksum is None:
            continue
        actual = total & 0xFFFF
        if actual != checksum & 0xFFFF:
            signed = actual - 0x10000 if actual >= 0x8000 else actual
            description = header.layout.common[index][10]
            raise RecordError(
                f"checksum mismatch on signal {description!r}: header {checksum}, "
                f"samples sum to {signed} (corrupt data? --no-checksum converts anyway)"
            )
