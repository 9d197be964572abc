"""ECG record + study metadata -> pydicom Dataset: the one place the mapping lives.

``docs/mapping.md`` is this module written out as a table; keep them in step. The output is
a pure function of the inputs (no clock, no random UIDs), so the same record always gives
the same bytes.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian
from pydicom.valuerep import format_number_as_ds

from . import __version__
from .errors import MetadataError, UnsupportedRecord
from .leads import code_for_label
from .metadata import StudyMetadata, normalise_study_id
from .reader import INVALID_SAMPLE
from .record import EcgRecord, MultiplexGroup
from .uids import derive_uid

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

VOLTAGE_UNITS: dict[str, tuple[str, str]] = {
    "mv": ("mV", "millivolt"),
    "uv": ("uV", "microvolt"),
    "µv": ("uV", "microvolt"),
    "μv": ("uV", "microvolt"),
    "v": ("V", "volt"),
    "nv": ("nV", "nanovolt"),
}
"""WFDB unit strings (lower case) -> UCUM code and meaning."""

DEFAULT_BITS_STORED = {"8": 8, "80": 8, "212": 12, "310": 10, "311": 10, "16": 16, "61": 16,
                       "160": 16}

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

_SEX_RE = re.compile(r"\bsex>?\s*:\s*(male|female|m|f)\b", re.IGNORECASE)
_AGE_RE = re.compile(r"\bage>?\s*:\s*(\d{1,3})\b", re.IGNORECASE)


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


def ds_text(value: float) -> str:
    """A number as Decimal String: the shortest exact text when it fits in 16 characters."""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    text = repr(float(value))
    if len(text) <= 16 and "e" not in text:
        return text
    return format_number_as_ds(float(value))


def _checked(value: str, attribute: str, vr_max: int, source: str) -> str:
    """Refuse text that would not survive as one value of a short string VR."""
    if len(value) > vr_max:
        raise MetadataError(
            f"{source} {value!r} is longer than {attribute} allows ({vr_max} characters)"
        )
    if "\\" in value:
        raise MetadataError(f"{source} {value!r} contains a backslash, which would split "
                            f"{attribute} into several values")
    return value


def _da(moment: dt.datetime) -> str:
    return moment.strftime("%Y%m%d")


def _tm(moment: dt.datetime) -> str:
    text = moment.strftime("%H%M%S")
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
    """Header base date+time, else the table's ecg_time, else the user's; never the clock."""
    for moment in (record.base_datetime, metadata.ecg_time if metadata else None,
                   options.acquisition_datetime):
        if moment is not None:
            return moment.replace(tzinfo=None)
    raise MetadataError(
        "no acquisition time: the header has no base date and time and there is no ecg_time "
        "for the study; give --acquisition-datetime"
    )


def check_ecg_signals(record: EcgRecord) -> None:
    """Refuse records whose signals are not ECG voltages."""
    for group in record.groups:
        for channel in group.channels:
            if channel.units.lower() not in VOLTAGE_UNITS:
                raise UnsupportedRecord(
                    f"signal {channel.label!r} is in {channel.units!r}, not a voltage: not an "
                    "ECG lead"
                )


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
    options = options or ConversionOptions()
    check_ecg_signals(record)
    iod = choose_iod(record)
    key = normalise_study_id(study_id or (metadata.study_id if metadata else None) or record.name)
    moment = acquisition_time(record, metadata, options)
    sop_uid = derive_uid("instance", key, options.uid_root)

    ds = Dataset()
    ds.file_meta = _file_meta(iod.sop_class_uid, sop_uid)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = iod.sop_class_uid
    ds.SOPInstanceUID = sop_uid
    # Patient
    ds.PatientName = ""
    ds.PatientID = _patient_id(record, metadata, options)
    ds.PatientBirthDate = ""
    ds.PatientSex = _patient_sex(record.comments)
    if age := _patient_age(record.comments):
        ds.PatientAge = age
    # General Study
    ds.StudyInstanceUID = study_uid or derive_uid("study", key, options.uid_root)
    ds.StudyDate = _da(moment)
    ds.StudyTime = _tm(moment)
    ds.ReferringPhysicianName = ""
    ds.StudyID = _checked(key, "Study ID", 16, "study_id")
    ds.AccessionNumber = ""
    # General Series
    ds.Modality = "ECG"
    ds.SeriesInstanceUID = series_uid or derive_uid("series", key, options.uid_root)
    ds.SeriesNumber = 1
    # General Equipment
    ds.Manufacturer = ""
    if metadata and metadata.cart_id:
        ds.StationName = _checked(metadata.cart_id, "Station Name", 16, "cart_id")
    # Waveform Identification
    ds.InstanceNumber = 1
    ds.ContentDate = _da(moment)
    ds.ContentTime = _tm(moment)
    ds.AcquisitionDateTime = _da(moment) + _tm(moment)
    # Acquisition Context: TID 3401 items only where known; nothing is known here.
    ds.AcquisitionContextSequence = DicomSequence()
    # Waveform
    ds.WaveformSequence = DicomSequence(
        [_multiplex_group(group, index, len(record.groups), metadata)
         for index, group in enumerate(record.groups)]
    )
    # Waveform Annotation
    if options.annotations and metadata:
        items = annotation_items(metadata)
        if items:
            ds.WaveformAnnotationSequence = DicomSequence(items)
    return ds


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
        return _checked(metadata.subject_id, "Patient ID", 64, "subject_id")
    if options.patient_id:
        return _checked(options.patient_id, "Patient ID", 64, "--patient-id")
    return _checked(record.name, "Patient ID", 64, "record name")


def _patient_sex(comments: Sequence[str]) -> str:
    for comment in comments:
        if match := _SEX_RE.search(comment):
            return match.group(1)[0].upper()
    return ""


def _patient_age(comments: Sequence[str]) -> str | None:
    for comment in comments:
        if match := _AGE_RE.search(comment):
            return f"{int(match.group(1)):03d}Y"
    return None


def _multiplex_group(
    group: MultiplexGroup, index: int, n_groups: int, metadata: StudyMetadata | None
) -> Dataset:
    item = Dataset()
    item.WaveformOriginality = "ORIGINAL"
    item.NumberOfWaveformChannels = len(group.channels)
    item.NumberOfWaveformSamples = group.n_samples
    item.SamplingFrequency = ds_text(group.sampling_frequency)
    item.MultiplexGroupLabel = "RHYTHM" if n_groups == 1 else f"RHYTHM {index + 1}"
    item.ChannelDefinitionSequence = DicomSequence(
        [_channel_definition(channel, metadata) for channel in group.channels]
    )
    item.WaveformBitsAllocated = 16
    item.WaveformSampleInterpretation = "SS"
    formats = {channel.fmt for channel in group.channels}
    if len(formats) == 1 and (invalid := INVALID_SAMPLE.get(formats.pop())) is not None:
        if -32768 <= invalid <= 32767:
            item.WaveformPaddingValue = invalid.to_bytes(2, "little", signed=True)
    item.WaveformData = group.samples.astype("<i2", copy=False).tobytes()
    return item


def _channel_definition(channel, metadata: StudyMetadata | None) -> Dataset:
    unit_code, unit_meaning = VOLTAGE_UNITS[channel.units.lower()]
    lead = code_for_label(channel.label)
    item = Dataset()
    item.ChannelLabel = _checked(channel.label, "Channel Label", 16, "signal name") if (
        channel.label) else lead.meaning[:16]
    item.ChannelSourceSequence = DicomSequence([_code(lead.value, lead.scheme, lead.meaning)])
    item.ChannelSensitivity = ds_text(1.0 / channel.gain)
    item.ChannelSensitivityUnitsSequence = DicomSequence([_code(unit_code, "UCUM", unit_meaning)])
    item.ChannelSensitivityCorrectionFactor = "1"
    item.ChannelBaseline = ds_text(-channel.baseline / channel.gain)
    item.ChannelSampleSkew = "0"
    item.WaveformBitsStored = _bits_stored(channel)
    if metadata is not None:
        if metadata.filter_low_hz is not None:
            item.FilterLowFrequency = ds_text(metadata.filter_low_hz)
        if metadata.filter_high_hz is not None:
            item.FilterHighFrequency = ds_text(metadata.filter_high_hz)
        if metadata.notch_hz is not None:
            item.NotchFilterFrequency = ds_text(metadata.notch_hz)
    return item


def _bits_stored(channel) -> int:
    if 1 <= channel.adc_resolution <= 16:
        return channel.adc_resolution
    return DEFAULT_BITS_STORED.get(channel.fmt, 16)


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


def annotation_items(metadata: StudyMetadata) -> list[Dataset]:
    """Waveform Annotation items: machine measurements, then the report statements."""
    items = []
    for name, value in derived_measurements(metadata).items():
        code, meaning, unit = MEASUREMENT_CONCEPTS[name]
        item = Dataset()
        item.ReferencedWaveformChannels = [1, 0]
        item.ConceptNameCodeSequence = DicomSequence([_code(code, "MDC", meaning)])
        item.NumericValue = ds_text(value)
        item.MeasurementUnitsCodeSequence = DicomSequence([_code(*unit)])
        items.append(item)
    for statement in metadata.reports:
        if len(statement) > 1024:
            raise MetadataError(f"report statement of {len(statement)} characters exceeds 1024")
        item = Dataset()
        item.ReferencedWaveformChannels = [1, 0]
        item.UnformattedTextValue = statement
        items.append(item)
    return items
