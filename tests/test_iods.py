"""Each IOD's own constraints (PS3.3 A.34), one table-driven test per IOD: the registry says
what the standard says, the builder keeps to it, and an object that would break it goes to
the next IOD, is split, or is left out with its reason."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pydicom
import pytest
from pydicom.filebase import DicomBytesIO
from waveform_checks import assert_meets_own_iod

from wfdb2dicom.builder import ConversionOptions, plan_record
from wfdb2dicom.encoder import encode_plan
from wfdb2dicom.iods import (
    AMBULATORY_ECG,
    ARTERIAL_PULSE,
    GENERAL_32BIT_ECG,
    GENERAL_ECG,
    HEMODYNAMIC,
    IODS,
    MULTICHANNEL_RESPIRATORY,
    RESPIRATORY,
    TWELVE_LEAD_ECG,
    GroupShape,
    choose_iod,
)
from wfdb2dicom.record import Channel, EcgRecord, MultiplexGroup
from wfdb2dicom.signal_classes import SignalClass

# name, SOP class, modality, max groups, max channels per group, max samples,
# frequency range (Hz), sample interpretations, channel-source CID: PS3.3 A.34.3-A.34.16.
STANDARD = {
    TWELVE_LEAD_ECG: ("1.2.840.10008.5.1.4.1.1.9.1.1", "ECG", 5, 13, 16384, (200, 1000),
                      ("SS",), 3001),
    GENERAL_ECG: ("1.2.840.10008.5.1.4.1.1.9.1.2", "ECG", 4, 24, None, (200, 1000), ("SS",),
                  3001),
    AMBULATORY_ECG: ("1.2.840.10008.5.1.4.1.1.9.1.3", "ECG", 1, 12, None, (50, 1000),
                     ("SB", "SS"), 3001),
    GENERAL_32BIT_ECG: ("1.2.840.10008.5.1.4.1.1.9.1.4", "ECG", 4, 24, None, (None, None),
                        ("SL",), 3001),
    HEMODYNAMIC: ("1.2.840.10008.5.1.4.1.1.9.2.1", "HD", 4, 8, None, (None, 400), ("SS",),
                  3003),
    ARTERIAL_PULSE: ("1.2.840.10008.5.1.4.1.1.9.5.1", "HD", 1, 1, None, (None, 600),
                     ("SB", "SS"), 3004),
    RESPIRATORY: ("1.2.840.10008.5.1.4.1.1.9.6.1", "RESP", 1, 1, None, (None, 100),
                  ("SB", "SS"), 3005),
    MULTICHANNEL_RESPIRATORY: ("1.2.840.10008.5.1.4.1.1.9.6.2", "RESP", None, None, None,
                               (None, None), ("SS", "SL"), 3005),
}

LABELS = {SignalClass.ECG: ("II", "mV"), SignalClass.PRESSURE: ("ABP", "mmHg"),
          SignalClass.PULSE: ("PLETH", "NU"), SignalClass.RESPIRATION: ("RESP", "Ohm")}


def record_of(signal_class: SignalClass, groups: list[tuple[float, int, int]],
              wide: bool = False) -> EcgRecord:
    """A record of ``signal_class`` signals: (fs, channels, samples) per group."""
    label, units = LABELS[signal_class]
    built = []
    for index, (fs, n_channels, n_samples) in enumerate(groups):
        channels = tuple(Channel(f"{label}{index}{c}" if signal_class is not SignalClass.ECG
                                 else ("I", "II", "III", "V1", "V2", "V3", "V4", "V5", "V6",
                                       "aVR", "aVL", "aVF", "V")[c % 13],
                                 units, 100.0, 0, 0, "24" if wide else "16")
                         for c in range(n_channels))
        dtype = "<i4" if wide else "<i2"
        samples = np.arange(n_samples * n_channels, dtype=dtype).reshape(n_samples, n_channels)
        if wide:
            samples = samples * 300
        bits = tuple([24 if wide else 16] * n_channels)
        built.append(MultiplexGroup(fs, channels, np.ascontiguousarray(samples), bits))
    return EcgRecord("r1", tuple(built), None, ())


def objects_of(record: EcgRecord, **options) -> list[pydicom.Dataset]:
    plan = plan_record(record, options=ConversionOptions(
        acquisition_datetime=dt.datetime(2000, 1, 1), **options))
    return [pydicom.dcmread(DicomBytesIO(encode_plan(o.plan))) for o in plan.objects]


@pytest.mark.parametrize("iod", IODS, ids=lambda iod: iod.key)
def test_registry_is_the_standard(iod) -> None:
    uid, modality, groups, channels, samples, (low, high), interpretations, cid = STANDARD[iod]
    assert (iod.sop_class_uid, iod.modality, iod.max_groups, iod.max_channels,
            iod.max_samples, iod.min_fs, iod.max_fs, iod.interpretations, iod.source_cid) == (
        uid, modality, groups, channels, samples, low, high, interpretations, cid)
    assert pydicom.uid.UID(uid).name.startswith(iod.name.split()[0].replace("-", "-"))


# For each IOD: a record it takes (the most specific one that does), and records just past
# each of its limits with where they go instead (another IOD, parts, or left out).
CASES = [
    (TWELVE_LEAD_ECG, SignalClass.ECG, [(500, 12, 5000)], {}),
    (TWELVE_LEAD_ECG, SignalClass.ECG, [(200, 13, 16384), (1000, 1, 100)], {}),
    (GENERAL_ECG, SignalClass.ECG, [(500, 12, 16385)], {}),
    (GENERAL_ECG, SignalClass.ECG, [(360, 14, 100)], {}),
    (AMBULATORY_ECG, SignalClass.ECG, [(125, 2, 1000)], {}),
    (AMBULATORY_ECG, SignalClass.ECG, [(50, 12, 1000)], {}),
    (GENERAL_32BIT_ECG, SignalClass.ECG, [(200, 10, 499)], {"wide": True}),
    (GENERAL_32BIT_ECG, SignalClass.ECG, [(2000, 3, 100)], {"wide": True}),
    (HEMODYNAMIC, SignalClass.PRESSURE, [(125, 2, 1000)], {}),
    (HEMODYNAMIC, SignalClass.PRESSURE, [(400, 8, 100), (100, 1, 25)], {}),
    (ARTERIAL_PULSE, SignalClass.PULSE, [(600, 1, 100)], {}),
    (RESPIRATORY, SignalClass.RESPIRATION, [(62.5, 1, 100)], {}),
    (MULTICHANNEL_RESPIRATORY, SignalClass.RESPIRATION, [(125, 1, 100)], {}),
    (MULTICHANNEL_RESPIRATORY, SignalClass.RESPIRATION, [(25, 3, 100), (50, 1, 200)], {}),
    (MULTICHANNEL_RESPIRATORY, SignalClass.RESPIRATION, [(25, 2, 100)], {"wide": True}),
]


@pytest.mark.parametrize("iod, signal_class, groups, extra", CASES,
                         ids=lambda v: getattr(v, "key", None))
def test_each_iod_takes_what_it_allows(iod, signal_class, groups, extra) -> None:
    (ds,) = objects_of(record_of(signal_class, groups, extra.get("wide", False)))
    assert ds.SOPClassUID == iod.sop_class_uid
    assert assert_meets_own_iod(ds) is iod
    assert len(ds.WaveformSequence) == len(groups)
    assert ds.WaveformSequence[0].WaveformSampleInterpretation == (
        "SL" if extra.get("wide") else "SS")


@pytest.mark.parametrize("signal_class, groups, wide, reason", [
    (SignalClass.ECG, [(40, 2, 100)], False, "Ambulatory ECG: sampling frequency 40 Hz < 50"),
    (SignalClass.ECG, [(1200, 2, 100)], False, "General ECG: sampling frequency 1200 Hz > 1000"),
    (SignalClass.PRESSURE, [(500, 1, 100)], False, "Hemodynamic: sampling frequency 500 Hz"),
    (SignalClass.PRESSURE, [(125, 1, 100)], True, "Hemodynamic: samples need SL"),
    (SignalClass.PULSE, [(700, 1, 100)], False, "Arterial Pulse: sampling frequency 700 Hz"),
])
def test_signal_no_iod_accepts_is_left_out(signal_class, groups, wide, reason) -> None:
    plan = plan_record(record_of(signal_class, groups, wide),
                       options=ConversionOptions(acquisition_datetime=dt.datetime(2000, 1, 1)))
    assert not plan.objects
    assert plan.left_out and all(reason in s.reason for s in plan.left_out), plan.left_out


def test_arterial_pulse_holds_one_channel() -> None:
    """A second pleth: its own reason, the first still converts."""
    plan = plan_record(record_of(SignalClass.PULSE, [(125, 2, 100)]),
                       options=ConversionOptions(acquisition_datetime=dt.datetime(2000, 1, 1)))
    assert [o.iod_key for o in plan.objects] == ["pulse"]
    assert [(s.label, s.reason) for s in plan.left_out] == [
        ("PLETH01", "Arterial Pulse: 2 channels > 1")]


def test_hemodynamic_holds_eight_channels_a_group() -> None:
    plan = plan_record(record_of(SignalClass.PRESSURE, [(125, 9, 100)]),
                       options=ConversionOptions(acquisition_datetime=dt.datetime(2000, 1, 1)))
    assert [len(o.channels) for o in plan.objects] == [8]
    assert [s.label for s in plan.left_out] == ["ABP08"]


def test_choose_iod_most_specific_first() -> None:
    shapes = [GroupShape(500.0, 12, 5000)]
    assert choose_iod(SignalClass.ECG, shapes, "SS") == (TWELVE_LEAD_ECG, "")
    iod, reason = choose_iod(SignalClass.NUMERIC, shapes, "SS")
    assert iod is None and reason == "no DICOM waveform IOD for numeric signals"
