"""The proof that one object holds its WFDB source, by code that is not ours.

pydicom reads the object (``dcmread``, its Channel Definition items, ``multiplex_array``);
wfdb reads the source (``rdheader``, ``rdrecord``), or the source is its own raw bytes. None
of our reader, header parser, builder or encoder takes part, so a defect there cannot hide.

Why it is fast without being weaker (the first verify decoded both sides in full, twice on
the WFDB side, and parsed every header: 140 MIMIC objects/s on 2 cores, 1/70 of the batch):

* **bytes, not decodes**: for a single-file format-16 record in one ``SS`` group of a
  little-endian object, frame-interleaved int16 LE *is* DICOM's multiplexed Waveform Data,
  so the ``.dat`` bytes are compared with the Waveform Data bytes: every sample, bit for bit,
  in frame order (stronger than comparing two decodes, which could share a defect). The
  channel order must then equal the header's: labels are checked in order.
* **one ``rdheader`` per header text**: ``wfdb.rdheader`` costs milliseconds of CPU, and an
  archive's headers differ only in the record name, checksums, initial values and base
  time/date. Those are blanked (:func:`blank_header`) and wfdb parses each distinct blanked
  text once; what it says is cached by that text. Nothing blanked is needed: the samples are
  compared directly.
* **one Channel Definition parse per layout**: pydicom keeps a defined-length sequence as raw
  bytes until it is read; equal bytes are equal items, so pydicom parses each distinct
  Channel Definition Sequence once, and the physical mapping of each (header layout, channel
  definitions) pair is checked once: sensitivity x correction factor = 1 / gain, Channel
  Baseline = -baseline / gain (physical units), sensitivity units = the header's units.
* everything else (other formats, several files or rates, skew, offsets, a subset of a
  record's signals or frames: the objects of a record of several classes, parts of a long
  segment, ``SL`` samples) is decoded by ``wfdb.rdrecord`` and ``multiplex_array`` and
  compared as arrays, digital and physical (:meth:`ObjectChecker.check` with ``decode=True``
  does this for every object: the reference the tests hold the fast path to).

An object made from a segment of a multi-segment record is checked against that segment,
read as a record of its own (the master header's segment list, by ``wfdb.rdheader``, once per
master header), over the frames its part spans.

Every object also passes the integrity check (:func:`~wfdb2dicom.validate.quick_check`).
"""

from __future__ import annotations

import io
import math
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import numpy as np

from .errors import ConversionError
from .fileio import read_file_and_stat
from .signal_classes import units_code

PHYSICAL_RTOL = 1e-9
"""Relative tolerance of physical values: DS text keeps ~15 significant digits."""

PLACEHOLDER = "wfdb2dicom_record"
"""The record name in a blanked header (and of the files named after the record)."""

CACHE_LIMIT = 4096
"""Distinct header texts or channel layouts kept; an archive has a handful."""

LITTLE_ENDIAN_SYNTAXES = frozenset({
    "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99",
})
"""Transfer syntaxes whose Waveform Data bytes are little-endian as stored."""

WAVEFORM_DATA = 0x54001010

STAGES = ("object read", "object check", "source header", "source samples", "compare")
"""Where a check's time goes (:class:`StageClock`)."""


Covers = tuple[tuple[int, tuple[str, ...]], ...]
"""What a run's row accounts for: ``(segment, labels)`` of each segment it names, each
label as often as the row's objects hold it or its ``left_out`` names it. ``()``: the row is
one object and nothing left out, so what it accounts for is the object's own signals."""


class Signature(NamedTuple):
    """Sizes and modification times of an object and of the source files it was checked
    against, taken before they were read: the verify ledger's test of "unchanged"."""

    object_stat: str
    """``size:mtime_ns`` of the object."""
    source_stat: str
    """``name:size:mtime_ns`` of each source file (names in the record's directory), ``|``
    between them."""


class Outcome(NamedTuple):
    """One object's result: ``problem`` is None when it holds its source exactly."""

    problem: str | None
    signature: Signature | None


class SourceLayout(NamedTuple):
    """What ``wfdb.rdheader`` says about a record's signals, for one blanked header text."""

    n_samples: int | None
    fs: float
    names: tuple[str, ...]
    gains: tuple[float, ...]
    baselines: tuple[int, ...]
    units: tuple[str, ...]
    samples_per_frame: tuple[int, ...]
    file_names: tuple[str, ...]
    """As in the blanked text: a name the record's own name began is :data:`PLACEHOLDER`-based."""
    renamed: tuple[bool, ...]
    bytes_are_samples: bool
    """One format-16 file, one sample per frame, no skew, no offset: the file is the samples."""

    def files_of(self, record_name: str) -> tuple[str, ...]:
        """The signal files of the record called ``record_name``, in signal order."""
        cut = len(PLACEHOLDER)
        return tuple(record_name + name[cut:] if renamed else name
                     for name, renamed in zip(self.file_names, self.renamed, strict=True))


class GroupFacts(NamedTuple):
    """What pydicom reads from one multiplex group's Channel Definition items."""

    labels: tuple[str, ...]
    sensitivities: tuple[float | None, ...]
    """Channel Sensitivity x Channel Sensitivity Correction Factor (None: absent)."""
    baselines: tuple[float, ...]
    units: tuple[tuple[str, str], ...]
    """(Code Value, Coding Scheme Designator) of each Channel Sensitivity Units item."""


class StageClock:
    """Nanoseconds spent in each of :data:`STAGES` (measured in-process, per check)."""

    def __init__(self) -> None:
        self.ns = dict.fromkeys(STAGES, 0)
        self.objects = 0

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter_ns()
        try:
            yield
        finally:
            self.ns[name] += time.perf_counter_ns() - start

    def report(self) -> str:
        """One line per stage: µs per object and share of the total."""
        total = sum(self.ns.values()) or 1
        count = max(self.objects, 1)
        lines = [f"  {name:15s} {ns / count / 1e3:8.1f} µs/object  {100 * ns / total:5.1f}%"
                 for name, ns in self.ns.items()]
        lines.append(f"  {'total':15s} {total / count / 1e3:8.1f} µs/object "
                     f"({self.objects} objects)")
        return "\n".join(lines)


def blank_header(text: str) -> tuple[tuple[str, tuple[bool, ...]], str] | None:
    """``((blanked text, renamed files), record name)``; None for a multi-segment header.

    Blanked: the record name (and the file names it begins), the signals' initial values and
    checksums, the base time and date; comment and empty lines are dropped. Every other
    token stays as written, so wfdb parses the blanked text to the same signal facts.
    """
    lines = [line for line in text.splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        return None
    record = lines[0].split()
    name = record[0]
    if "/" in name:
        return None
    blanked = [" ".join([PLACEHOLDER, *record[1:4]])]
    renamed = []
    prefix = name + "."
    for line in lines[1:]:
        parts = line.split(maxsplit=8)
        moved = parts[0].startswith(prefix)
        if moved:
            parts[0] = PLACEHOLDER + parts[0][len(name):]
        renamed.append(moved)
        for index in (5, 6):  # initial value, checksum
            if len(parts) > index:
                parts[index] = "0"
        blanked.append(" ".join(parts))
    return ("\n".join(blanked) + "\n", tuple(renamed)), name


def parse_blanked(text: str) -> SourceLayout:
    """``wfdb.rdheader`` of a blanked header text: wfdb reads headers from files only, so it
    is written to a temporary directory for the once per distinct text that it is parsed."""
    import wfdb

    with tempfile.TemporaryDirectory(prefix="wfdb2dicom-verify-") as workdir:
        path = os.path.join(workdir, PLACEHOLDER)
        with open(path + ".hea", "wb") as handle:
            handle.write(text.encode("latin-1"))
        header = wfdb.rdheader(path)
    return layout_of(header, renamed=None)


def layout_of(header: Any, renamed: tuple[bool, ...] | None) -> SourceLayout:
    """The facts verify uses from a ``wfdb.Record`` header (``renamed`` None: from the
    blanked text, where the placeholder marks them)."""
    n = header.n_sig or 0
    files = tuple(header.file_name or ())
    if renamed is None:
        renamed = tuple(f.startswith(PLACEHOLDER + ".") for f in files)
    spf = tuple(header.samps_per_frame or (1,) * n)
    return SourceLayout(
        n_samples=header.sig_len,
        fs=float(header.fs),
        names=tuple(header.sig_name or ()),
        gains=tuple(float(g) for g in header.adc_gain or ()),
        baselines=tuple(int(b) for b in header.baseline or ()),
        units=tuple(u or "mV" for u in header.units or ("mV",) * n),
        samples_per_frame=spf,
        file_names=files,
        renamed=renamed,
        bytes_are_samples=(
            n > 0 and set(header.fmt or ()) == {"16"} and len(set(files)) == 1
            and set(spf) == {1} and not any(header.skew or ())
            and not any(header.byte_offset or ()) and header.sig_len is not None
        ),
    )


def group_facts(group: Any) -> GroupFacts:
    """pydicom's reading of a group's Channel Definition items."""
    labels, sensitivities, baselines, units = [], [], [], []
    for channel in group.ChannelDefinitionSequence:
        labels.append(str(channel.get("ChannelLabel", "") or ""))
        sensitivity = channel.get("ChannelSensitivity")
        factor = channel.get("ChannelSensitivityCorrectionFactor")
        sensitivities.append(None if sensitivity in (None, "") else
                             float(sensitivity) * (1.0 if factor in (None, "") else float(factor)))
        baseline = channel.get("ChannelBaseline")
        baselines.append(0.0 if baseline in (None, "") else float(baseline))
        code = channel.get("ChannelSensitivityUnitsSequence") or [None]
        units.append((str(code[0].get("CodeValue", "")), str(code[0].get(
            "CodingSchemeDesignator", ""))) if code[0] is not None else ("", ""))
    return GroupFacts(tuple(labels), tuple(sensitivities), tuple(baselines), tuple(units))


def _unit_text(units: str) -> str:
    """WFDB units and UCUM codes spell voltages alike (``mV``, ``uV``); µ and μ are ``u``.
    Others differ (``mmHg`` is ``mm[Hg]``, ``NU`` is ``{arb'U}``): the converter's documented
    table (:func:`~wfdb2dicom.signal_classes.units_code`) says which code a unit is."""
    return units.replace("µ", "u").replace("μ", "u")


def mapping_problem(label: str, gain: float, baseline: int, units: str,
                    facts: GroupFacts, index: int) -> str | None:
    """The first way channel ``index`` of ``facts`` fails to give WFDB's physical values
    ``(digital - baseline) / gain`` in ``units``; DICOM's are
    ``stored x sensitivity x correction factor + Channel Baseline``."""
    sensitivity = facts.sensitivities[index]
    if not gain:
        return f"signal {label!r} has gain 0 in the record"
    if sensitivity is None:
        return f"channel {label!r} has no Channel Sensitivity"
    if not math.isclose(sensitivity, 1.0 / gain, rel_tol=PHYSICAL_RTOL):
        return (f"sensitivity of {label!r} is {sensitivity:.12g}, the record's gain "
                f"{gain:g} means {1.0 / gain:.12g}")
    expected = -baseline / gain
    if not math.isclose(facts.baselines[index], expected, rel_tol=PHYSICAL_RTOL,
                        abs_tol=PHYSICAL_RTOL / abs(gain)):
        return (f"baseline of {label!r} is {facts.baselines[index]:.12g}, the record's "
                f"baseline {baseline} at gain {gain:g} means {expected:.12g}")
    code, scheme = facts.units[index]
    if scheme != "UCUM" or (_unit_text(code) != _unit_text(units)
                            and code != units_code(units)[0]):
        return f"units of {label!r} are {scheme}:{code}, the record's are {units!r}"
    return None


class ObjectChecker:
    """Checks objects against their sources; one per worker (it keeps the caches)."""

    def __init__(self, clock: StageClock | None = None) -> None:
        self.clock = clock or StageClock()
        self._layouts: dict[tuple[str, tuple[bool, ...]], SourceLayout] = {}
        self._segments: dict[tuple[str, str], tuple[tuple[str, ...], tuple[int, ...]]] = {}
        self._groups: dict[tuple[SourceLayout, tuple], str | None] = {}
        self.compared = {"bytes": 0, "arrays": 0}
        """Objects compared by the fast path (bytes) and by decoding (arrays)."""

    def check(self, record_path: str, dcm_path: str, *, signals: tuple[str, ...] | None = None,
              frames: tuple[int, int] | None = None, decode: bool = False, segment: int = 1,
              offset_seconds: float | None = None,
              end_seconds: float | None = None, covers: Covers | None = None) -> Outcome:
        """Whether ``dcm_path`` holds ``signals`` (default: all) of ``record_path`` over
        ``frames`` (``(start, stop)``, default: all) exactly, and nothing else.

        ``segment``: of a multi-segment record, the segment (from 1, as the master header
        lists them, layout and gaps included) the object was made from.
        ``offset_seconds``: the object is a part that starts this long after its segment
        (instead of ``frames``), and ends ``end_seconds`` after it (where the next part
        starts) or, None, at the segment's end. It must hold exactly the samples between:
        a neighbouring part missing from the run, or two parts that overlap, leave a part
        holding fewer or more, so the parts of a segment together cover it exactly.
        ``decode``: compare decoded arrays even where the bytes could be compared (the
        reference the fast path is tested against).
        ``covers``: the object is its row's first, and this is what the row accounts for:
        every signal of every segment with samples must be among it
        (:meth:`_coverage_problem`), or the object fails ``NotCovered``.
        """
        import pydicom

        from .validate import quick_check

        clock = self.clock
        clock.objects += 1
        base = record_path[:-4] if record_path.endswith((".hea", ".dat")) else record_path
        with clock.stage("object read"):
            try:
                data, object_stat = read_file_and_stat(dcm_path)
                ds = pydicom.dcmread(io.BytesIO(data))
                groups = ds.get("WaveformSequence") or []  # none: the integrity check says
            except Exception as exc:  # unreadable, not DICOM, truncated
                return Outcome(f"Unreadable: {_describe(exc)}", None)
        with clock.stage("object check"):
            try:
                syntax = str(ds.file_meta.get("TransferSyntaxUID", ""))
                group_key = (_group_key(syntax, groups[0]) if len(groups) == 1 and not decode
                             and syntax in LITTLE_ENDIAN_SYNTAXES else None)
                if group_key is None:  # checked in full below, unless the source fails
                    quick_check(ds)
                    facts = [group_facts(group) for group in groups]
            except ConversionError as exc:
                return Outcome(f"ValidationFailed: {exc}", None)
            except Exception as exc:
                return Outcome(f"Unreadable: {_describe(exc)}", None)
        stats = []
        with clock.stage("source header"):
            try:
                header_text, header_stat = read_file_and_stat(base + ".hea")
                text = header_text.decode("latin-1")
                master = None
                if blank_header(text) is None:  # a multi-segment record: its segment
                    stats.append(f"{os.path.basename(base)}.hea:{header_stat}")
                    master = (base, header_stat)
                    base = self._segment_base(base, header_stat, segment)
                    header_text, header_stat = read_file_and_stat(base + ".hea")
                    text = header_text.decode("latin-1")
                layout, record_name = self._layout(text, base)
                files = layout.files_of(record_name)
                uncovered = (None if covers is None else self._coverage_problem(
                    covers, signals, master, segment, layout, stats))
            except Exception as exc:
                return Outcome(f"SourceUnreadable: {_describe(exc)}", None)
        folder = os.path.dirname(base)
        stats.append(f"{os.path.basename(base)}.hea:{header_stat}")
        fast = (group_key is not None and frames is None and offset_seconds is None
                and layout.bytes_are_samples
                and (signals is None or tuple(signals) == layout.names))
        if group_key is not None and not fast:
            try:
                quick_check(ds)
                facts = [group_facts(group) for group in groups]
            except ConversionError as exc:
                return Outcome(f"ValidationFailed: {exc}", None)
        with clock.stage("source samples"):
            try:
                if fast:
                    samples, dat_stat = read_file_and_stat(os.path.join(folder, files[0]))
                    stats.append(f"{files[0]}:{dat_stat}")
                else:
                    for name in dict.fromkeys(files):  # stat before wfdb reads them
                        info = os.stat(os.path.join(folder, name))
                        stats.append(f"{name}:{info.st_size}:{info.st_mtime_ns}")
                    source = _read_with_wfdb(base, layout, frames)
            except Exception as exc:
                return Outcome(f"SourceUnreadable: {_describe(exc)}", None)
        signature = Signature(object_stat, "|".join(stats))
        self.compared["bytes" if fast else "arrays"] += 1
        with clock.stage("compare"):
            if fast:
                problem = self._compare_bytes(layout, group_key, groups[0], samples)
            else:
                problem = _compare_arrays(ds, facts, source, signals, offset_seconds,
                                          end_seconds)
        if uncovered is not None:  # the row's fault, beside any of the object's own
            problem = uncovered if problem is None else f"{problem}; {uncovered}"
        return Outcome(problem, signature)

    def _coverage_problem(self, covers: Covers, signals: tuple[str, ...] | None,
                          master: tuple[str, str] | None, segment: int,
                          layout: SourceLayout, stats: list[str]) -> str | None:
        """``NotCovered: …`` unless every signal of every segment with samples (of a
        multi-segment record ``master``, ``(path, header stat)``: each its segment list
        names but gaps and zero-length layout segments; else the record's) is accounted for
        by ``covers``, as often as the header has it; the headers read are added to
        ``stats``. A row of one object (``covers`` ``()``) accounts for that object's
        ``signals`` in its ``segment``: a single-segment record's object that holds every
        signal (as the object check then proves) costs nothing here."""
        from collections import Counter

        if not covers:
            own = layout.names if signals is None else tuple(signals)
            if master is None and own == layout.names:
                return None
            covers = ((segment, own),)
        accounted = {number: Counter(labels) for number, labels in covers}
        if master is None:
            segments = [(1, layout)]
        else:
            base, header_stat = master
            names, lengths = self._segment_list(base, header_stat)
            folder = os.path.dirname(base)
            segments = []
            for number, (name, length) in enumerate(zip(names, lengths, strict=True), 1):
                if name == "~" or not length:
                    continue
                if number == segment:
                    segments.append((number, layout))
                    continue
                text, stat = read_file_and_stat(os.path.join(folder, name + ".hea"))
                stats.append(f"{name}.hea:{stat}")
                segments.append((number, self._layout(text.decode("latin-1"),
                                                      os.path.join(folder, name))[0]))
        for number, seg_layout in segments:
            have = accounted.get(number, Counter())
            for label, count in Counter(seg_layout.names).items():
                if have[label] < count:
                    return (f"NotCovered: segment {number} signal {label!r} is in no object "
                            "and not listed as left out")
        return None

    # -- caches ------------------------------------------------------------------------

    def _segment_list(self, base: str, header_stat: str) -> tuple[tuple[str, ...],
                                                                  tuple[int, ...]]:
        """Names and lengths (samples) of the segments the multi-segment record ``base``
        lists, by ``wfdb.rdheader`` once per master header."""
        key = (base, header_stat)
        listed = self._segments.get(key)
        if listed is None:
            import wfdb

            header = wfdb.rdheader(base)
            listed = (tuple(header.seg_name), tuple(int(n) for n in header.seg_len))
            if len(self._segments) >= CACHE_LIMIT:
                self._segments.clear()
            self._segments[key] = listed
        return listed

    def _segment_base(self, base: str, header_stat: str, segment: int) -> str:
        """The record path of ``segment`` (from 1) of the multi-segment record ``base``."""
        names = self._segment_list(base, header_stat)[0]
        if not 1 <= segment <= len(names) or names[segment - 1] == "~":
            raise ConversionError(f"the record has no segment {segment} with samples")
        return os.path.join(os.path.dirname(base), names[segment - 1])

    def _layout(self, text: str, base: str) -> tuple[SourceLayout, str]:
        blanked = blank_header(text)
        if blanked is None:
            raise ConversionError("a multi-segment header: verify objects made of its segments")
        key, name = blanked
        layout = self._layouts.get(key)
        if layout is None:
            layout = parse_blanked(key[0])
            if layout.renamed != key[1]:  # a file name that began with the placeholder
                layout = layout._replace(renamed=key[1])
            if len(self._layouts) >= CACHE_LIMIT:
                self._layouts.clear()
            self._layouts[key] = layout
        return layout, name

    def _compare_bytes(self, layout: SourceLayout, group_key: tuple, group: Any,
                       samples: bytes) -> str | None:
        """The fast path's comparison (see the module docstring): the group's description
        checked once per (header layout, group as stored), then its samples' bytes."""
        key = (layout, group_key)
        described = self._groups.get(key, False)
        if described is False:
            described = _group_problem(layout, group)
            if len(self._groups) >= CACHE_LIMIT:
                self._groups.clear()
            self._groups[key] = described
        if described is not None:
            return described
        waveform = group.WaveformData
        expected = (layout.n_samples or 0) * len(layout.names) * 2  # = the group's, checked
        if len(waveform) != expected:  # a truncated object: the integrity check says so
            from .validate import quick_check_group

            try:
                quick_check_group(1, group)
            except ConversionError as exc:
                return f"ValidationFailed: {exc}"
        if waveform != samples:
            return _first_difference(layout.names, waveform, samples)
        if len(samples) != expected:
            return (f"the signal file has {len(samples)} bytes, the header declares "
                    f"{expected}")
        return None


def _group_key(syntax: str, group: Any) -> tuple | None:
    """A multiplex group's elements as stored, Waveform Data aside; None unless pydicom kept
    every one as raw bytes (a sequence of undefined length is parsed as it is read)."""
    key: list = [syntax]
    for tag in group.keys():
        if tag == WAVEFORM_DATA:
            continue
        value = getattr(group.get_item(tag), "value", None)
        if not isinstance(value, bytes):
            return None
        key.append((int(tag), value))
    return tuple(key)


def _group_problem(layout: SourceLayout, group: Any) -> str | None:
    """What is wrong with a group's description, against the header: the integrity check
    (data length aside), channel count, order and mapping, samples per channel, rate."""
    from .validate import quick_check_group

    try:
        quick_check_group(1, group)
    except ConversionError as exc:
        return f"ValidationFailed: {exc}"
    problem = _layout_problem(layout, group_facts(group))
    if problem is not None:
        return problem
    if int(group.NumberOfWaveformSamples) != layout.n_samples:
        return (f"the object has {group.NumberOfWaveformSamples} samples per channel, "
                f"the record {layout.n_samples}")
    if not math.isclose(float(group.SamplingFrequency), layout.fs, rel_tol=PHYSICAL_RTOL):
        return (f"sampling frequency is {group.SamplingFrequency} Hz, the record's "
                f"{layout.fs:g} Hz")
    return None


def _layout_problem(layout: SourceLayout, facts: GroupFacts) -> str | None:
    """Channels in the header's order, each mapped to its physical values."""
    if facts.labels != layout.names:
        for index, (label, name) in enumerate(zip(facts.labels, layout.names, strict=False), 1):
            if label not in layout.names:
                return f"channel {label!r} of group 1 is not in the record"
            if label != name:
                return (f"channel {index} is {label!r}, the record's signal {index} is "
                        f"{name!r}")
        return (f"the object has {len(facts.labels)} channels, the record "
                f"{len(layout.names)} signals")
    for index, name in enumerate(layout.names):
        problem = mapping_problem(name, layout.gains[index], layout.baselines[index],
                                  layout.units[index], facts, index)
        if problem is not None:
            return problem
    return None


def _first_difference(names: tuple[str, ...], waveform: bytes, samples: bytes) -> str:
    """Name the channel whose samples differ, counting them (bytes already known unequal)."""
    if len(waveform) != len(samples):
        return (f"samples differ from the WFDB record (lengths differ: {len(waveform)} "
                f"bytes in the object, {len(samples)} in the signal file)")
    ours = np.frombuffer(waveform, "<i2").reshape(-1, len(names))
    theirs = np.frombuffer(samples, "<i2").reshape(-1, len(names))
    unequal = (ours != theirs).sum(axis=0)
    index = int(np.argmax(unequal))
    return (f"samples of {names[index]!r} differ from the WFDB record "
            f"({int(unequal[index])} samples)")


class DecodedSource(NamedTuple):
    """A record decoded by ``wfdb.rdrecord``: per-signal digital and physical columns."""

    layout: SourceLayout
    digital: list[np.ndarray]
    physical: list[np.ndarray]


def _read_with_wfdb(base: str, layout: SourceLayout,
                    frames: tuple[int, int] | None) -> DecodedSource:
    """wfdb's decode of the record (of ``frames`` only, when given); the facts from the
    record it read, not from the cache."""
    import wfdb

    multi_rate = len(set(layout.samples_per_frame)) > 1
    record = wfdb.rdrecord(base, physical=False, smooth_frames=not multi_rate)
    if multi_rate:
        digital = list(record.e_d_signal)
        physical = list(record.dac(expanded=True))
    else:
        digital = [record.d_signal[:, i] for i in range(record.n_sig)]
        converted = record.dac()
        physical = [converted[:, i] for i in range(record.n_sig)]
    read = layout_of(record, renamed=tuple(False for _ in range(record.n_sig)))
    if frames is not None:
        start, stop = frames
        spf = read.samples_per_frame
        digital = [c[start * k:stop * k] for c, k in zip(digital, spf, strict=True)]
        physical = [c[start * k:stop * k] for c, k in zip(physical, spf, strict=True)]
    return DecodedSource(read, digital, physical)


def _compare_arrays(ds: Any, facts: list[GroupFacts], source: DecodedSource,
                    signals: tuple[str, ...] | None,
                    offset_seconds: float | None = None,
                    end_seconds: float | None = None) -> str | None:
    """Every channel matched to one of ``signals`` (default: all) by label; digital equal,
    physical within tolerance, mapping as WFDB's; every one of ``signals`` present.

    ``offset_seconds``: the object is a part starting that long after the source and ending
    ``end_seconds`` after it (None: at the source's end); each channel is compared with its
    signal's samples between, which it must hold exactly. A part may start between two
    frames of a multi-rate record (its fast signals' samples are cut at their own rate), so
    the span is counted in each signal's samples."""
    from pydicom.waveforms import multiplex_array

    layout = source.layout
    unused = [i for i, name in enumerate(layout.names) if signals is None or name in signals]
    for group_index, group_facts_ in enumerate(facts):
        raw = multiplex_array(ds, group_index, as_raw=True)
        scaled = multiplex_array(ds, group_index, as_raw=False)
        for channel_index, label in enumerate(group_facts_.labels):
            match = next((i for i in unused if layout.names[i] == label), None)
            if match is None:
                return f"channel {label!r} of group {group_index + 1} is not in the record"
            unused.remove(match)
            digital, expected = source.digital[match], source.physical[match]
            if offset_seconds is not None:
                rate = float(ds.WaveformSequence[group_index].SamplingFrequency)
                first = round(offset_seconds * rate)
                stop = len(digital) if end_seconds is None else round(end_seconds * rate)
                digital, expected = digital[first:stop], expected[first:stop]
                if len(raw) != len(digital):
                    until = ("the segment's end" if end_seconds is None
                             else f"the next part's start ({end_seconds:g} s)")
                    return (f"the part holds {len(raw)} samples of {label!r}, its span "
                            f"from {offset_seconds:g} s to {until} has {len(digital)}: a "
                            "part of the segment is missing from the run, or parts overlap")
            if not np.array_equal(raw[:, channel_index], digital):
                lengths = len(raw) == len(digital)
                detail = (f"{int(np.sum(raw[:, channel_index] != digital))} samples"
                          if lengths else "lengths differ")
                return f"samples of {label!r} differ from the WFDB record ({detail})"
            problem = mapping_problem(label, layout.gains[match], layout.baselines[match],
                                      layout.units[match], group_facts_, channel_index)
            if problem is not None:
                return problem
            valid = ~np.isnan(expected)
            scale = float(np.nanmax(np.abs(expected))) if valid.any() else 0.0
            if not np.allclose(scaled[valid, channel_index], expected[valid],
                               rtol=PHYSICAL_RTOL, atol=PHYSICAL_RTOL * max(scale, 1e-12)):
                return f"physical values of {label!r} differ from the WFDB record"
    if unused:
        missing = ", ".join(repr(layout.names[i]) for i in unused)
        return f"signals {missing} of the record are not in the object"
    return None


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


Task = tuple
"""``(task_id, record path, object path[, signals, segment, offset_seconds, end_seconds,
covers])``: one object for a verify worker (the optional part as :meth:`ObjectChecker.check`
takes it)."""


class VerifyRunner:
    """The batch pool's runner for verify (:class:`~wfdb2dicom.batch.pool.WorkerPool`):
    long-lived workers, chunks handed over, one checker (and its caches) per worker.

    Each result is ``(task_id, DONE | FAILED, problem, object_stat, source_stat)``; the pool
    passes the stats through, and settles a hung or dead worker's task with the usual
    ``(task_id, FAILED, Timeout>…/WorkerCrash: …)``.
    """

    def __init__(self) -> None:
        self._checker: ObjectChecker | None = None

    def setup(self) -> None:
        """Import what checks need and tune the collector, as the batch's workers do."""
        import gc

        import pydicom  # noqa: F401
        import wfdb  # noqa: F401

        from .batch.work import WORKER_GC_THRESHOLDS

        self._checker = ObjectChecker()
        gc.freeze()
        gc.set_threshold(*WORKER_GC_THRESHOLDS)

    def __call__(self, task: Task) -> tuple[int, str | None]:
        _, status, problem, *_ = self.run_chunk([task], lambda task_id: None)[0]
        return status, problem

    def run_chunk(self, tasks: list[Task], mark: Any) -> list[tuple]:
        from .batch.outcomes import DONE, FAILED

        if self._checker is None:
            self.setup()
        checker = self._checker
        assert checker is not None
        results = []
        for task_id, record_path, dcm_path, *where in tasks:
            mark(task_id)
            signals, segment, offset, end, covers = (
                (*where, None)[:5] if where else (None, 1, None, None, None))
            try:
                problem, signature = checker.check(record_path, dcm_path, signals=signals,
                                                   segment=segment, offset_seconds=offset,
                                                   end_seconds=end, covers=covers)
            except Exception as exc:  # a check reports, never crashes the worker
                problem, signature = _describe(exc), None
            stats = signature or ("", "")
            results.append((task_id, FAILED if problem else DONE, problem, *stats))
        return results
