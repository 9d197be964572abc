"""Record + study metadata -> the DICOM waveform objects: the one place the mapping lives.

``docs/mapping.md`` is this module written out as a table; keep them in step. The output is
a pure function of the inputs (no clock, no random UIDs), so the same record always gives
the same bytes.

A record becomes one object per IOD (per class of signal: ECG, pressure, pleth,
respiration; ``signal_classes.py`` says which signal is what, ``iods.py`` which IOD holds
it), per segment, and per part when a segment is longer than the IOD or ``--max-duration``
allows. A signal no IOD accepts is left out with its reason. What is the same for every
record of a layout (classes, IOD choice, channel definitions) is decided once and cached:
MIMIC-IV-ECG's records pay a few dictionary lookups for it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import NamedTuple

import numpy as np
from pydicom.dataset import Dataset
from pydicom.valuerep import format_number_as_ds

from .caching import identity_cache
from .errors import MetadataError, RecordError, UnsupportedRecord
from .formats import FORMATS
from .iods import GroupShape, WaveformIod, iods_for
from .metadata import StudyMetadata, normalise_study_id
from .object_plan import (
    AnnotationItem,
    ChannelLayout,
    GroupLayout,
    LeftOutSignal,
    ObjectPlan,
    PlannedObject,
    RecordPlan,
)
from .record import Channel, EcgRecord, MultiplexGroup, RecordSegment
from .signal_classes import SignalClass, channel_source, classify, units_code
from .sources.header import with_header
from .uids import derive_uid
from .vr import checked_date, checked_text, encoded_length

# Waveform Annotation concepts for MIMIC's machine measurements: (MDC code, meaning, unit).
_MS = ("ms", "UCUM", "millisecond")
_DEG = ("deg", "UCUM", "degree")
MEASUREMENT_CONCEPTS: dict[str, tuple[str, str, tuple[str, str, str]]] = {
    "rr": ("2:16168", "RR interval global", _MS),
    "pr": ("2:15872", "PR interval global", _MS),
    "p": ("2:16184", "P duration global", _MS),
    "qrs": ("2:16156", "QRS duration global", _MS),
    "qt": ("2:16160", "QT interval global", _MS),
    "p_axis": ("2:16128", "P Axis", _DEG),
    "qrs_axis": ("2:16132", "QRS axis", _DEG),
    "t_axis": ("2:16136", "T axis", _DEG),
}

GROUP_LABELS = {SignalClass.ECG: "RHYTHM", SignalClass.PRESSURE: "PRESSURE",
                SignalClass.PULSE: "PLETH", SignalClass.RESPIRATION: "RESPIRATION"}
"""Multiplex Group Label of each class's groups (numbered when an object has several)."""

HD_BODY_PART = "HEART"
"""Body Part Examined of the hemodynamic and arterial pulse objects (CID 4031 Heart)."""

STUDY_ID_MAX = 16
"""Study ID is SH: a longer study key goes in Study Description (LO, 64) instead."""

OLDEST_AGE = 90
"""Ages from 90 up are written ``090Y``: HIPAA's "90 or older" (PTB-XL's de-identification
puts them at 300; any source's 90+ is written alike)."""

FINDING = ("121071", "DCM", "Finding")
"""Concept Name of a coded statement (its Concept Code: the finding, e.g. SNOMED CT)."""


@dataclass(frozen=True)
class ConversionOptions:
    """User choices that shape the objects (the core conversion's command-line options)."""

    uid_root: str | None = None
    annotations: bool = True
    acquisition_datetime: dt.datetime | None = None
    """Used only when neither the header nor the metadata give the acquisition time."""
    patient_id: str | None = None
    """Used only when the metadata gives no subject_id; else the record name stands in."""
    verify_checksums: bool = True
    signal_classes: tuple[tuple[str, SignalClass], ...] = ()
    """``--signal-class NAME=CLASS``: (signal name, class) pairs that override the table."""
    max_duration: float | None = None
    """``--max-duration SECONDS``: the longest object; longer segments are split."""


@lru_cache(maxsize=16384)
def ds_text(value: float) -> str:
    """A number as Decimal String: the shortest exact text when it fits in 16 characters."""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    text = repr(float(value))
    if len(text) <= 16 and "e" not in text:
        return text
    return format_number_as_ds(float(value))


def study_id_fields(key: str) -> tuple[str, str | None]:
    """(Study ID, Study Description or None) for the study key.

    The rule: the key is the Study ID when it fits SH (16 characters); otherwise the
    Study ID is its first 7 characters, ``~`` and 8 hex digits of its SHA-1 (deterministic,
    16 characters, the same key always gives the same ID) and the full key goes in Study
    Description. UIDs always come from the full key.
    """
    if len(key) <= STUDY_ID_MAX and (key.isascii() or encoded_length(key) <= STUDY_ID_MAX):
        return checked_text(key, "SH", "Study ID", "study_id"), None
    key = checked_text(key, "LO", "Study Description", "study_id")
    digest = hashlib.sha1(key.encode("utf-8")).hexdigest()[:8]
    return f"{key[:7].rstrip()}~{digest}", key


def _da(moment: dt.datetime) -> str:
    return f"{moment.year:04d}{moment.month:02d}{moment.day:02d}"


def _tm(moment: dt.datetime) -> str:
    text = f"{moment.hour:02d}{moment.minute:02d}{moment.second:02d}"
    return f"{text}.{moment.microsecond:06d}" if moment.microsecond else text


def acquisition_time(
    record: EcgRecord, metadata: StudyMetadata | None, options: ConversionOptions
) -> dt.datetime:
    """Header base date+time, else the table's ecg_time, else the user's; never the clock.

    A year that DICOM dates cannot hold is refused, naming where it came from.
    """
    if record.base_datetime is not None:
        checked_date(record.base_datetime, "header base date", RecordError)
        return record.base_datetime
    for moment, source in ((metadata.ecg_time if metadata else None, "ecg_time"),
                           (options.acquisition_datetime, "--acquisition-datetime")):
        if moment is not None:
            checked_date(moment, source)
            return moment.replace(tzinfo=None)
    raise MetadataError(
        "no acquisition time: the header has no base date and time and there is no ecg_time "
        "for the study; give --acquisition-datetime"
    )


# --- Which signals go in which object (decided once per layout) -------------------------


class ObjectSpec(NamedTuple):
    """One object of a segment as indices: the same for every record of a layout."""

    iod: WaveformIod
    signal_class: SignalClass
    members: tuple[tuple[int, tuple[int, ...]], ...]
    """(group index, channel indices) per multiplex group of the object."""
    interpretation: str
    ratios: tuple[int, ...]
    """Samples per base sample of each member group (the base: the slowest group)."""
    part_length: int
    """Base samples per part (the whole segment when it is not split)."""
    base_fs: float
    groups: tuple[tuple[tuple[Channel, ...], float, int, tuple[int, ...]], ...] = ()
    """(channels, sampling frequency, samples, bits stored) of each member group."""
    labels: tuple[str, ...] = ()
    """The names of its signals, in object order."""
    whole: tuple[bool, ...] = ()
    """Per member group: the object takes all its channels, in order (its array as it is)."""
    n_parts: int = 1


class SegmentLayout(NamedTuple):
    objects: tuple[ObjectSpec, ...]
    left_out: tuple[tuple[str, str], ...]
    """(signal name, reason) of each signal no object holds."""


def channel_bits(group: MultiplexGroup) -> tuple[int, ...]:
    """Waveform Bits Stored of each channel: the reader's figure, else the format's."""
    if group.bits_stored is not None:
        return tuple(group.bits_stored)
    return tuple(_bits_stored(channel) for channel in group.channels)


@identity_cache()
@lru_cache(maxsize=256)
def _channel_classes(channels: tuple[Channel, ...],
                     overrides: tuple[tuple[str, SignalClass], ...]) -> tuple[SignalClass, ...]:
    return tuple(classify(c.label, c.units, overrides) for c in channels)


def segment_layout(record: EcgRecord, options: ConversionOptions) -> SegmentLayout:
    """Which signals of ``record`` go in which object (cached per layout; a one-group
    record, all of MIMIC-IV-ECG, by the identity of its channels: no hashing of them)."""
    groups = record.groups
    if len(groups) == 1:
        g = groups[0]
        return _one_group_layout(g.channels, g.sampling_frequency, g.samples.shape[0],
                                 g.bits_stored or channel_bits(g), options.signal_classes,
                                 options.max_duration)
    key = tuple((g.channels, g.sampling_frequency, g.n_samples, channel_bits(g))
                for g in groups)
    return _segment_layout(key, options.signal_classes, options.max_duration)


@identity_cache()
def _one_group_layout(channels: tuple[Channel, ...], fs: float, n_samples: int,
                      bits: tuple[int, ...], overrides: tuple[tuple[str, SignalClass], ...],
                      max_duration: float | None) -> SegmentLayout:
    return _segment_layout(((channels, fs, n_samples, bits),), overrides, max_duration)


@lru_cache(maxsize=1024)
def _segment_layout(
    groups: tuple[tuple[tuple[Channel, ...], float, int, tuple[int, ...]], ...],
    overrides: tuple[tuple[str, SignalClass], ...],
    max_duration: float | None,
) -> SegmentLayout:
    by_class: dict[SignalClass, list[tuple[int, int]]] = {}
    left_out: list[tuple[str, str]] = []
    for gi, (channels, _fs, _n, _bits) in enumerate(groups):
        for ci, cls in enumerate(_channel_classes(channels, overrides)):
            if iods_for(cls):
                by_class.setdefault(cls, []).append((gi, ci))
            else:
                reason = ("EDF+ annotations, not a waveform" if cls is SignalClass.ANNOTATION
                          else f"{cls.value} signal: no DICOM waveform IOD for it")
                left_out.append((channels[ci].label, reason))
    objects = []
    for cls in (c for c in SignalClass if c in by_class):
        members = by_class[cls]
        spec, problem = _fit(cls, members, groups, max_duration)
        if spec is None:  # keep what fits, in order; leave out the rest with its reason
            kept: list[tuple[int, int]] = []
            for member in members:
                trial, why = _fit(cls, [*kept, member], groups, max_duration)
                if trial is None:
                    left_out.append((groups[member[0]][0][member[1]].label, why))
                else:
                    kept.append(member)
            spec = _fit(cls, kept, groups, max_duration)[0] if kept else None
        if spec is not None:
            objects.append(spec)
    return SegmentLayout(tuple(objects), tuple(left_out))


def _fit(cls: SignalClass, members: list[tuple[int, int]], groups: tuple,
         max_duration: float | None) -> tuple[ObjectSpec | None, str]:
    """The spec of an object of ``members`` in the most specific IOD that takes it whole
    (at most ``max_duration`` long), else the first that takes it in consecutive parts."""
    indices: dict[int, list[int]] = {}
    for gi, ci in members:
        indices.setdefault(gi, []).append(ci)
    member_groups = tuple((gi, tuple(cis)) for gi, cis in indices.items())
    fss = [groups[gi][1] for gi, _ in member_groups]
    counts = [groups[gi][2] for gi, _ in member_groups]
    wide = any(groups[gi][3][ci] > 16 for gi, ci in members)
    interpretation = "SL" if wide else "SS"
    base = min(range(len(counts)), key=lambda i: (counts[i], i))
    n_base = counts[base]
    divisible = n_base > 0 and all(n % n_base == 0 for n in counts)
    ratios = tuple(n // n_base for n in counts) if divisible else tuple(1 for _ in counts)
    longest = n_base
    if max_duration is not None and divisible:
        longest = max(1, min(n_base, math.floor(max_duration * fss[base] + 1e-9)))

    def shapes(length: int) -> list[GroupShape]:
        if length == n_base:
            return [GroupShape(fs, len(cis), n) for fs, (_, cis), n
                    in zip(fss, member_groups, counts, strict=True)]
        return [GroupShape(fs, len(cis), length * r) for fs, (_, cis), r
                in zip(fss, member_groups, ratios, strict=True)]

    reasons = []
    for iod in iods_for(cls):
        problem = iod.violation(shapes(longest), interpretation)
        if problem is None:
            return _spec(iod, cls, member_groups, interpretation, ratios, longest, fss[base],
                         groups), ""
        reasons.append(f"{iod.name}: {problem}")
    if divisible:  # split into the parts an IOD's own limits allow
        bytes_per_sample = 4 if wide else 2
        for iod in iods_for(cls):
            limit = min((0xFFFFFFFE // (len(cis) * bytes_per_sample * r))
                        for (_, cis), r in zip(member_groups, ratios, strict=True))
            if iod.max_samples is not None:
                limit = min(limit, iod.max_samples // max(ratios))
            length = min(longest, limit)
            if 0 < length < n_base and iod.violation(shapes(length), interpretation) is None:
                return _spec(iod, cls, member_groups, interpretation, ratios, length,
                             fss[base], groups), ""
    return None, "; ".join(reasons)


def _spec(iod: WaveformIod, cls: SignalClass, members: tuple[tuple[int, tuple[int, ...]], ...],
          interpretation: str, ratios: tuple[int, ...], part_length: int, base_fs: float,
          groups: tuple) -> ObjectSpec:
    n_base = min(groups[gi][2] for gi, _ in members)
    return ObjectSpec(iod, cls, members, interpretation, ratios, part_length, base_fs,
                      tuple(groups[gi] for gi, _ in members),
                      tuple(groups[gi][0][ci].label for gi, cis in members for ci in cis),
                      tuple(cis == tuple(range(len(groups[gi][0]))) for gi, cis in members),
                      max(1, math.ceil(n_base / part_length)) if part_length else 1)


@identity_cache()
def _spec_group_layouts(spec: ObjectSpec, filters: tuple[str | None, str | None, str | None]
                        ) -> tuple[GroupLayout, ...]:
    """The group layouts of an object of ``spec`` (cached by the spec's identity: specs come
    from the cached segment layouts)."""
    n_groups = len(spec.members)
    if spec.signal_class is not SignalClass.ECG:
        filters = (None, None, None)  # MIMIC's filter settings are the ECG cart's
    return tuple(
        group_layout(channels, fs, n_samples, index, n_groups, filters, cis, bits,
                     spec.signal_class, spec.interpretation)
        for index, ((channels, fs, n_samples, bits), (_, cis))
        in enumerate(zip(spec.groups, spec.members, strict=True))
    )


# --- The objects ------------------------------------------------------------------------


def plan_record(
    record: EcgRecord,
    metadata: StudyMetadata | None = None,
    *,
    study_id: str | None = None,
    options: ConversionOptions | None = None,
    segment: RecordSegment | None = None,
    study_uid: str | None = None,
    series_uid: str | None = None,
) -> RecordPlan:
    """Every object of ``record`` (one segment of a record when ``segment`` says so).

    ``study_uid``/``series_uid`` (the seed's arguments) override the derived UIDs of the
    record's first ECG object. The plan may hold no object (every signal left out); the
    caller decides whether that refuses the record (see :func:`require_objects`).
    """
    options = options or ConversionOptions()
    layout = segment_layout(record, options)
    index = segment.index if segment is not None else 1
    left_out = (tuple(LeftOutSignal(index, label, reason) for label, reason in layout.left_out)
                if layout.left_out else ())
    if not layout.objects:
        return RecordPlan((), left_out)
    metadata = with_header(metadata, record.comments)  # the table's values win
    key = normalise_study_id(study_id or (metadata.study_id if metadata else None) or record.name)
    moment = acquisition_time(record, metadata, options)
    study_start = segment_start = moment
    if segment is not None and segment.start_frame:
        offset = dt.timedelta(seconds=segment.start_frame / segment.frame_rate)
        if record.base_datetime is not None:  # the reader offset it already
            study_start = moment - offset
        else:
            segment_start = moment + offset
    # Values are decided in module order (which problem is reported first stays stable).
    patient_id = _patient_id(record, metadata, options)
    sex, age = _patient_sex(metadata), _patient_age(metadata)
    study_number, study_description = study_id_fields(key)
    station = (checked_text(metadata.cart_id, "SH", "Station Name", "cart_id")
               if metadata and metadata.cart_id else None)
    model = (checked_text(metadata.device, "LO", "Manufacturer's Model Name", "device")
             if metadata and metadata.device else None)
    filters = _filter_texts(metadata)
    study_uid = study_uid or derive_uid("study", key, options.uid_root)
    common = _CommonValues(key, options.uid_root, study_start, study_uid, station,
                           study_description, patient_id, sex, age, study_number, model,
                           _size_weight(metadata),
                           # a segment's objects are told apart by their segment
                           instance_key(key, record.name) if segment is None else key)
    if len(layout.objects) == 1 and layout.objects[0].n_parts == 1:
        # One object in one part (all of MIMIC-IV-ECG): nothing to split, nothing to sort.
        spec = layout.objects[0]
        first_ecg = spec.signal_class is SignalClass.ECG and index == 1
        first = record.groups[spec.members[0][0]].samples
        if spec.whole == (True,) and first.dtype.itemsize == (
                4 if spec.interpretation == "SL" else 2):  # one group taken as it is
            samples: tuple[np.ndarray, ...] = (first,)
        else:
            samples = tuple(_member_samples(record.groups[gi], cis, whole, spec.interpretation)
                            for (gi, cis), whole in zip(spec.members, spec.whole, strict=True))
        plan = _object_plan(spec.iod, common, segment_start, index, 1, first_ecg,
                            series_uid if first_ecg else None,
                            _spec_group_layouts(spec, filters), samples,
                            annotation_items(metadata)
                            if first_ecg and options.annotations and metadata else ())
        return RecordPlan((PlannedObject(plan, spec.iod.key, spec.iod.file_suffix,
                                         spec.iod.modality, index, 1, segment_start,
                                         spec.labels),), left_out)
    objects = []
    for spec in layout.objects:
        first_ecg = spec.signal_class is SignalClass.ECG and index == 1
        groups = _spec_group_layouts(spec, filters)
        samples = tuple(_member_samples(record.groups[gi], cis, whole, spec.interpretation)
                        for (gi, cis), whole in zip(spec.members, spec.whole, strict=True))
        n_parts = spec.n_parts
        annotations = (annotation_items(metadata)
                       if first_ecg and options.annotations and metadata else ())
        channels = spec.labels
        for part in range(1, n_parts + 1):
            start_sample = (part - 1) * spec.part_length
            if n_parts == 1:
                start, part_groups, part_samples = segment_start, groups, samples
            else:
                start = segment_start + dt.timedelta(seconds=start_sample / spec.base_fs)
                part_samples = tuple(
                    s[start_sample * r:(start_sample + spec.part_length) * r]
                    for s, r in zip(samples, spec.ratios, strict=True))
                part_groups = tuple(_with_length(g, len(s))
                                    for g, s in zip(groups, part_samples, strict=True))
            old_uids = first_ecg and part == 1
            plan = _object_plan(spec.iod, common, start, index, part, old_uids,
                                series_uid if old_uids else None, part_groups, part_samples,
                                annotations if part == 1 else ())
            objects.append(PlannedObject(plan, spec.iod.key, spec.iod.file_suffix,
                                         spec.iod.modality, index, part, start, channels))
    # In time order; at one start, in the order of the classes (ECG first).
    if len(objects) > 1:
        order = {spec.iod.key: position for position, spec in enumerate(layout.objects)}
        objects.sort(key=lambda o: (o.start, order[o.iod_key]))
    return RecordPlan(tuple(objects), left_out)


class _CommonValues(NamedTuple):
    """What every object of a record shares (Patient, Study)."""

    key: str
    uid_root: str | None
    study_start: dt.datetime
    study_uid: str
    station: str | None
    study_description: str | None
    patient_id: str
    sex: str
    age: str | None
    study_number: str
    model: str | None
    """Manufacturer's Model Name (the source's device)."""
    size_weight: tuple[str | None, str | None]
    """Patient's Size (m) and Weight (kg) as DS, when known."""
    instance_key: str
    """What SOP Instance UIDs derive from (see :func:`instance_key`)."""


def _object_plan(iod: WaveformIod, common: _CommonValues, start: dt.datetime, segment: int,
                 part: int, old_uids: bool, series_uid: str | None,
                 groups: tuple[GroupLayout, ...], samples: tuple[np.ndarray, ...],
                 annotations: tuple[AnnotationItem, ...]) -> ObjectPlan:
    """One object's attributes, listed in tag order (the fast encoder's contract)."""
    key, root = common.key, common.uid_root
    if old_uids:  # MIMIC-IV-ECG's one object keeps the UIDs it always had
        sop_uid = derive_uid("instance", common.instance_key, root)
    else:
        sop_uid = derive_uid(f"instance/{iod.key}/s{segment}/p{part}", common.instance_key,
                             root)
    if series_uid is None:
        series_uid = derive_uid("series" if iod.series_number == 1 else f"series/{iod.key}",
                                key, root)
    date, time = _da(start), _tm(start)
    if start == common.study_start:
        study_date, study_time = date, time
    else:
        study_date, study_time = _da(common.study_start), _tm(common.study_start)
    attributes = [
        ("SpecificCharacterSet", "ISO_IR 192"),  # SOP Common
        ("SOPClassUID", iod.sop_class_uid),
        ("SOPInstanceUID", sop_uid),
        ("StudyDate", study_date),  # General Study
        ("ContentDate", date),  # Waveform Identification
        ("AcquisitionDateTime", date + time),
        ("StudyTime", study_time),
        ("ContentTime", time),
        ("AccessionNumber", ""),
        ("Modality", iod.modality),  # General Series
        ("Manufacturer", ""),  # General Equipment
        ("ReferringPhysicianName", ""),
    ]
    if common.station is not None:
        attributes.append(("StationName", common.station))
    if common.study_description is not None:
        attributes.append(("StudyDescription", common.study_description))
    if common.model is not None:
        attributes.append(("ManufacturerModelName", common.model))
    attributes += [
        ("PatientName", ""),  # Patient
        ("PatientID", common.patient_id),
        ("PatientBirthDate", ""),
        ("PatientSex", common.sex),
    ]
    if common.age:
        attributes.append(("PatientAge", common.age))  # Patient Study
    size, weight = common.size_weight
    if size is not None:
        attributes.append(("PatientSize", size))
    if weight is not None:
        attributes.append(("PatientWeight", weight))
    if iod.modality == "HD":
        # General Series: Laterality is Type 2C, for a paired body part; naming the part
        # (the circulation, unpaired) is how dciodvfy knows it must be absent.
        attributes.append(("BodyPartExamined", HD_BODY_PART))
    attributes += [
        ("StudyInstanceUID", common.study_uid),
        ("SeriesInstanceUID", series_uid),
        ("StudyID", common.study_number),
        ("SeriesNumber", str(iod.series_number)),
        ("InstanceNumber", str((segment - 1) * 100000 + part)),
    ]

    # Acquisition Context (TID 3401 items only where known; nothing is known here) and the
    # Waveform module are added by the encoders from ``groups``.
    return ObjectPlan(
        sop_class_uid=iod.sop_class_uid,
        sop_instance_uid=sop_uid,
        attributes=tuple(attributes),
        groups=groups,
        samples=samples,
        annotations=annotations,
    )


def _member_samples(group: MultiplexGroup, channels: tuple[int, ...], whole: bool,
                    interpretation: str) -> np.ndarray:
    """The object's samples of ``group``: the group's own array when it takes every channel
    in its type (no copy: all of MIMIC), else the chosen columns in the object's type."""
    samples = group.samples
    width = 4 if interpretation == "SL" else 2
    if whole and samples.dtype.itemsize == width:
        return samples
    dtype = "<i4" if width == 4 else "<i2"
    if whole:
        return samples.astype(dtype)
    return np.ascontiguousarray(samples[:, list(channels)], dtype=dtype)


@lru_cache(maxsize=1024)
def _with_length(layout: GroupLayout, n_samples: int) -> GroupLayout:
    """A part's layout: its group's with fewer samples (cached: parts share templates)."""
    return replace(layout, n_samples=n_samples)


def require_objects(plan: RecordPlan, what: str = "record") -> RecordPlan:
    """``plan``, or a one-line refusal when none of its signals fits an IOD."""
    if not plan.objects:
        reasons = "; ".join(f"{s.label}: {s.reason}" for s in plan.left_out[:4])
        more = f" (and {len(plan.left_out) - 4} more)" if len(plan.left_out) > 4 else ""
        raise UnsupportedRecord(f"no signal of the {what} fits a DICOM waveform IOD: "
                                f"{reasons}{more}")
    return plan


def build_dataset(
    record: EcgRecord,
    metadata: StudyMetadata | None = None,
    *,
    study_id: str | None = None,
    options: ConversionOptions | None = None,
    study_uid: str | None = None,
    series_uid: str | None = None,
) -> Dataset:
    """The DICOM waveform object for a record that makes one (see :func:`plan_object`)."""
    return plan_object(
        record, metadata, study_id=study_id, options=options, study_uid=study_uid,
        series_uid=series_uid,
    ).to_dataset()


class SeveralObjects(UnsupportedRecord):
    """The record makes several objects where the caller wants one file."""


def plan_object(
    record: EcgRecord,
    metadata: StudyMetadata | None = None,
    *,
    study_id: str | None = None,
    options: ConversionOptions | None = None,
    study_uid: str | None = None,
    series_uid: str | None = None,
) -> ObjectPlan:
    """The one object of a record that makes exactly one (all of MIMIC-IV-ECG); a record
    that needs several is refused with :class:`SeveralObjects` (use :func:`plan_record`)."""
    plan = require_objects(plan_record(record, metadata, study_id=study_id, options=options,
                                       study_uid=study_uid, series_uid=series_uid))
    if len(plan.objects) > 1:
        raise SeveralObjects(several_objects_reason(plan))
    return plan.objects[0].plan


def several_objects_reason(plan: RecordPlan) -> str:
    kinds = ", ".join(dict.fromkeys(o.file_suffix for o in plan.objects))
    return (f"the record makes {len(plan.objects)} DICOM objects ({kinds}); give a "
            "directory: convert RECORD -o DIR/")


def _filter_texts(metadata: StudyMetadata | None) -> tuple[str | None, str | None, str | None]:
    if metadata is None:
        return (None, None, None)
    return _filter_values_text(metadata.filter_low_hz, metadata.filter_high_hz,
                               metadata.notch_hz)


@lru_cache(maxsize=256)
def _filter_values_text(low: float | None, high: float | None, notch: float | None
                        ) -> tuple[str | None, str | None, str | None]:
    """The filter settings as DS (cached: a corpus has a few)."""
    return tuple(  # type: ignore[return-value]
        None if v is None else ds_text(v) for v in (low, high, notch))


def _patient_id(
    record: EcgRecord, metadata: StudyMetadata | None, options: ConversionOptions
) -> str:
    """subject_id from the tables; else ``--patient-id``; else the record name.

    A PACS files objects by Patient ID, so it is never left empty (dciodvfy warns).
    """
    if metadata and metadata.subject_id:
        return checked_text(metadata.subject_id, "LO", "Patient ID", "subject_id")
    if options.patient_id:
        return checked_text(options.patient_id, "LO", "Patient ID", "--patient-id")
    return checked_text(record.name, "LO", "Patient ID", "record name")


def instance_key(study_key: str, record_name: str) -> str:
    """The name SOP Instance UIDs derive from: the study key, with the record's name when it
    differs (PTB-XL's ``00001_hr`` and ``00001_lr`` are two objects of study 1). MIMIC-IV-ECG
    names each record by its study_id, so its UIDs are what they always were."""
    return study_key if record_name == study_key else f"{study_key}/{record_name}"


def _patient_sex(metadata: StudyMetadata | None) -> str:
    return (metadata.patient_sex or "") if metadata else ""


def _patient_age(metadata: StudyMetadata | None) -> str | None:
    """Patient's Age (AS) in years; 90 and older as ``090Y`` (see :data:`OLDEST_AGE`)."""
    if metadata is None or metadata.patient_age is None:
        return None
    return f"{min(metadata.patient_age, OLDEST_AGE):03d}Y"


_NO_SIZE_WEIGHT: tuple[str | None, str | None] = (None, None)


def _size_weight(metadata: StudyMetadata | None) -> tuple[str | None, str | None]:
    if metadata is None or not (metadata.patient_size_m or metadata.patient_weight_kg):
        return _NO_SIZE_WEIGHT
    return (ds_text(metadata.patient_size_m) if metadata.patient_size_m else None,
            ds_text(metadata.patient_weight_kg) if metadata.patient_weight_kg else None)


@identity_cache()
@lru_cache(maxsize=256)
def group_layout(
    channels: tuple[Channel, ...],
    sampling_frequency: float,
    n_samples: int,
    index: int,
    n_groups: int,
    filters: tuple[str | None, str | None, str | None],
    members: tuple[int, ...] | None = None,
    bits: tuple[int, ...] | None = None,
    signal_class: SignalClass = SignalClass.ECG,
    interpretation: str = "SS",
) -> GroupLayout:
    """The layout of one multiplex group; cached, as MIMIC has a handful of layouts.

    By the channels' identity first (the fast reader shares them), then by value, so equal
    layouts always give the same object (the encoder finds its templates by identity).
    ``members``: the channels of the group the object takes (default: all).
    """
    members = tuple(range(len(channels))) if members is None else members
    chosen = [channels[i] for i in members]
    bits = bits or tuple(_bits_stored(channel) for channel in channels)
    formats = {channel.fmt for channel in chosen}
    padding = None
    width = 4 if interpretation == "SL" else 2
    fmt = FORMATS.get(formats.pop()) if len(formats) == 1 else None
    if fmt is not None and (invalid := fmt.invalid_value) is not None:
        if -(1 << (8 * width - 1)) <= invalid < (1 << (8 * width - 1)):
            padding = invalid.to_bytes(width, "little", signed=True)
    label = GROUP_LABELS[signal_class]
    return GroupLayout(
        label=label if n_groups == 1 else f"{label} {index + 1}",
        sampling_frequency=ds_text(sampling_frequency),
        n_channels=len(chosen),
        n_samples=n_samples,
        padding_value=padding,
        channels=tuple(_channel_layout(channels[i], filters, bits[i], signal_class)
                       for i in members),
        interpretation=interpretation,
    )


def _channel_layout(
    channel: Channel, filters: tuple[str | None, str | None, str | None], bits_stored: int,
    signal_class: SignalClass,
) -> ChannelLayout:
    source = channel_source(channel.label, signal_class)
    label = checked_text(channel.label, "SH", "Channel Label", "signal name")
    if not label.strip():  # no name, or only control characters
        label = source.meaning[:16]
    return ChannelLayout(
        label=label,
        source=source,
        sensitivity=ds_text(1.0 / channel.gain),
        units=units_code(channel.units),
        baseline=ds_text(-channel.baseline / channel.gain),
        bits_stored=bits_stored,
        filter_low=filters[0],
        filter_high=filters[1],
        notch=filters[2],
    )


def _bits_stored(channel: Channel) -> int:
    """When the reader gave no figure: the ADC resolution, else the format's bits."""
    if 1 <= channel.adc_resolution <= 32:
        return channel.adc_resolution
    fmt = FORMATS.get(channel.fmt)
    return 16 if fmt is None else min(fmt.significant_bits, 32)


def derived_measurements(metadata: StudyMetadata) -> dict[str, float]:
    """Global intervals and axes from MIMIC's onsets/offsets (ms) and axes (degrees)."""
    m = metadata.measurements
    derived = {}
    if "rr_interval" in m:
        derived["rr"] = m["rr_interval"]
    for name, end, start in (("pr", "qrs_onset", "p_onset"), ("p", "p_end", "p_onset"),
                             ("qrs", "qrs_end", "qrs_onset"), ("qt", "t_end", "qrs_onset")):
        if end in m and start in m and m[end] >= m[start]:
            derived[name] = m[end] - m[start]
    for axis in ("p_axis", "qrs_axis", "t_axis"):
        if axis in m:
            derived[axis] = m[axis]
    return derived


def annotation_items(metadata: StudyMetadata) -> tuple[AnnotationItem, ...]:
    """Waveform Annotation items: machine measurements, coded statements, then the
    statements in text.

    Items come from caches (a measurement's value and a study's set of statements repeat
    across MIMIC-IV-ECG), so equal items are shared objects and cheap to encode.
    """
    items = [_measurement_item(name, value)
             for name, value in derived_measurements(metadata).items()]
    if metadata.coded_statements:
        items += _coded_items(metadata.coded_statements)
    if metadata.reports:
        items += _statement_items(metadata.reports)
    return tuple(items)


@lru_cache(maxsize=65536)
def _measurement_item(name: str, value: float) -> AnnotationItem:
    code, meaning, unit = MEASUREMENT_CONCEPTS[name]
    return AnnotationItem((code, "MDC", meaning), ds_text(value), unit)


@lru_cache(maxsize=65536)
def _statement_items(reports: tuple[str, ...]) -> tuple[AnnotationItem, ...]:
    """One item per statement (Unformatted Text Value, ST); a statement of nothing but
    control characters says nothing and is left out, as an empty cell is."""
    statements = (checked_text(statement, "ST", "Unformatted Text Value", "report statement")
                  for statement in reports)
    return tuple(AnnotationItem(text=text) for text in statements if text.strip())


@lru_cache(maxsize=4096)
def _coded_items(codes: tuple[tuple[str, str, str], ...]) -> tuple[AnnotationItem, ...]:
    """One item per coded statement: Concept Name "Finding", Concept Code the finding."""
    return tuple(
        AnnotationItem(concept=FINDING, code=(
            checked_text(value, "SH", "Code Value", "statement code"),
            scheme,
            checked_text(meaning, "LO", "Code Meaning", "statement meaning")))
        for value, scheme, meaning in codes)
