"""WFDB header (``.hea``) parsing.

A small parser of our own rather than ``wfdb.rdheader``: it is ~100x faster (the batch hot
path parses one header per record) and it keeps what we need that ``wfdb`` normalises away
(whether a gain or baseline was given, the raw format string). ``tests/test_header.py`` proves
it agrees with ``wfdb.rdheader`` on every header of the test corpora.

Spec: https://wfdb.io/spec/header-files.html
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
from functools import lru_cache
from typing import NamedTuple

from .errors import RecordError
from .fileio import Opener, SizeMismatch, base_name, read_file
from .formats import FORMATS

DEFAULT_GAIN = 200.0
"""WFDB's gain when the header gives none (adu per physical unit)."""

_FORMAT_RE = re.compile(r"^(\d+)(?:x(\d+))?(?::(\d+))?(?:\+(\d+))?$")
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_GAIN_RE = re.compile(rf"^({_NUMBER})(?:\(([-+]?\d+)\))?(?:/(.+))?$")
_FS_RE = re.compile(rf"^({_NUMBER})(?:/([\d.eE+-]+)(?:\(([-\d.]+)\))?)?$")
_RECORD_NAME_RE = re.compile(r"[-A-Za-z0-9_]+")
"""ASCII letters, digits, ``_`` and ``-`` (``p000878-2137-10-26-16-57``): what WFDB names a
record with (wfdb-python misreads a header whose name holds a Unicode digit such as ``¹``)."""


class SignalSpec(NamedTuple):
    """One signal line of a header (a NamedTuple: twelve are made per record)."""

    file_name: str
    fmt: str
    samples_per_frame: int
    skew: int
    byte_offset: int
    gain: float
    baseline: int
    units: str
    adc_resolution: int
    adc_zero: int
    initial_value: int | None
    checksum: int | None
    block_size: int
    description: str


class SignalLayout:
    """What a header's signal lines say apart from file names, initial values and checksums.

    Identical for every record of a corpus layout (all of MIMIC-IV-ECG shares a handful), so
    it is parsed once and shared: ``parse_header`` only splits each line and looks it up.
    """

    __slots__ = ("common", "channels", "single_fmt16", "declared_bits", "fmt16_bits_stored")

    def __init__(self, common: tuple[tuple, ...]) -> None:
        from .record import Channel

        self.common = common
        """Per signal: (fmt, spf, skew, byte_offset, gain, baseline, units, adc_resolution,
        adc_zero, block_size, description)."""
        self.channels = tuple(
            Channel(c[10], c[6], c[4], c[5], c[7], c[0]) for c in common
        )
        """The record's channels, built once per layout."""
        self.single_fmt16 = all(c[0] == "16" and c[1] == 1 and c[2] == 0 and c[3] == 0
                                for c in common)
        """Every signal is plain format 16: the fast path applies if they share one file."""
        self.declared_bits = tuple(_declared_bits(c[0], c[7]) for c in common)
        """Per signal, the ADC resolution when the format can hold it, else 0 (unknown)."""
        self.fmt16_bits_stored = (
            tuple(16 for _ in common)
            if self.single_fmt16 and all(b in (0, 16) for b in self.declared_bits) else None
        )
        """Bits stored of a fast-path record, known without looking at its samples (16 per
        signal when every ADC resolution is 16 or unknown); None when some is narrower."""


def _declared_bits(fmt: str, adc_resolution: int) -> int:
    """The ADC resolution, when it is one the format's samples can have; else 0."""
    signal_format = FORMATS.get(fmt)
    if signal_format is None or adc_resolution < 1:
        return 0
    low, _ = signal_format.sample_range
    return adc_resolution if adc_resolution <= (~low).bit_length() + 1 else 0


@lru_cache(maxsize=1024)
def _signal_layout(common: tuple[tuple, ...]) -> SignalLayout:
    return SignalLayout(common)


class Header(NamedTuple):
    """A parsed single-segment WFDB header (a NamedTuple: one is made per record)."""

    record_name: str
    n_signals: int
    fs: float
    n_samples: int | None
    base_time: dt.time | None
    base_date: dt.date | None
    layout: SignalLayout
    file_names: tuple[str, ...]
    initial_values: tuple[int | None, ...]
    checksums: tuple[int | None, ...]
    comments: tuple[str, ...]

    @property
    def signals(self) -> tuple[SignalSpec, ...]:
        """Every signal line in full (built on demand: the fast path does not need them)."""
        return tuple(
            SignalSpec(name, c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], init, check,
                       c[9], c[10])
            for name, c, init, check in zip(self.file_names, self.layout.common,
                                            self.initial_values, self.checksums, strict=True)
        )

    @property
    def base_datetime(self) -> dt.datetime | None:
        """Start of the recording, when the header gives both date and time."""
        if self.base_time is None or self.base_date is None:
            return None
        return dt.datetime.combine(self.base_date, self.base_time)


def read_header(hea_path: str | os.PathLike[str], opener: Opener | None = None) -> Header:
    """Read and parse ``hea_path``; any defect raises :class:`RecordError`."""
    text, name = _read_header_text(hea_path, opener)
    return parse_header(text, name)


def read_any_header(hea_path: str | os.PathLike[str], opener: Opener | None = None
                    ) -> Header | MultiSegmentHeader:
    """The header at ``hea_path``, single- or multi-segment (``name/nseg`` record line)."""
    text, name = _read_header_text(hea_path, opener)
    line = text.partition("\n")[0].strip()  # usually the record line: no split of the text
    if not line or line.startswith("#") or not line.isprintable():  # a line break in it
        line = _record_line(text)
    if "/" in line.split(None, 1)[0]:
        return parse_multi_segment_header(text, name)
    return parse_header(text, name)


def _record_line(text: str) -> str:
    """The first line that is neither blank nor a comment (stripped), or ``"-"``."""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            return stripped
    return "-"


def _read_header_text(hea_path: str | os.PathLike[str], opener: Opener | None
                      ) -> tuple[str, str]:
    """(text, file name) of a header: UTF-8, else Latin-1.

    Headers are ASCII by intent, and older ones are Latin-1 in practice (a degree sign as
    units); every byte string is Latin-1, so the text is kept intact either way.
    """
    path = os.fspath(hea_path)
    name = base_name(path)
    try:
        raw = read_file(path, opener=opener)
    except FileNotFoundError:
        raise RecordError(f"missing header file {name}") from None
    except IsADirectoryError:
        raise RecordError(f"header {name} is a directory") from None
    except OSError as exc:
        raise RecordError(f"cannot read header {name}: {exc.strerror}") from None
    except SizeMismatch as exc:
        raise RecordError(f"header {name} is larger than {exc.expected} bytes: not a WFDB "
                          "header") from None
    try:
        return raw.decode("utf-8"), name
    except UnicodeDecodeError:
        return raw.decode("latin-1"), name


def parse_header(text: str, source: str = "header") -> Header:
    """Parse header text; ``source`` names the file in error messages."""
    comments, lines = _split_lines(text)
    if not lines:
        raise RecordError(f"{source}: no record line")
    record_name, n_signals, fs, n_samples, base_time, base_date = _parse_record_line(
        lines[0], source
    )
    signal_lines = lines[1:]
    if len(signal_lines) != n_signals:  # more: a signal would be dropped unseen (and wfdb
        raise RecordError(              # refuses the extra line)
            f"{source}: record line declares {n_signals} signals but {len(signal_lines)} signal "
            f"lines follow"
        )
    signals = _parse_signal_lines(signal_lines, source)
    return Header(record_name, n_signals, fs, n_samples, base_time, base_date, *signals,
                  tuple(comments))


class MultiSegmentHeader(NamedTuple):
    """A multi-segment record's master header: its segments, each a record of its own."""

    record_name: str
    n_signals: int
    fs: float
    """Frames per second of the record (every segment's too)."""
    n_frames: int | None
    base_time: dt.time | None
    base_date: dt.date | None
    segments: tuple[tuple[str, int], ...]
    """(segment name, frames) in order; ``~`` is a gap, a 0-frame segment a layout."""
    comments: tuple[str, ...]

    @property
    def base_datetime(self) -> dt.datetime | None:
        """Start of the recording, when the header gives both date and time."""
        if self.base_time is None or self.base_date is None:
            return None
        return dt.datetime.combine(self.base_date, self.base_time)


def parse_multi_segment_header(text: str, source: str = "header") -> MultiSegmentHeader:
    """Parse a master header: ``name/nseg nsig fs [nframes [time [date]]]``, then one
    ``segname nframes`` line per segment."""
    comments, lines = _split_lines(text)
    if not lines:
        raise RecordError(f"{source}: no record line")
    first, _, rest = lines[0].partition(" ")
    name, _, n_segments_text = first.partition("/")
    try:
        n_segments = int(n_segments_text)
    except ValueError:
        raise RecordError(f"{source}: bad segment count {n_segments_text!r}") from None
    if n_segments < 1:
        raise RecordError(f"{source}: record has no segments")
    record_name, n_signals, fs, n_frames, base_time, base_date = _parse_record_line(
        f"{name} {rest}", source
    )
    segment_lines = lines[1:]
    if len(segment_lines) != n_segments:  # more: a segment would be dropped unseen
        raise RecordError(
            f"{source}: record line declares {n_segments} segments but {len(segment_lines)} "
            f"segment lines follow"
        )
    segments = []
    for line in segment_lines:
        fields = line.split()
        try:
            if len(fields) != 2:
                raise ValueError
            frames = int(fields[1])
            if frames < 0:
                raise ValueError
        except ValueError:
            raise RecordError(f"{source}: bad segment line {line!r}") from None
        if fields[0] != "~" and not _valid_record_name(fields[0]):
            raise RecordError(f"{source}: bad segment name {fields[0]!r} (letters, digits, _ "
                              "and - only)")
        segments.append((fields[0], frames))
    return MultiSegmentHeader(record_name, n_signals, fs, n_frames, base_time, base_date,
                              tuple(segments), tuple(comments))


def _split_lines(text: str) -> tuple[list[str], list[str]]:
    """(comments, other non-empty lines) of header text, stripped."""
    if "#" not in text:
        return [], list(filter(None, map(str.strip, text.splitlines())))
    comments: list[str] = []
    lines: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            comments.append(stripped[1:].strip())
            continue
        lines.append(stripped)
    return comments, lines


_layouts_by_fields: dict[tuple[tuple[str, ...], ...], SignalLayout] = {}


def _parse_signal_lines(
    lines: list[str], source: str
) -> tuple[SignalLayout, tuple[str, ...], tuple[int | None, ...], tuple[int | None, ...]]:
    """(layout, file names, initial values, checksums) of the signal lines.

    The fast path covers headers whose signal lines all spell out every field (all of
    MIMIC-IV-ECG): one split per line, and the layout found by the texts of its fields.
    Anything else (or anything the fast path cannot convert) goes line by line.
    """
    split = [line.split(None, 8) for line in lines]
    key = None
    if set(map(len, split)) == {9}:
        names, fmts, gains, resolutions, zeros, initial, checks, blocks, descriptions = zip(
            *split, strict=True
        )
        key = (fmts, gains, resolutions, zeros, blocks, descriptions)
        layout = _layouts_by_fields.get(key)
        try:
            initial_values = tuple(map(int, initial))
            checksums = tuple(map(int, checks))
        except ValueError:
            layout = None
        if layout is not None:
            return layout, names, initial_values, checksums
    parsed = [_parse_signal_line(line, source) for line in lines]
    names, commons, initial_values, checksums = zip(*parsed, strict=True)
    layout = _signal_layout(commons)
    if key is not None:  # every field spelled out: later headers take the fast path
        if len(_layouts_by_fields) >= 1024:
            _layouts_by_fields.clear()
        _layouts_by_fields[key] = layout
    return layout, names, initial_values, checksums


def _parse_record_line(
    line: str, source: str
) -> tuple[str, int, float, int | None, dt.time | None, dt.date | None]:
    fields = line.split()
    name = fields[0]
    if "/" in name:
        raise RecordError(f"{source}: {name} is a multi-segment record, not a segment")
    if not _valid_record_name(name):
        raise RecordError(f"{source}: bad record name {name!r} (letters, digits, _ and - "
                          "only)")
    try:
        n_signals = int(fields[1]) if len(fields) > 1 else 0
    except ValueError:
        raise RecordError(f"{source}: bad signal count {fields[1]!r} in record line") from None
    if n_signals < 1:
        raise RecordError(f"{source}: record has no signals")
    fs = 250.0
    if len(fields) > 2:
        fs = _sampling_frequency(fields[2])
        if fs is None:
            raise RecordError(f"{source}: bad sampling frequency {fields[2]!r}")
        if fs <= 0:
            raise RecordError(f"{source}: sampling frequency must be positive, not {fs:g}")
    n_samples = None
    if len(fields) > 3:
        try:
            n_samples = int(fields[3])
        except ValueError:
            raise RecordError(f"{source}: bad sample count {fields[3]!r}") from None
        if n_samples < 0:
            raise RecordError(f"{source}: negative sample count {n_samples}")
        if n_samples == 0:
            n_samples = None
    if len(fields) > 4 and "-" in fields[4] and _CHALLENGE_DATE_RE.match(fields[4]):
        return name, n_signals, fs, n_samples, None, None  # see _CHALLENGE_DATE_RE
    base_time = _parse_time(fields[4], source) if len(fields) > 4 else None
    base_date = _parse_date(fields[5], source) if len(fields) > 5 else None
    return name, n_signals, fs, n_samples, base_time, base_date


@lru_cache(maxsize=256)
def _sampling_frequency(text: str) -> float | None:
    """The frame rate of a record line's ``fs[/counter[(base)]]`` field; None when it is not
    a finite number (cached: a corpus has a few)."""
    match = _FS_RE.match(text)
    if not match:
        return None
    fs = float(match.group(1))
    return fs if math.isfinite(fs) else None


_CHALLENGE_DATE_RE = re.compile(r"^\d{1,2}-[A-Za-z]{3}-\d{4}$")
"""``05-Feb-2020 11:39:16``: the PhysioNet/CinC Challenge 2020-2021 headers' record lines end
with a date in a form WFDB does not define, where the base time belongs (wfdb-python reads
it as 00:00:05). Such a line is accepted, and its date is not taken for the acquisition
time: the time comes from a table or ``--acquisition-datetime``."""


def _valid_record_name(name: str) -> bool:
    return (name.isascii() and name.isalnum()) or _RECORD_NAME_RE.fullmatch(name) is not None


def _parse_time(value: str, source: str) -> dt.time:
    """``[[HH:]MM:]SS[.fff]`` as a time of day."""
    if len(value) == 8 and value[2] == ":" and value[5] == ":":  # HH:MM:SS, as most are
        try:
            return dt.time.fromisoformat(value)  # in C: base times hardly repeat
        except ValueError:
            pass
    parsed = _time_of_day(value)
    if parsed is None:
        raise RecordError(f"{source}: bad base time {value!r} (expected HH:MM:SS)")
    return parsed


def _time_of_day(value: str) -> dt.time | None:
    """:func:`_parse_time`'s value, None for a bad time.

    Out-of-range numbers raise OverflowError (``dt.time`` on a huge hour, ``int`` of an
    infinite second), not ValueError: both are a bad time.
    """
    try:
        parts = value.split(":")
        if not 1 <= len(parts) <= 3:
            return None
        seconds = float(parts[-1])
        minutes = int(parts[-2]) if len(parts) >= 2 else 0
        hours = int(parts[-3]) if len(parts) == 3 else 0
        whole = int(seconds)
        micro = round((seconds - whole) * 1_000_000)
        return dt.time(hours, minutes, whole, micro)
    except (ValueError, OverflowError):
        return None


def _parse_date(value: str, source: str) -> dt.date:
    """``DD/MM/YYYY`` as a date."""
    parsed = _date_of(value)
    if parsed is None:
        raise RecordError(f"{source}: bad base date {value!r} (expected DD/MM/YYYY)")
    return parsed


@lru_cache(maxsize=4096)
def _date_of(value: str) -> dt.date | None:
    """:func:`_parse_date`'s value, None for a bad date (cached: a corpus's records fall on a
    few thousand days)."""
    try:
        day, month, year = (int(p) for p in value.split("/"))
        return dt.date(year, month, day)
    except (ValueError, OverflowError):
        return None


@lru_cache(maxsize=1024)
def _parse_format(text: str) -> tuple[str, int, int, int] | None:
    """``fmt[xspf][:skew][+offset]``; cached because a corpus has a handful of spellings."""
    match = _FORMAT_RE.match(text)
    if not match:
        return None
    return (match.group(1), int(match.group(2) or 1), int(match.group(3) or 0),
            int(match.group(4) or 0))


@lru_cache(maxsize=1024)
def _parse_gain(text: str) -> tuple[float, int | None, str] | None:
    """``gain[(baseline)][/units]``; a gain of 0 (uncalibrated) means the default."""
    match = _GAIN_RE.match(text)
    if not match:
        return None
    gain = float(match.group(1)) or DEFAULT_GAIN
    if not math.isfinite(gain):
        return None
    baseline = int(match.group(2)) if match.group(2) is not None else None
    return gain, baseline, match.group(3) or "mV"


def _parse_signal_line(
    line: str, source: str
) -> tuple[str, tuple, int | None, int | None]:
    """(file name, common fields, initial value, checksum) of one signal line."""
    fields = line.split(maxsplit=8)
    if len(fields) < 2:
        raise RecordError(f"{source}: signal line {line!r} has no format")
    # File name, initial value and checksum differ per record; the rest repeats across a
    # corpus, so it is parsed once per distinct spelling.
    try:
        common = _parse_common_fields(tuple(fields[1:5]) + tuple(fields[7:]))
    except ValueError as exc:
        raise RecordError(f"{source}: {exc} in signal line {line!r}") from None
    try:
        initial_value = int(fields[5]) if len(fields) > 5 else None
        checksum = int(fields[6]) if len(fields) > 6 else None
    except ValueError:
        raise RecordError(f"{source}: non-numeric field in signal line {line!r}") from None
    return fields[0], common, initial_value, checksum


@lru_cache(maxsize=4096)
def _parse_common_fields(fields: tuple[str, ...]) -> tuple:
    """Format, gain, resolution, zero, block size and description of a signal line.

    Raises ValueError with the reason; the caller names the file.
    """
    parsed_format = _parse_format(fields[0])
    if parsed_format is None:
        raise ValueError(f"bad signal format {fields[0]!r}")
    fmt, spf, skew, byte_offset = parsed_format
    gain, baseline, units = DEFAULT_GAIN, None, "mV"
    if len(fields) > 1:
        parsed_gain = _parse_gain(fields[1])
        if parsed_gain is None:
            raise ValueError(f"bad gain {fields[1]!r}")
        gain, baseline, units = parsed_gain
    try:
        adc_resolution = int(fields[2]) if len(fields) > 2 else 0
        adc_zero = int(fields[3]) if len(fields) > 3 else 0
        block_size = int(fields[4]) if len(fields) > 4 else 0
    except ValueError:
        raise ValueError("non-numeric field") from None
    description = fields[5] if len(fields) > 5 else ""
    return (fmt, spf, skew, byte_offset, gain, adc_zero if baseline is None else baseline, units,
            adc_resolution, adc_zero, block_size, description)
