"""Decode a DICOM ECG waveform object (ours or a vendor's) into plain Python values.

This is the reverse direction of the builder, and deliberately independent of it: samples come
from pydicom's own ``multiplex_array`` and every attribute is read as the standard defines it
(PS3.3 C.10.9 Waveform, C.10.10 Waveform Annotation), not as our builder happens to write it.
Vendor objects differ from ours in the ways a reader must tolerate: SCP-ECG lead codes instead
of MDC, microvolt units, several multiplex groups (rhythm and median beat), filters given per
channel or not at all, annotations that are text, measurements or fiducial points.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.valuerep import DT
from pydicom.waveforms import multiplex_array

from .errors import ConversionError
from .leads import label_for_code, lead_number, normalise_lead_name

# Sample interpretations whose raw values are linear in the physical quantity. mu-law and
# A-law (MB, AB) are companded: their raw values would need expanding first.
_LINEAR_INTERPRETATIONS = {"SB", "UB", "SS", "US", "SL", "UL", "SV", "UV"}
_DTYPES = {
    (8, "SB"): np.int8, (8, "UB"): np.uint8, (16, "SS"): np.int16, (16, "US"): np.uint16,
    (32, "SL"): np.int32, (32, "UL"): np.uint32, (64, "SV"): np.int64, (64, "UV"): np.uint64,
}


@dataclass(frozen=True)
class DicomChannel:
    """One item of the Channel Definition Sequence."""

    label: str
    """Channel Label, empty when absent (most carts leave it out and code the source)."""
    lead_code: tuple[str, str, str] | None
    """Channel Source: (code value, coding scheme designator, code meaning)."""
    sensitivity: float
    """Channel Sensitivity: physical units per raw sample unit (1.0 when uncalibrated)."""
    sensitivity_units: str
    """UCUM code value of the Channel Sensitivity Units (``uV``, ``mV``), empty when absent."""
    correction: float
    """Channel Sensitivity Correction Factor."""
    baseline: float
    """Channel Baseline, in physical units."""
    bits_stored: int | None
    filter_low: float | None
    """Filter Low Frequency in Hz: the high-pass cutoff, the low edge of the pass band."""
    filter_high: float | None
    """Filter High Frequency in Hz: the low-pass cutoff."""
    notch: float | None
    """Notch Filter Frequency in Hz; 0 conventionally means no notch filter."""

    def physical(self, raw: np.ndarray) -> np.ndarray:
        """Physical values (in ``sensitivity_units``) of raw samples, as PS3.3 C.10.9 defines."""
        return raw.astype(np.float64) * self.sensitivity * self.correction + self.baseline


@dataclass(frozen=True)
class DicomGroup:
    """One multiplex group: channels sampled together at one rate."""

    index: int
    """0-based position in the Waveform Sequence (DICOM numbers groups from 1)."""
    label: str
    sampling_frequency: float
    channels: tuple[DicomChannel, ...]
    samples: np.ndarray
    """Raw samples, shape (n_samples, n_channels), in the dtype of the sample interpretation."""
    padding_value: int | None
    """Waveform Padding Value: raw value that marks "no sample"."""
    time_offset_ms: float = 0.0
    """Multiplex Group Time Offset: start of this group after the acquisition time."""

    @property
    def n_samples(self) -> int:
        return int(self.samples.shape[0])

    @property
    def duration(self) -> float:
        """Length of the group in seconds."""
        return self.n_samples / self.sampling_frequency


@dataclass(frozen=True)
class Annotation:
    """One Waveform Annotation Sequence item.

    Carts store three kinds: free-text statements (``text``), measurements (``concept``,
    ``value``, ``units``) and fiducial points (``concept`` with ``sample_positions``).
    """

    text: str | None = None
    concept: str | None = None
    """Code Meaning of the Concept Name (e.g. ``QRS Duration``)."""
    value: float | None = None
    units: str | None = None
    """UCUM code value of the Measurement Units (e.g. ``ms``)."""
    group_number: int | None = None
    """Annotation Group Number: ties related annotations together (e.g. one beat's points)."""
    channels: tuple[tuple[int, int], ...] = ()
    """Referenced Waveform Channels as (multiplex group, channel), both 1-based; channel 0
    means every channel of the group."""
    temporal_range_type: str | None = None
    sample_positions: tuple[int, ...] = ()
    """Referenced Sample Positions, 1-based as in DICOM."""

    @property
    def multiplex_groups(self) -> frozenset[int]:
        """1-based multiplex groups the annotation refers to."""
        return frozenset(group for group, _ in self.channels)

    def describe(self) -> str:
        """A one-line human reading, e.g. ``QRS Duration: 75 ms``."""
        if self.text is not None:
            head = self.text if self.concept is None else f"{self.concept}: {self.text}"
        elif self.value is not None:
            head = f"{self.concept or 'value'}: {_format_number(self.value)}"
            if self.units:
                head += f" {self.units}"
        else:
            head = self.concept or ""
        if self.sample_positions:
            kind = self.temporal_range_type or "POINT"
            positions = ",".join(str(p) for p in self.sample_positions)
            head += f" [{kind} at sample {positions}]"
        return " ".join(head.split())


@dataclass(frozen=True)
class DicomEcg:
    """What a DICOM ECG waveform object holds, decoded."""

    patient_id: str
    patient_name: str
    study_id: str
    acquisition_datetime: dt.datetime | None
    """Acquisition DateTime; timezone-aware only when the object gives an offset."""
    station_name: str
    sop_class_uid: str
    groups: tuple[DicomGroup, ...]
    annotations: tuple[Annotation, ...]

    @property
    def statements(self) -> tuple[str, ...]:
        """Free-text annotations: the cart's interpretation statements."""
        return tuple(a.text for a in self.annotations if a.text and a.value is None)

    @property
    def measurements(self) -> tuple[Annotation, ...]:
        """Numeric annotations: intervals, axes, rates."""
        return tuple(a for a in self.annotations if a.value is not None)


def read_dicom_ecg(source: str | Path | Dataset) -> DicomEcg:
    """Decode a DICOM waveform object; anything else raises :class:`ConversionError`."""
    ds = source if isinstance(source, Dataset) else _read(Path(source))
    name = Path(source).name if not isinstance(source, Dataset) else "dataset"
    if "WaveformSequence" not in ds or not ds.WaveformSequence:
        sop_class = ds.get("SOPClassUID")
        what = f" ({sop_class.name})" if sop_class else ""
        raise ConversionError(f"{name} is not a DICOM waveform object{what}: no Waveform Sequence")
    groups = tuple(_read_group(ds, i, name) for i in range(len(ds.WaveformSequence)))
    annotations = tuple(
        _read_annotation(item) for item in ds.get("WaveformAnnotationSequence", [])
    )
    return DicomEcg(
        patient_id=_text(ds, "PatientID"),
        patient_name=_text(ds, "PatientName"),
        study_id=_text(ds, "StudyID"),
        acquisition_datetime=_acquisition_datetime(ds),
        station_name=_text(ds, "StationName"),
        sop_class_uid=_text(ds, "SOPClassUID"),
        groups=groups,
        annotations=annotations,
    )


def lead_name(channel: DicomChannel) -> str:
    """The lead's usual name (``I``, ``aVR``, ``V1``...).

    The coded source wins over the label because it is what the standard requires and what
    carts fill in reliably. A label that names the same lead more specifically (``MLII`` for
    the code of "modified limb lead") is kept; a label or the code meaning is the fallback for
    sources that are not leads.
    """
    label = channel.label.strip()
    if channel.lead_code is not None:
        value, scheme, meaning = channel.lead_code
        name = label_for_code(value, scheme)
        if name:
            if (label and normalise_lead_name(label) != normalise_lead_name(name)
                    and lead_number(label) == lead_number(name)):
                return label
            return name
    if label:
        return label
    if channel.lead_code is not None and channel.lead_code[2].strip():
        return channel.lead_code[2].strip()
    return ""


def _read(path: Path) -> Dataset:
    try:
        return pydicom.dcmread(path)
    except FileNotFoundError:
        raise ConversionError(f"{path.name}: no such file") from None
    except IsADirectoryError:
        raise ConversionError(f"{path.name} is a directory, not a DICOM file") from None
    except InvalidDicomError:
        raise ConversionError(f"{path.name} is not a DICOM file") from None
    except OSError as exc:
        raise ConversionError(f"cannot read {path.name}: {exc.strerror}") from None
    except Exception as exc:  # pydicom raises many types on corrupt input
        raise ConversionError(f"{path.name} is not a readable DICOM file: {exc}") from None


def _read_group(ds: Dataset, index: int, name: str) -> DicomGroup:
    item = ds.WaveformSequence[index]
    where = f"{name}: multiplex group {index + 1}"
    bits = item.get("WaveformBitsAllocated")
    interpretation = str(item.get("WaveformSampleInterpretation", ""))
    if interpretation not in _LINEAR_INTERPRETATIONS:
        raise ConversionError(
            f"{where}: sample interpretation {interpretation or '(none)'!r} is not supported"
        )
    try:
        fs = float(item.SamplingFrequency)
        n_channels = int(item.NumberOfWaveformChannels)
        n_samples = int(item.NumberOfWaveformSamples)
    except (AttributeError, TypeError, ValueError):
        raise ConversionError(
            f"{where} lacks a valid Sampling Frequency, Number of Waveform Channels or Samples"
        ) from None
    if fs <= 0:
        raise ConversionError(f"{where}: sampling frequency must be positive, not {fs:g}")
    definitions = item.get("ChannelDefinitionSequence", [])
    if len(definitions) != n_channels:
        raise ConversionError(
            f"{where} declares {n_channels} channels but defines {len(definitions)}"
        )
    data = item.get("WaveformData", b"") or b""
    needed = n_samples * n_channels * (int(bits or 0) // 8)
    if len(data) < needed:
        raise ConversionError(
            f"{where}: Waveform Data holds {len(data)} bytes, {needed} expected"
        )
    try:
        samples = multiplex_array(ds, index, as_raw=True)
    except Exception as exc:  # unsupported bit depth and the like
        raise ConversionError(f"{where}: cannot decode samples: {exc}") from None
    return DicomGroup(
        index=index,
        label=str(item.get("MultiplexGroupLabel", "") or ""),
        sampling_frequency=fs,
        channels=tuple(_read_channel(c) for c in definitions),
        samples=samples,
        padding_value=_padding_value(item, int(bits or 0), interpretation),
        time_offset_ms=_float(item.get("MultiplexGroupTimeOffset")) or 0.0,
    )


def _read_channel(item: Dataset) -> DicomChannel:
    lead_code = None
    sources = item.get("ChannelSourceSequence")
    if sources:
        code = sources[0]
        lead_code = (
            str(code.get("CodeValue", "") or ""),
            str(code.get("CodingSchemeDesignator", "") or ""),
            str(code.get("CodeMeaning", "") or ""),
        )
    units = ""
    units_seq = item.get("ChannelSensitivityUnitsSequence")
    if units_seq:
        units = str(units_seq[0].get("CodeValue", "") or "")
    bits_stored = item.get("WaveformBitsStored")
    return DicomChannel(
        label=str(item.get("ChannelLabel", "") or ""),
        lead_code=lead_code,
        sensitivity=_float(item.get("ChannelSensitivity"), 1.0),
        sensitivity_units=units,
        correction=_float(item.get("ChannelSensitivityCorrectionFactor"), 1.0),
        baseline=_float(item.get("ChannelBaseline"), 0.0),
        bits_stored=int(bits_stored) if bits_stored is not None else None,
        filter_low=_float(item.get("FilterLowFrequency")),
        filter_high=_float(item.get("FilterHighFrequency")),
        notch=_float(item.get("NotchFilterFrequency")),
    )


def _read_annotation(item: Dataset) -> Annotation:
    concept = None
    names = item.get("ConceptNameCodeSequence")
    if names:
        concept = str(names[0].get("CodeMeaning", "") or "") or None
    units = None
    units_seq = item.get("MeasurementUnitsCodeSequence")
    if units_seq:
        units = str(units_seq[0].get("CodeValue", "") or "") or None
    text = item.get("UnformattedTextValue")
    if text is None and item.get("ConceptCodeSequence"):
        text = item.ConceptCodeSequence[0].get("CodeMeaning")
    refs = [int(v) for v in _as_list(item.get("ReferencedWaveformChannels"))]
    group = item.get("AnnotationGroupNumber")
    return Annotation(
        text=str(text).strip() if text is not None else None,
        concept=concept,
        value=_float(item.get("NumericValue")),
        units=units,
        group_number=int(group) if group is not None else None,
        channels=tuple(zip(refs[0::2], refs[1::2], strict=False)),
        temporal_range_type=str(item.get("TemporalRangeType", "") or "") or None,
        sample_positions=tuple(int(v) for v in _as_list(item.get("ReferencedSamplePositions"))),
    )


def _acquisition_datetime(ds: Dataset) -> dt.datetime | None:
    """Acquisition DateTime, else Acquisition Date + Time; None rather than a guess."""
    value = ds.get("AcquisitionDateTime")
    text = str(value).strip() if value else ""
    if not text and ds.get("AcquisitionDate"):
        text = f"{str(ds.AcquisitionDate).strip()}{str(ds.get('AcquisitionTime') or '').strip()}"
    if not text:
        return None
    try:
        parsed = DT(text)
    except ValueError:
        return None
    return dt.datetime(
        parsed.year, parsed.month, parsed.day, parsed.hour, parsed.minute, parsed.second,
        parsed.microsecond, parsed.tzinfo,
    )


def _padding_value(item: Dataset, bits: int, interpretation: str) -> int | None:
    raw = item.get("WaveformPaddingValue")
    if raw is None or raw == b"" or (bits, interpretation) not in _DTYPES:
        return None
    if isinstance(raw, int):
        return raw
    data = bytes(raw)[: bits // 8]
    if len(data) < bits // 8:
        return None
    dtype = np.dtype(_DTYPES[bits, interpretation]).newbyteorder("<")
    return int(np.frombuffer(data, dtype=dtype)[0])


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


def _float(value: object, default: float | None = None) -> float | None:
    if value is None or value == "":
        return default
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default


def _as_list(value: object) -> list:
    if value is None:
        return []
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return list(value)
    return [value]


def _format_number(value: float) -> str:
    """``982`` rather than ``982.0``; DS values are usually whole numbers."""
    if np.isfinite(value) and value == int(value):
        return str(int(value))
    return f"{value:g}"
