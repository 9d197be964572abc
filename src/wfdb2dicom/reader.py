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

import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import RecordError, UnsupportedRecord
from .fileio import Opener, read_file
from .formats import FORMATS
from .header import Header, SignalSpec, read_header
from .record import EcgRecord, MultiplexGroup


def record_base(path: str | Path) -> Path:
    """The record path without extension; a trailing ``.hea`` (or ``.dat``) is accepted."""
    path = Path(path)
    if path.suffix in (".hea", ".dat"):
        return path.with_suffix("")
    return path


def read_record(path: str | Path, *, verify_checksums: bool = True,
                opener: Opener | None = None) -> EcgRecord:
    """Read the record at ``path`` (no extension needed); defects raise ``RecordError``.

    ``opener`` opens each of the record's files (see :data:`~wfdb2dicom.fileio.Opener`).
    """
    base = os.fspath(path)
    if base.endswith((".hea", ".dat")):
        base = base[:-4]
    header = read_header(base + ".hea", opener)
    _check_signals(header)
    if _fast_path_applies(header):
        samples = _read_fmt16_single_file(base, header, opener)
        if verify_checksums:
            _verify_checksums(header, column_sums(samples))
        groups: tuple[MultiplexGroup, ...] = (
            MultiplexGroup(header.fs, header.layout.channels, samples),
        )
    else:
        if opener is not None:  # wfdb opens the files itself: let the opener see them first
            for name in dict.fromkeys(header.file_names):
                try:
                    os.close(opener(os.path.join(os.path.dirname(base), name)))
                except OSError:  # missing or unreadable: reading reports it below
                    pass
        columns = _read_columns_with_wfdb(Path(base), header)
        if verify_checksums:
            _verify_checksums(header, [int(c.sum(dtype=np.int64)) for c in columns])
        groups = _group_by_rate(header, columns)
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
            description = header.layout.common[header.file_names.index(name)][10]
            raise RecordError(f"signal {description!r} has no signal file ('~')")
        if "/" in name or "\\" in name or name in (".", ".."):
            raise RecordError(f"signal file {name!r} is not in the record's directory")


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


def _size_mismatch(name: str, actual: int, expected: int, what: str) -> RecordError:
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
    data = _read_signal_file(os.path.join(os.path.dirname(base), file_name), expected, opener)
    if len(data) != expected:
        raise _size_mismatch(
            file_name, len(data), expected,
            f"{n_samples} samples x {header.n_signals} signals x 2 bytes",
        )
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


def _read_columns_with_wfdb(base: Path, header: Header) -> list[np.ndarray]:
    """Per-signal digital samples, in header order."""
    for name in dict.fromkeys(s.file_name for s in header.signals):
        path = base.with_name(name)
        if not path.exists():
            raise RecordError(f"missing signal file {name}")
    for name, (expected, what) in _expected_file_sizes(header).items():
        actual = base.with_name(name).stat().st_size
        if actual != expected:
            raise _size_mismatch(name, actual, expected, what)

    import wfdb  # deferred: costs ~0.3 s to import and the fast path never needs it

    multi_rate = len({s.samples_per_frame for s in header.signals}) > 1
    try:
        rec = wfdb.rdrecord(str(base), physical=False, smooth_frames=not multi_rate)
    except Exception as exc:  # wfdb raises many types for corrupt input
        raise RecordError(f"wfdb cannot read the record: {type(exc).__name__}: {exc}") from None
    if multi_rate:
        per_channel = list(rec.e_d_signal)
    else:
        per_channel = [rec.d_signal[:, i] for i in range(rec.d_signal.shape[1])]
    if header.n_samples is not None:
        for spec, column in zip(header.signals, per_channel, strict=True):
            expected = header.n_samples * spec.samples_per_frame
            if len(column) != expected:
                raise RecordError(
                    f"signal {spec.description!r} has {len(column)} samples, header declares "
                    f"{expected}"
                )
    return per_channel


def _group_by_rate(header: Header, columns: list[np.ndarray]) -> tuple[MultiplexGroup, ...]:
    """One multiplex group per samples-per-frame value, in order of first appearance."""
    groups: dict[int, list[int]] = {}
    for index, spec in enumerate(header.signals):
        groups.setdefault(spec.samples_per_frame, []).append(index)
    result = []
    for spf, indices in groups.items():
        stacked = np.stack([columns[i] for i in indices], axis=1)
        if stacked.size and (stacked.min() < -32768 or stacked.max() > 32767):
            raise UnsupportedRecord(
                "samples exceed the 16-bit range of DICOM ECG waveforms (format "
                f"{header.signals[indices[0]].fmt})"
            )
        samples = np.ascontiguousarray(stacked, dtype="<i2")
        channels = tuple(header.layout.channels[i] for i in indices)
        result.append(MultiplexGroup(header.fs * spf, channels, samples))
    return tuple(result)


def column_sums(samples: np.ndarray) -> list[int]:
    """Per-channel sums of an (n_samples, n_channels) array, correct modulo 2**16.

    ``samples.sum(axis=0)`` on a 12-wide int16 array runs at a fraction of memory speed
    (~10x slower); summing wide rows of k frames at once, in int16 (no casting), and folding
    the k partial sums is exact for what a WFDB checksum needs: the sum modulo 2**16, which
    int16 wrap-around preserves.
    """
    n_samples, n_channels = samples.shape
    frames = _frames_per_row(n_samples)
    add = np.add.reduce
    partial = add(samples.reshape(n_samples // frames, frames * n_channels), 0, np.int16)
    return add(partial.reshape(frames, n_channels), 0, np.int64).tolist()


@lru_cache(maxsize=256)
def _frames_per_row(n_samples: int) -> int:
    """The most frames (up to 40) that divide ``n_samples``: rows of a few hundred values."""
    frames = 40
    while n_samples % frames:
        frames -= 1
    return frames


def _verify_checksums(header: Header, sums: list[int]) -> None:
    """WFDB checksums are the 16-bit sums of each signal's samples."""
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
