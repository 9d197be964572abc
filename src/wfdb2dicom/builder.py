"""ECG record + study metadata -> pydicom Dataset: the one place the mapping lives.

``docs/mapping.md`` is this module written out as a table; keep them in step. The output is
a pure function of the inputs (no clock, no random UIDs), so the same record always gives
the same bytes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian
from pydicom.valuerep import format_number_as_ds

from . import __version__
from .caching import identity_cache
from .errors import MetadataError, RecordError, UnsupportedRecord
from .formats import FORMATS
from .leads import LeadCode, code_for_label
from .metadata import StudyMetadata, normalise_study_id
from .record import Channel, EcgRecord
from .sources.header import with_header
from .uids import derive_uid
from .vr import checked_date, checked_text

IMPLEMENTATION_CLASS_UID = "2.25.196452354624513339813406389735815245373"
"""Fixed for this tool (a name-based UID of 'wfdb2dicom'), so the file meta never varies."""
IMPLEMENTATION_VERSION_NAME = f"WFDB2DICOM_{__version__}"[:16]


@dataclass(frozen=True)
class EcgIod:
    """Content constraints of one DICOM ECG IOD (PS3.3 A.34) that a record must meet."""

    name: str
    sop_class_uid: str
    max_groups: int
    max_channels: int
    max_samples: int | None
    min_fs: float
    max_fs: float

    def violation(self, record: EcgRecord) -> str | None:
        """The first constraint ``record`` breaks, as a phrase, or None if it fits."""
        if len(record.groups) > self.max_groups:
            return f"{len(record.groups)} sampling rates > {self.max_groups} multiplex groups"
        for group in record.groups:
            fs = group.sampling_frequency
            if not self.min_fs <= fs <= self.max_fs:
                return f"sampling frequency {fs:g} Hz outside {self.min_fs:g}-{self.max_fs:g} Hz"
            if len(group.channels) > self.max_channels:
                return f"{len(group.channels)} channels > {self.max_channels}"
            if self.max_samples is not None and group.n_samples > self.max_samples:
                return f"{group.n_samples} samples per channel > {self.max_samples}"
            if group.n_samples == 0:
                return "no samples"
        return None


TWELVE_LEAD_ECG = EcgIod("12-lead ECG", "1.2.840.10008.5.1.4.1.1.9.1.1", 5, 13, 16384, 200, 1000)
GENERAL_ECG = EcgIod("General ECG", "1.2.840.10008.5.1.4.1.1.9.1.2", 4, 24, None, 200, 1000)
AMBULATORY_ECG = EcgIod("Ambulatory ECG", "1.2.840.10008.5.1.4.1.1.9.1.3", 1, 12, None, 50, 1000)
ECG_IODS = (TWELVE_LEAD_ECG, GENERAL_ECG, AMBULATORY_ECG)
"""In order of preference: the most specific IOD the record fits is used."""

VOLTAGE_UNITS: dict[str, tuple[str, str, str]] = {
    "mv": ("mV", "UCUM", "millivolt"),
    "uv": ("uV", "UCUM", "microvolt"),
    "µv": ("uV", "UCUM", "microvolt"),
    "μv": ("uV", "UCUM", "microvolt"),
    "v": ("V", "UCUM", "volt"),
    "nv": ("nV", "UCUM", "nanovolt"),
}
"""WFDB unit strings (lower case) -> UCUM code and meaning."""

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

OLDEST_AGE = 90
"""Ages from 90 up are written ``090Y``: HIPAA's "90 or older" (PTB-XL's de-identification
puts them at 300; any source's 90+ is written alike)."""

FINDING = ("121071", "DCM", "Finding")
"""Concept Name of a coded statement (its Concept Code: the finding, e.g. SNOMED CT)."""


@dataclass(frozen=True)
class ConversionOptions:
    """User choices that shape the object (the core conversion's command-line options)."""

    uid_root: str | None = None
    annotations: bool = True
    acquisition_datetime: dt.datetime | None = None
    """Used only when neither the header nor the metadata give the acquisition time."""
    patient_id: str | None = None
    """Used only when the metadata gives no subject_id; else the record name stands in."""
    verify_checksums: bool = True


def choose_iod(record: EcgRecord) -> EcgIod:
    """The most specific ECG IOD whose content constraints the record meets."""
    reasons = []
    for iod in ECG_IODS:
        problem = iod.violation(record)
        if problem is None:
            return iod
        reasons.append(f"{iod.name}: {problem}")
    raise UnsupportedRecord("no DICOM ECG IOD accepts this record (" + "; ".join(reasons) + ")")


@lru_cache(maxsize=16384)
def ds_text(value: float) -> str:
    """A number as Decimal String: the shortest exact text when it fits in 16 characters."""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    text = repr(float(value))
    if len(text) <= 16 and "e" not in text:
        return text
    return format_number_as_ds(float(value))


def _da(moment: dt.datetime) -> str:
    return f"{moment.year:04d}{moment.month:02d}{moment.day:02d}"


def _tm(moment: dt.datetime) -> str:
    text = f"{moment.hour:02d}{moment.minute:02d}{moment.second:02d}"
    return f"{text}.{moment.microsecond:06d}" if moment.microsecond else text


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


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


def check_ecg_signals(record: EcgRecord) -> None:
    """Refuse records whose signals are not ECG voltages, or need more than 16 bits (the
    reader gives those as int32; only an ``SL`` object could hold them)."""
    for group in record.groups:
        problem = _non_ecg_signal(group.channels)
        if problem:
            raise UnsupportedRecord(problem)
        if group.samples.dtype.itemsize > 2:
            raise UnsupportedRecord(
                "samples exceed the 16-bit range of DICOM ECG waveforms (format "
                f"{group.channels[0].fmt})")


@identity_cache()
@lru_cache(maxsize=256)
def _non_ecg_signal(channels: tuple[Channel, ...]) -> str | None:
    """Why these channels are not ECG leads, or None; cached per layout."""
    for channel in channels:
        if channel.units.lower() not in VOLTAGE_UNITS:
            return (f"signal {channel.label!r} is in {channel.units!r}, not a voltage: not an "
                    "ECG lead")
    return None


@dataclass(frozen=True)
class ChannelLayout:
    """Everything a Channel Definition item holds: the same for every record of a layout."""

    label: str
    source: LeadCode
    sensitivity: str
    units: tuple[str, str, str]
    baseline: str
    bits_stored: int
    filter_low: str | None
    filter_high: str | None
    notch: str | None


@dataclass(frozen=True)
class GroupLayout:
    """A multiplex group without its samples; hashable, so encoders can cache per layout."""

    label: str
    sampling_frequency: str
    n_channels: int
    n_samples: int
    padding_value: bytes | None
    channels: tuple[ChannelLayout, ...]


class AnnotationItem(NamedTuple):
    """One Waveform Annotation item: a coded measurement, a coded statement (``concept``
    and ``code``) or a free-text statement.

    A NamedTuple because encoders cache by it (C-level hash and equality).
    """

    concept: tuple[str, str, str] | None = None
    numeric_value: str | None = None
    units: tuple[str, str, str] | None = None
    text: str | None = None
    code: tuple[str, str, str] | None = None
    """Concept Code Sequence: the coded statement's finding (e.g. SNOMED CT)."""


class ObjectPlan(NamedTuple):
    """The object as plain values: what both encoders (pydicom and fast) turn into bytes.

    ``attributes`` are the top-level attributes whose values are text (every Type 1/2
    attribute outside the sequences), as (keyword, value) pairs **in tag order**, the order
    of a DICOM data set, so the fast encoder need not sort them (``test_encoder`` checks).
    A NamedTuple: one is made per record.
    """

    sop_class_uid: str
    sop_instance_uid: str
    attributes: tuple[tuple[str, str], ...]
    groups: tuple[GroupLayout, ...]
    samples: tuple[np.ndarray, ...]
    annotations: tuple[AnnotationItem, ...]

    def to_dataset(self) -> Dataset:
        """The pydicom Dataset (the reference path)."""
        ds = Dataset()
        ds.file_meta = _file_meta(self.sop_class_uid, self.sop_instance_uid)
        for keyword, value in self.attributes:
            setattr(ds, keyword, value)
        ds.AcquisitionContextSequence = DicomSequence()
        ds.WaveformSequence = DicomSequence(
            [_group_item(layout, samples) for layout, samples in zip(self.groups, self.samples,
                                                                     strict=True)]
        )
        if self.annotations:
            ds.WaveformAnnotationSequence = DicomSequence(
                [_annotation_item(a) for a in self.annotations]
            )
        return ds


def build_dataset(
    record: EcgRecord,
    metadata: StudyMetadata | None = None,
    *,
    study_id: str | None = None,
    options: ConversionOptions | None = None,
    study_uid: str | None = None,
    series_uid: str | None = None,
) -> Dataset:
    """The DICOM ECG waveform object for ``record`` (see docs/mapping.md)."""
    return plan_object(
        record, metadata, study_id=study_id, options=options, study_uid=study_uid,
        series_uid=series_uid,
    ).to_dataset()


def plan_object(
    record: EcgRecord,
    metadata: StudyMetadata | None = None,
    *,
    study_id: str | None = None,
    options: ConversionOptions | None = None,
    study_uid: str | None = None,
    series_uid: str | None = None,
) -> ObjectPlan:
    """Decide every value of the object (the mapping); encoding is someone else's job."""
    options = options or ConversionOptions()
    check_ecg_signals(record)
    iod = choose_iod(record)
    metadata = with_header(metadata, record.comments)  # the table's values win
    key = normalise_study_id(study_id or (metadata.study_id if metadata else None) or record.name)
    moment = acquisition_time(record, metadata, options)
    sop_uid = derive_uid("instance", instance_key(key, record.name), options.uid_root)
    date, time = _da(moment), _tm(moment)
    # Values are decided in module order (which problem is reported first stays stable) and
    # listed in tag order.
    patient_id = _patient_id(record, metadata, options)
    sex, age = _patient_sex(metadata), _patient_age(metadata)
    study_uid = study_uid or derive_uid("study", key, options.uid_root)
    study_number = checked_text(key, "SH", "Study ID", "study_id")
    series_uid = series_uid or derive_uid("series", key, options.uid_root)
    station = (checked_text(metadata.cart_id, "SH", "Station Name", "cart_id")
               if metadata and metadata.cart_id else None)
    attributes = [
        ("SpecificCharacterSet", "ISO_IR 192"),  # SOP Common
        ("SOPClassUID", iod.sop_class_uid),
        ("SOPInstanceUID", sop_uid),
        ("StudyDate", date),  # General Study
        ("ContentDate", date),  # Waveform Identification
        ("AcquisitionDateTime", date + time),
        ("StudyTime", time),
        ("ContentTime", time),
        ("AccessionNumber", ""),
        ("Modality", "ECG"),  # General Series
        ("Manufacturer", ""),  # General Equipment
        ("ReferringPhysicianName", ""),
    ]
    if station is not None:
        attributes.append(("StationName", station))
    if metadata and metadata.device:
        attributes.append(("ManufacturerModelName", checked_text(
            metadata.device, "LO", "Manufacturer's Model Name", "device")))
    attributes += [
        ("PatientName", ""),  # Patient
        ("PatientID", patient_id),
        ("PatientBirthDate", ""),
        ("PatientSex", sex),
    ]
    if age:
        attributes.append(("PatientAge", age))  # Patient Study
    if metadata and metadata.patient_size_m:
        attributes.append(("PatientSize", ds_text(metadata.patient_size_m)))
    if metadata and metadata.patient_weight_kg:
        attributes.append(("PatientWeight", ds_text(metadata.patient_weight_kg)))
    attributes += [
        ("StudyInstanceUID", study_uid),
        ("SeriesInstanceUID", series_uid),
        ("StudyID", study_number),
        ("SeriesNumber", "1"),
        ("InstanceNumber", "1"),
    ]
    # Acquisition Context (TID 3401 items only where known; nothing is known here) and the
    # Waveform module are added by the encoders from ``groups``.
    filters = _filter_texts(metadata)
    groups = tuple(
        group_layout(group.channels, group.sampling_frequency, group.n_samples, index,
                     len(record.groups), filters)
        for index, group in enumerate(record.groups)
    )
    annotations = annotation_items(metadata) if options.annotations and metadata else ()
    return ObjectPlan(
        sop_class_uid=iod.sop_class_uid,
        sop_instance_uid=sop_uid,
        attributes=tuple(attributes),
        groups=groups,
        samples=tuple(group.samples for group in record.groups),
        annotations=annotations,
    )


def _filter_texts(metadata: StudyMetadata | None) -> tuple[str | None, str | None, str | None]:
    if metadata is None:
        return (None, None, None)
    return tuple(  # type: ignore[return-value]
        None if v is None else ds_text(v)
        for v in (metadata.filter_low_hz, metadata.filter_high_hz, metadata.notch_hz)
    )


def _file_meta(sop_class_uid: str, sop_uid: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    return meta


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


@identity_cache()
@lru_cache(maxsize=256)
def group_layout(
    channels: tuple[Channel, ...],
    sampling_frequency: float,
    n_samples: int,
    index: int,
    n_groups: int,
    filters: tuple[str | None, str | None, str | None],
) -> GroupLayout:
    """The layout of one multiplex group; cached, as MIMIC has a handful of layouts.

    By the channels' identity first (the fast reader shares them), then by value, so equal
    layouts always give the same object (the encoder finds its templates by identity).
    """
    formats = {channel.fmt for channel in channels}
    padding = None
    fmt = FORMATS.get(formats.pop()) if len(formats) == 1 else None
    if fmt is not None and (invalid := fmt.invalid_value) is not None:
        if -32768 <= invalid <= 32767:
            padding = invalid.to_bytes(2, "little", signed=True)
    return GroupLayout(
        label="RHYTHM" if n_groups == 1 else f"RHYTHM {index + 1}",
        sampling_frequency=ds_text(sampling_frequency),
        n_channels=len(channels),
        n_samples=n_samples,
        padding_value=padding,
        channels=tuple(_channel_layout(channel, filters) for channel in channels),
    )


def _channel_layout(
    channel: Channel, filters: tuple[str | None, str | None, str | None]
) -> ChannelLayout:
    lead = code_for_label(channel.label)
    label = checked_text(channel.label, "SH", "Channel Label", "signal name")
    if not label.strip():  # no name, or only control characters
        label = lead.meaning[:16]
    return ChannelLayout(
        label=label,
        source=lead,
        sensitivity=ds_text(1.0 / channel.gain),
        units=VOLTAGE_UNITS[channel.units.lower()],
        baseline=ds_text(-channel.baseline / channel.gain),
        bits_stored=_bits_stored(channel),
        filter_low=filters[0],
        filter_high=filters[1],
        notch=filters[2],
    )


def _group_item(layout: GroupLayout, samples: np.ndarray) -> Dataset:
    item = Dataset()
    item.WaveformOriginality = "ORIGINAL"
    item.NumberOfWaveformChannels = layout.n_channels
    item.NumberOfWaveformSamples = layout.n_samples
    item.SamplingFrequency = layout.sampling_frequency
    item.MultiplexGroupLabel = layout.label
    item.ChannelDefinitionSequence = DicomSequence(
        [_channel_item(channel) for channel in layout.channels]
    )
    item.WaveformBitsAllocated = 16
    item.WaveformSampleInterpretation = "SS"
    if layout.padding_value is not None:
        item.WaveformPaddingValue = layout.padding_value
    item.WaveformData = samples.astype("<i2", copy=False).tobytes()
    return item


def _channel_item(channel: ChannelLayout) -> Dataset:
    item = Dataset()
    item.ChannelLabel = channel.label
    item.ChannelSourceSequence = DicomSequence(
        [_code(channel.source.value, channel.source.scheme, channel.source.meaning)]
    )
    item.ChannelSensitivity = channel.sensitivity
    item.ChannelSensitivityUnitsSequence = DicomSequence([_code(*channel.units)])
    item.ChannelSensitivityCorrectionFactor = "1"
    item.ChannelBaseline = channel.baseline
    item.ChannelSampleSkew = "0"
    item.WaveformBitsStored = channel.bits_stored
    if channel.filter_low is not None:
        item.FilterLowFrequency = channel.filter_low
    if channel.filter_high is not None:
        item.FilterHighFrequency = channel.filter_high
    if channel.notch is not None:
        item.NotchFilterFrequency = channel.notch
    return item


def _bits_stored(channel: Channel) -> int:
    if 1 <= channel.adc_resolution <= 16:
        return channel.adc_resolution
    fmt = FORMATS.get(channel.fmt)
    return 16 if fmt is None else min(fmt.significant_bits, 16)


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


REFERENCED_CHANNELS = [1, 0]
"""Multiplex group 1, channel 0 = every channel of the group (PS3.3 C.10.10.1.1)."""


def _annotation_item(annotation: AnnotationItem) -> Dataset:
    item = Dataset()
    item.ReferencedWaveformChannels = REFERENCED_CHANNELS
    if annotation.code is not None:
        item.ConceptNameCodeSequence = DicomSequence([_code(*annotation.concept)])
        item.ConceptCodeSequence = DicomSequence([_code(*annotation.code)])
    elif annotation.concept is not None:
        item.ConceptNameCodeSequence = DicomSequence([_code(*annotation.concept)])
        item.NumericValue = annotation.numeric_value
        item.MeasurementUnitsCodeSequence = DicomSequence([_code(*annotation.units)])
    else:
        item.UnformattedTextValue = annotation.text
    return item
