"""The immutable ECG record that flows from the reader to the builder."""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

import numpy as np


class Channel(NamedTuple):
    """One signal of a WFDB record, with what DICOM needs to describe it.

    A NamedTuple: layouts are cached by tuples of channels, so hashing must be cheap.
    """

    label: str
    """The header's signal description (the lead name, e.g. ``aVF``)."""
    units: str
    """Physical units of the signal (``mV``, ``uV``...)."""
    gain: float
    """ADC units per physical unit."""
    baseline: int
    """Digital value that corresponds to a physical value of 0."""
    adc_resolution: int
    """Bits of the ADC, 0 when the header does not say."""
    fmt: str
    """WFDB storage format (``16``, ``212``...)."""


class MultiplexGroup(NamedTuple):
    """Channels sampled at one rate: one DICOM multiplex group."""

    sampling_frequency: float
    channels: tuple[Channel, ...]
    samples: np.ndarray
    """Digital samples, shape (n_samples, n_channels), C-contiguous, little-endian int16
    (``<i2``) or, when any channel needs more than 16 bits, int32 (``<i4``)."""
    bits_stored: tuple[int, ...] | None = None
    """Per channel, the bits its stored samples need, never less than the header's ADC
    resolution says nor less than the samples' range needs (Waveform Bits Stored). None:
    the reader did not compute it and the format's significant bits apply."""

    @property
    def n_samples(self) -> int:
        return int(self.samples.shape[0])


class EcgRecord(NamedTuple):
    """A WFDB record as read from disk, ready to be mapped to DICOM.

    This and :class:`MultiplexGroup` are NamedTuples rather than frozen dataclasses because
    the batch makes one per record and a NamedTuple costs a fraction to build.
    """

    name: str
    groups: tuple[MultiplexGroup, ...]
    base_datetime: dt.datetime | None
    """Start of the recording, only when the header gives both date and time."""
    comments: tuple[str, ...]


class RecordSegment(NamedTuple):
    """One segment of a multi-segment record, read as a record of its own.

    A single-segment record is one segment with ``start_frame`` 0. Gaps (``~``) and layout
    segments (no samples) are not segments here. Objects made from a segment start at the
    record's start plus ``start_frame / frame_rate`` seconds.
    """

    index: int
    """Position of the segment in the master header (1 = the first listed, layout included),
    so names and UIDs stay the same whichever segments are present."""
    start_frame: int
    """Frames (at the master record's frame rate) from the record's start to this segment's."""
    frame_rate: float
    """The master record's frame rate (frames per second)."""
    record: EcgRecord
