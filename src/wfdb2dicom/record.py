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
    """Digital samples, shape (n_samples, n_channels), little-endian int16, C-contiguous."""

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
