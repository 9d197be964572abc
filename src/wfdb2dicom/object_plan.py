"""The object plan: the contract between the builder (which decides every value) and the
encoders (pydicom's writer, the reference; ``encoder.py``, the fast path).

An :class:`ObjectPlan` is one DICOM waveform object as plain values. The builder makes it,
:meth:`ObjectPlan.to_dataset` turns it into a pydicom Dataset, ``encoder.encode_plan`` into
the same bytes without one. What the fast encoder relies on is checked here, once per
layout of attributes (:func:`check_attribute_layout`): every attribute a text VR it can
write, in tag order, and all of them before the sequences it appends.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numpy as np
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian

from . import __version__
from .leads import LeadCode

IMPLEMENTATION_CLASS_UID = "2.25.196452354624513339813406389735815245373"
"""Fixed for this tool (a name-based UID of 'wfdb2dicom'), so the file meta never varies."""
IMPLEMENTATION_VERSION_NAME = f"WFDB2DICOM_{__version__}"[:16]

TEXT_VRS = frozenset(("AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST",
                      "TM", "UC", "UI", "UR", "UT"))
"""VRs the fast encoder writes as text (top-level attributes must be one of these)."""
FIRST_SEQUENCE_TAG = 0x00400555
"""Acquisition Context Sequence: the first of the sequences the encoders append."""

SAMPLE_DTYPES = {"SS": np.dtype("<i2"), "SL": np.dtype("<i4")}
"""Waveform Sample Interpretation -> the little-endian array type of its samples."""


@dataclass(frozen=True)
class ChannelLayout:
    """Everything a Channel Definition item holds: the same for every record of a layout."""

    label: str
    source: LeadCode
    """Channel Source code (CID 3001 lead, 3003 pressure, 3004 pulse, 3005 respiration)."""
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
    interpretation: str = "SS"
    """``SS`` (16-bit samples) or ``SL`` (32-bit): what its samples need."""

    @property
    def bits_allocated(self) -> int:
        return SAMPLE_DTYPES[self.interpretation].itemsize * 8

    @property
    def dtype(self) -> np.dtype:
        return SAMPLE_DTYPES[self.interpretation]


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
    of a DICOM data set, so the fast encoder need not sort them
    (:func:`check_attribute_layout`). ``samples[i]`` are group i's samples, (n_samples,
    n_channels) C-contiguous in the group's type. A NamedTuple: one is made per record.
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
        ds.file_meta = file_meta(self.sop_class_uid, self.sop_instance_uid)
        for keyword, value in self.attributes:
            setattr(ds, keyword, value)
        ds.AcquisitionContextSequence = DicomSequence()
        ds.WaveformSequence = DicomSequence(
            [group_item(layout, samples) for layout, samples in zip(self.groups, self.samples,
                                                                    strict=True)]
        )
        if self.annotations:
            ds.WaveformAnnotationSequence = DicomSequence(
                [annotation_item(a) for a in self.annotations]
            )
        return ds


class LeftOutSignal(NamedTuple):
    """A signal of the record that no object holds, and why (for the manifest)."""

    segment: int
    label: str
    reason: str


class PlannedObject(NamedTuple):
    """One object of a record, with what names its file and its manifest line."""

    plan: ObjectPlan
    iod_key: str
    """``WaveformIod.key`` of its IOD."""
    file_suffix: str
    modality: str
    segment: int
    part: int
    start: dt.datetime
    channels: tuple[str, ...]


class RecordPlan(NamedTuple):
    """Every object a record (or one of its segments) becomes, and what was left out."""

    objects: tuple[PlannedObject, ...]
    left_out: tuple[LeftOutSignal, ...]


@lru_cache(maxsize=256)
def check_attribute_layout(keywords: tuple[str, ...]) -> None:
    """Raise unless the keywords are text attributes in strictly increasing tag order, all
    before the sequences: what the fast encoder assumes instead of sorting. Cached: one
    check per layout of attributes (MIMIC has a handful)."""
    previous = 0
    for keyword in keywords:
        tag = tag_for_keyword(keyword)
        if tag is None:
            raise ValueError(f"{keyword} is not a DICOM attribute")
        vr = dictionary_VR(tag)
        if vr not in TEXT_VRS:
            raise ValueError(f"{keyword} has VR {vr}, which the fast encoder does not write")
        if tag <= previous:
            raise ValueError(f"{keyword} is out of tag order")
        if tag >= FIRST_SEQUENCE_TAG:
            raise ValueError(f"{keyword} comes after the sequences the encoders append")
        previous = tag


def code_item(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def file_meta(sop_class_uid: str, sop_uid: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    return meta


def group_item(layout: GroupLayout, samples: np.ndarray) -> Dataset:
    item = Dataset()
    item.WaveformOriginality = "ORIGINAL"
    item.NumberOfWaveformChannels = layout.n_channels
    item.NumberOfWaveformSamples = layout.n_samples
    item.SamplingFrequency = layout.sampling_frequency
    item.MultiplexGroupLabel = layout.label
    item.ChannelDefinitionSequence = DicomSequence(
        [channel_item(channel) for channel in layout.channels]
    )
    item.WaveformBitsAllocated = layout.bits_allocated
    item.WaveformSampleInterpretation = layout.interpretation
    if layout.padding_value is not None:
        item.WaveformPaddingValue = layout.padding_value
    item.WaveformData = samples.astype(layout.dtype, copy=False).tobytes()
    return item


def channel_item(channel: ChannelLayout) -> Dataset:
    item = Dataset()
    item.ChannelLabel = channel.label
    item.ChannelSourceSequence = DicomSequence(
        [code_item(channel.source.value, channel.source.scheme, channel.source.meaning)]
    )
    item.ChannelSensitivity = channel.sensitivity
    item.ChannelSensitivityUnitsSequence = DicomSequence([code_item(*channel.units)])
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


REFERENCED_CHANNELS = [1, 0]
"""Multiplex group 1, channel 0 = every channel of the group (PS3.3 C.10.10.1.1)."""


def annotation_item(annotation: AnnotationItem) -> Dataset:
    item = Dataset()
    item.ReferencedWaveformChannels = REFERENCED_CHANNELS
    if annotation.code is not None:
        item.ConceptNameCodeSequence = DicomSequence([code_item(*annotation.concept)])
        item.ConceptCodeSequence = DicomSequence([code_item(*annotation.code)])
    elif annotation.concept is not None:
        item.ConceptNameCodeSequence = DicomSequence([code_item(*annotation.concept)])
        item.NumericValue = annotation.numeric_value
        item.MeasurementUnitsCodeSequence = DicomSequence([code_item(*annotation.units)])
    else:
        item.UnformattedTextValue = annotation.text
    return item
