"""The DICOM waveform IODs we write, each with its content constraints (PS3.3 A.34).

One registry: the builder picks, for each class of signal, the first IOD of :data:`IODS`
(most specific first) whose constraints the signals meet; tests check every object against
the constraints of its IOD (``tests/test_iods.py``). The constraints, from PS3.3:

=========================== ======== ====== ======== ========== ============ ====== ======
IOD (PS3.3 section)         Modality Groups Channels Samples    Frequency Hz Interp CID
=========================== ======== ====== ======== ========== ============ ====== ======
12-lead ECG (A.34.3)        ECG      1-5    1-13     <= 16384   200-1000     SS     3001
General ECG (A.34.4)        ECG      1-4    1-24     (any)      200-1000     SS     3001
Ambulatory ECG (A.34.5)     ECG      1      1-12     (any)      50-1000      SB, SS 3001
General 32-bit ECG (A.34.x) ECG      1-4    1-24     (any)      (any)        SL     3001
Hemodynamic (A.34.6)        HD       1-4    1-8      (any)      <= 400       SS     3003
Arterial Pulse (A.34.8)     HD       1      1        (any)      <= 600       SB, SS 3004
Respiratory (A.34.9)        RESP     1      1        (any)      <= 100       SB, SS 3005
Multi-channel Resp. (A.34.x)RESP     1-     1-       (any)      (any)        SS, SL 3005
=========================== ======== ====== ======== ========== ============ ====== ======

"(any)" samples: limited only by Waveform Data's 32-bit length, which the builder respects
by splitting long signals into consecutive objects. We write SS (16 bits) unless a channel
needs more, then SL (32 bits): General 32-bit ECG is used only for such ECG; a pressure,
pleth or single respiration signal that needs more than 16 bits has no IOD (left out).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

from .signal_classes import SOURCE_CIDS, SignalClass

MAX_WAVEFORM_DATA_BYTES = 0xFFFFFFFE
"""Waveform Data (OW/OB) has a 32-bit even length: the most bytes one group can hold."""


class GroupShape(NamedTuple):
    """What the constraints look at in one multiplex group."""

    sampling_frequency: float
    n_channels: int
    n_samples: int


@dataclass(frozen=True)
class WaveformIod:
    """One DICOM waveform IOD and its content constraints (PS3.3 A.34)."""

    name: str
    sop_class_uid: str
    modality: str
    signal_class: SignalClass
    """The only class of signal it holds (no pressure in an ECG object, no ECG in an HD)."""
    key: str
    """Short, file-name-safe name of the IOD (``ecg12``, ``hd``, ``pulse``...)."""
    file_suffix: str
    """What a file of several objects ends with: ``ecg``, ``hd``, ``pulse``, ``resp``."""
    max_groups: int | None
    max_channels: int | None
    """Per multiplex group."""
    max_samples: int | None
    """Per channel."""
    min_fs: float | None
    max_fs: float | None
    interpretations: tuple[str, ...]
    """Waveform Sample Interpretation values it allows (of those we write: SS, SL)."""

    @cached_property
    def series_number(self) -> int:
        """Each IOD has its own Series in the record's Study, numbered by its place here
        (12-lead ECG is Series 1, as it always was)."""
        return IODS.index(self) + 1

    @property
    def source_cid(self) -> int:
        """The context group (PS3.16) of its Channel Source codes."""
        return SOURCE_CIDS[self.signal_class]

    def violation(self, groups: Sequence[GroupShape], interpretation: str) -> str | None:
        """The first constraint the groups break, as a short phrase, or None if they fit."""
        if interpretation not in self.interpretations:
            return (f"samples need {interpretation}, it allows "
                    f"{'/'.join(self.interpretations)}")
        if self.max_groups is not None and len(groups) > self.max_groups:
            return f"{len(groups)} sampling rates > {self.max_groups} multiplex group(s)"
        bytes_per_sample = 4 if interpretation == "SL" else 2
        for group in groups:
            fs = group.sampling_frequency
            if self.min_fs is not None and fs < self.min_fs:
                return f"sampling frequency {fs:g} Hz < {self.min_fs:g} Hz"
            if self.max_fs is not None and fs > self.max_fs:
                return f"sampling frequency {fs:g} Hz > {self.max_fs:g} Hz"
            if self.max_channels is not None and group.n_channels > self.max_channels:
                return f"{group.n_channels} channels > {self.max_channels}"
            if self.max_samples is not None and group.n_samples > self.max_samples:
                return f"{group.n_samples} samples per channel > {self.max_samples}"
            if group.n_samples * group.n_channels * bytes_per_sample > MAX_WAVEFORM_DATA_BYTES:
                return "more samples than Waveform Data can hold"
            if group.n_samples == 0:
                return "no samples"
        return None


_ECG, _P, _PULSE, _RESP = (SignalClass.ECG, SignalClass.PRESSURE, SignalClass.PULSE,
                           SignalClass.RESPIRATION)
TWELVE_LEAD_ECG = WaveformIod("12-lead ECG", "1.2.840.10008.5.1.4.1.1.9.1.1", "ECG", _ECG,
                              "ecg12", "ecg", 5, 13, 16384, 200, 1000, ("SS",))
GENERAL_ECG = WaveformIod("General ECG", "1.2.840.10008.5.1.4.1.1.9.1.2", "ECG", _ECG,
                          "ecg", "ecg", 4, 24, None, 200, 1000, ("SS",))
AMBULATORY_ECG = WaveformIod("Ambulatory ECG", "1.2.840.10008.5.1.4.1.1.9.1.3", "ECG", _ECG,
                             "ecgamb", "ecg", 1, 12, None, 50, 1000, ("SB", "SS"))
GENERAL_32BIT_ECG = WaveformIod("General 32-bit ECG", "1.2.840.10008.5.1.4.1.1.9.1.4", "ECG",
                                _ECG, "ecg32", "ecg", 4, 24, None, None, None, ("SL",))
HEMODYNAMIC = WaveformIod("Hemodynamic", "1.2.840.10008.5.1.4.1.1.9.2.1", "HD", _P,
                          "hd", "hd", 4, 8, None, None, 400, ("SS",))
ARTERIAL_PULSE = WaveformIod("Arterial Pulse", "1.2.840.10008.5.1.4.1.1.9.5.1", "HD", _PULSE,
                             "pulse", "pulse", 1, 1, None, None, 600, ("SB", "SS"))
RESPIRATORY = WaveformIod("Respiratory", "1.2.840.10008.5.1.4.1.1.9.6.1", "RESP", _RESP,
                          "resp", "resp", 1, 1, None, None, 100, ("SB", "SS"))
MULTICHANNEL_RESPIRATORY = WaveformIod(
    "Multi-channel Respiratory", "1.2.840.10008.5.1.4.1.1.9.6.2", "RESP", _RESP, "respmulti",
    "resp", None, None, None, None, None, ("SS", "SL"))

IODS: tuple[WaveformIod, ...] = (
    TWELVE_LEAD_ECG, GENERAL_ECG, AMBULATORY_ECG, GENERAL_32BIT_ECG,
    HEMODYNAMIC, ARTERIAL_PULSE, RESPIRATORY, MULTICHANNEL_RESPIRATORY,
)
"""Every IOD we write; within a class, in order of preference (most specific first)."""



def iods_for(signal_class: SignalClass) -> tuple[WaveformIod, ...]:
    return tuple(iod for iod in IODS if iod.signal_class is signal_class)


def by_sop_class(sop_class_uid: str) -> WaveformIod | None:
    return next((iod for iod in IODS if iod.sop_class_uid == sop_class_uid), None)


def choose_iod(signal_class: SignalClass, groups: Sequence[GroupShape],
               interpretation: str) -> tuple[WaveformIod | None, str]:
    """The most specific IOD that accepts the groups, or None with why none does."""
    reasons = []
    for iod in iods_for(signal_class):
        problem = iod.violation(groups, interpretation)
        if problem is None:
            return iod, ""
        reasons.append(f"{iod.name}: {problem}")
    if not reasons:
        return None, f"no DICOM waveform IOD for {signal_class.value} signals"
    return None, "; ".join(reasons)
