"""The signal-class table: the name decides first, the units second; wfdb-python's own
classes agree with ours; overrides from the command line."""

from __future__ import annotations

import pytest
from wfdb.io.record import SIG_UNITS, SIGNAL_CLASSES

from wfdb2dicom.errors import ConversionError
from wfdb2dicom.signal_classes import (
    SOURCE_CIDS,
    SignalClass,
    channel_source,
    cid_codes,
    classify,
    parse_override,
    units_code,
)

C = SignalClass


@pytest.mark.parametrize("label, units, expected", [
    ("II", "mV", C.ECG), ("aVF", "mV", C.ECG), ("MLII", "mV", C.ECG), ("V5", "mV", C.ECG),
    ("ECG 1", "mV", C.ECG), ("col 0", "mV", C.ECG), ("squarewave", "uV", C.ECG),  # unknown, V
    ("UC", "mV", C.UTERINE),  # no units in the header: WFDB's mV; the name says otherwise
    ("FHR", "bpm", C.FETAL_HEART_RATE),
    ("ABP", "mmHg", C.PRESSURE), ("ART1", "mmHg", C.PRESSURE), ("CVP2", "mmHg", C.PRESSURE),
    ("PAP", "mmHg", C.PRESSURE), ("ICP", "mmHg", C.PRESSURE),
    ("PLETH", "NU", C.PULSE), ("PLETH", "mV", C.PULSE), ("Pleth", "NU", C.PULSE),
    ("RESP", "Ohm", C.RESPIRATION), ("Resp", "NU", C.RESPIRATION), ("CO2", "mmHg", C.RESPIRATION),
    ("RESP", "pm", C.NUMERIC),  # a rate, in the numerics records
    ("HR", "bpm", C.NUMERIC), ("PULSE", "bpm", C.NUMERIC), ("NBPSys", "mmHg", C.NUMERIC),
    ("SpO2", "%", C.SPO2), ("Temp", "degC", C.TEMPERATURE),
    ("EEG Fpz-Cz", "uV", C.EEG), ("EMG submental", "uV", C.EMG), ("EOG horizontal", "uV", C.EOG),
    ("EDF Annotations", "mV", C.ANNOTATION),
    ("mystery", "°", C.OTHER), ("mystery", "NU", C.OTHER),  # unknown, not a voltage: not ECG
])
def test_name_first_units_second(label: str, units: str, expected: SignalClass) -> None:
    assert classify(label, units) is expected


# wfdb-python's SIGNAL_CLASSES index -> ours.
WFDB_CLASSES = {"bp": C.PRESSURE, "co2": C.RESPIRATION, "ecg": C.ECG, "eeg": C.EEG,
                "emg": C.EMG, "eog": C.EOG, "hr": C.NUMERIC, "o2": C.SPO2, "pleth": C.PULSE,
                "resp": C.RESPIRATION, "temp": C.TEMPERATURE}


def test_wfdb_signal_classes_agree() -> None:
    checked = 0
    for wfdb_class, row in SIGNAL_CLASSES.iterrows():
        if wfdb_class not in WFDB_CLASSES:
            continue  # co (carbon monoxide), mmg, scg, status, st, unknown: not waveforms
        for name in row["signal_names"]:
            units = SIG_UNITS.get(name, "mV")
            assert classify(name, units) is WFDB_CLASSES[wfdb_class], (name, units)
            checked += 1
    assert checked >= 15


def test_override() -> None:
    override = parse_override("UC=ecg")
    assert override == ("UC", C.ECG)
    assert classify("UC", "mV", (override,)) is C.ECG
    assert classify("RESP", "Ohm", (("RESP", C.OTHER),)) is C.OTHER
    with pytest.raises(ConversionError, match="unknown class 'lung'"):
        parse_override("RESP=lung")
    with pytest.raises(ConversionError, match="expected NAME=CLASS"):
        parse_override("RESP")


@pytest.mark.parametrize("signal_class, label, code", [
    (C.PRESSURE, "ABP", "128446002"), (C.PRESSURE, "ART", "128446002"),
    (C.PRESSURE, "PAP", "128443005"), (C.PRESSURE, "CVP", "128445003"),
    (C.PRESSURE, "ICP", "128433007"), (C.PULSE, "PLETH", "109116"),
    (C.RESPIRATION, "RESP", "109117"), (C.RESPIRATION, "Airflow", "130421"),
    (C.RESPIRATION, "CO2", "130443"), (C.ECG, "II", "2:2"), (C.ECG, "noise", "2:0"),
])
def test_channel_sources_from_the_cids(signal_class, label, code) -> None:
    source = channel_source(label, signal_class)
    assert source.value == code
    if signal_class is not C.ECG:
        assert cid_codes()[SOURCE_CIDS[signal_class]][(source.scheme, code)] == source.meaning


def test_units_in_ucum() -> None:
    assert units_code("mmHg") == ("mm[Hg]", "UCUM", "mmHg")
    assert units_code("NU") == ("{arb'U}", "UCUM", "arbitrary unit")
    assert units_code("Ohm")[0] == "Ohm"
    assert units_code("uV")[0] == "uV"
