"""What a WFDB signal is (ECG lead, blood pressure, pleth, respiration, ...): one table.

A WFDB header says what a signal is only by its description (``ABP``, ``PLETH``, ``II``)
and its units. The names follow PhysioNet's conventions, which wfdb-python writes down in
``wfdb/io/record.py`` (``SIGNAL_CLASSES``: bp = abp/pap/cvp, pleth, resp, co2, o2/spo2,
temp, eeg, emg, eog, hr; ``SIG_UNITS``: art/ibp/p/pawp in mmHg, uc, fhr, nbp, pulse in bpm,
...); this table extends them with the names MIMIC and the Challenge databases use.

The name decides first, the units second: ``UC`` without units (WFDB then means mV) is a
uterine contraction, not an ECG lead, and ``PLETH`` in mV is still a pleth. A name the
table does not know is an (unspecified) ECG lead when its units are a voltage, as before;
in any other unit (``°``, ``NU``, ``bpm``) it is something else, never ECG. A user can say
otherwise per signal (``--signal-class NAME=CLASS``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import Enum
from functools import lru_cache
from typing import TypeVar

from .errors import ConversionError
from .leads import LeadCode, code_for_label, is_known_lead, lead_number


class SignalClass(str, Enum):
    """Kinds of signal; the value is what ``--signal-class`` and the manifest say."""

    ECG = "ecg"
    PRESSURE = "pressure"
    """Invasive blood (or other) pressure waveform: ABP, ART, PAP, CVP, ICP..."""
    PULSE = "pulse"
    """Pulse oximetry plethysmogram (PLETH)."""
    RESPIRATION = "resp"
    """Respiration waveform (impedance, airflow, effort), and CO2 waveforms."""
    SPO2 = "spo2"
    TEMPERATURE = "temp"
    EEG = "eeg"
    EMG = "emg"
    EOG = "eog"
    UTERINE = "uc"
    """Uterine contraction (tocography)."""
    FETAL_HEART_RATE = "fhr"
    NUMERIC = "numeric"
    """Trends sampled from a monitor's numbers: HR, PULSE, NBP, respiration rate..."""
    ANNOTATION = "annotation"
    """EDF+'s ``EDF Annotations`` channel: text, not a waveform."""
    OTHER = "other"


# Normalised signal names (lower case, no spaces, dashes, underscores or dots; a trailing
# number may follow: ART1, CVP2) -> class. ECG lead names come from leads.py first.
_NAMES: dict[str, SignalClass] = {
    **dict.fromkeys(("ecg", "ekg", "fecg", "mecg", "abdomen", "direct"), SignalClass.ECG),
    **dict.fromkeys(
        ("abp", "art", "ao", "aop", "bp", "ibp", "p", "pap", "pa", "cvp", "icp", "lap", "rap",
         "uap", "pawp", "pcwp", "fap", "rvp", "lvp", "pressure"),
        SignalClass.PRESSURE),
    **dict.fromkeys(("pleth", "ppg", "pulseox", "plethysmogram"), SignalClass.PULSE),
    **dict.fromkeys(
        ("resp", "respiration", "airflow", "flow", "thorax", "thor", "abdo", "abd", "chest",
         "effort", "co2", "pco2", "etco2", "nasal", "oronasal", "impedance"),
        SignalClass.RESPIRATION),
    **dict.fromkeys(("spo2", "sao2", "so2", "o2", "sat"), SignalClass.SPO2),
    **dict.fromkeys(("temp", "tblood", "tcore", "tskin"), SignalClass.TEMPERATURE),
    "eeg": SignalClass.EEG,
    "emg": SignalClass.EMG,
    "eog": SignalClass.EOG,
    **dict.fromkeys(("uc", "toco", "ua"), SignalClass.UTERINE),
    "fhr": SignalClass.FETAL_HEART_RATE,
    **dict.fromkeys(
        ("hr", "pr", "rr", "nbp", "nbpsys", "nbpdias", "nbpmean", "abpsys", "abpdias",
         "abpmean", "papsys", "papdias", "papmean", "artsys", "artdias", "artmean",
         "respirationrate", "rrate", "brpm", "st", "stii", "stv", "stiii", "sti", "cvpmean",
         "icpmean", "cpp"),
        SignalClass.NUMERIC),
    "edfannotations": SignalClass.ANNOTATION,
}
# Prefixes that name a class whatever follows (``EEG Fpz-Cz``, ``EMG chin``, ``NBP Sys``).
_PREFIXES: tuple[tuple[str, SignalClass], ...] = (
    ("eeg", SignalClass.EEG), ("emg", SignalClass.EMG), ("eog", SignalClass.EOG),
    ("nbp", SignalClass.NUMERIC), ("resp", SignalClass.RESPIRATION),
    ("pleth", SignalClass.PULSE), ("abp", SignalClass.PRESSURE), ("art", SignalClass.PRESSURE),
    ("pap", SignalClass.PRESSURE), ("cvp", SignalClass.PRESSURE), ("icp", SignalClass.PRESSURE),
)

VOLTAGE_UNITS: dict[str, tuple[str, str, str]] = {
    "mv": ("mV", "UCUM", "millivolt"),
    "uv": ("uV", "UCUM", "microvolt"),
    "µv": ("uV", "UCUM", "microvolt"),
    "μv": ("uV", "UCUM", "microvolt"),
    "v": ("V", "UCUM", "volt"),
    "nv": ("nV", "UCUM", "nanovolt"),
}
"""WFDB unit strings (lower case) of a voltage -> UCUM code and meaning."""

OTHER_UNITS: dict[str, tuple[str, str, str]] = {
    "mmhg": ("mm[Hg]", "UCUM", "mmHg"),
    "cmh2o": ("cm[H2O]", "UCUM", "cmH2O"),
    "kpa": ("kPa", "UCUM", "kilopascal"),
    "%": ("%", "UCUM", "%"),
    "ohm": ("Ohm", "UCUM", "ohm"),
    "ohms": ("Ohm", "UCUM", "ohm"),
    "kohm": ("kOhm", "UCUM", "kiloohm"),
    "l": ("L", "UCUM", "liter"),
    "l/s": ("L/s", "UCUM", "liter per second"),
    "l/min": ("L/min", "UCUM", "liter per minute"),
    "lpm": ("L/min", "UCUM", "liter per minute"),
    "ml": ("mL", "UCUM", "milliliter"),
    "degc": ("Cel", "UCUM", "degree Celsius"),
    "°c": ("Cel", "UCUM", "degree Celsius"),
    "bpm": ("/min", "UCUM", "per minute"),
    "pm": ("/min", "UCUM", "per minute"),
    "/min": ("/min", "UCUM", "per minute"),
}
"""Units of the signals other than voltages -> UCUM code and meaning."""

NO_UNITS = ("{arb'U}", "UCUM", "arbitrary unit")
"""For ``NU`` (no units), ``nd``, an empty or unknown unit string: UCUM's arbitrary unit."""

_RATE_UNITS = frozenset(("bpm", "pm", "/min", "1/min", "beats/min", "breaths/min"))
"""A waveform name in these units is a monitor's rate numeric (``RESP`` in ``pm``)."""
_WAVEFORM_CLASSES = frozenset((SignalClass.ECG, SignalClass.PRESSURE, SignalClass.PULSE,
                               SignalClass.RESPIRATION))


_Entry = TypeVar("_Entry")


def normalise_name(label: str) -> str:
    """Fold case and separators (``ART 1`` -> ``art1``)."""
    return re.sub(r"[\s_.,\-]+", "", label.strip().lower())


def _lookup(table: Mapping[str, _Entry], key: str) -> _Entry | None:
    """The entry of ``key``, else of ``key`` without its trailing number (ART1, CVP2)."""
    found = table.get(key)
    if found is None:
        found = table.get(key.rstrip("0123456789"))
    return found


def units_code(units: str) -> tuple[str, str, str]:
    """UCUM (code, scheme, meaning) for a WFDB unit string."""
    key = units.strip().lower()
    return VOLTAGE_UNITS.get(key) or OTHER_UNITS.get(key) or NO_UNITS


@lru_cache(maxsize=4096)
def classify(label: str, units: str,
             overrides: tuple[tuple[str, SignalClass], ...] = ()) -> SignalClass:
    """The class of a signal from its header description and units (see module doc)."""
    for name, chosen in overrides:
        if name == label:
            return chosen
    unit_key = units.strip().lower()
    if is_known_lead(label) or (lead_number(label) == 0):
        found: SignalClass | None = SignalClass.ECG
    else:
        key = normalise_name(label)
        found = _lookup(_NAMES, key)
        if found is None:
            found = next((cls for prefix, cls in _PREFIXES if key.startswith(prefix)), None)
    if found in _WAVEFORM_CLASSES and unit_key in _RATE_UNITS:
        return SignalClass.NUMERIC
    if found is not None:
        return found
    if unit_key in VOLTAGE_UNITS:
        return SignalClass.ECG
    if unit_key in _RATE_UNITS:
        return SignalClass.NUMERIC
    return SignalClass.OTHER


def parse_override(text: str) -> tuple[str, SignalClass]:
    """``NAME=CLASS`` from the command line (the name as the header writes it)."""
    name, sep, value = text.rpartition("=")
    if not sep or not name:
        raise ConversionError(f"--signal-class {text!r}: expected NAME=CLASS")
    try:
        return name, SignalClass(value.strip().lower())
    except ValueError:
        choices = ", ".join(c.value for c in SignalClass)
        raise ConversionError(
            f"--signal-class {text!r}: unknown class {value!r} (one of {choices})") from None


# Channel Source codes of the classes that have a waveform IOD, by normalised name; the
# first entry of each class is its default. (scheme, code value) from the CID of the IOD:
# 3003 Hemodynamic Waveform Sources, 3004 Arterial Pulse Waveform, 3005 Respiration
# Waveform; meanings are looked up in pydicom's copy of the standard.
_SOURCES: dict[SignalClass, dict[str, tuple[str, str]]] = {
    SignalClass.PRESSURE: {
        "": ("SCT", "128433007"),  # Hemodynamic pressure waveform (ICP and the unknown)
        **dict.fromkeys(("abp", "art", "ibp", "bp", "p", "uap", "ap"), ("SCT", "128446002")),
        **dict.fromkeys(("ao", "aop"), ("SCT", "128444004")),
        **dict.fromkeys(("pap", "pa"), ("SCT", "128443005")),
        "cvp": ("SCT", "128445003"),
        "lap": ("SCT", "128441007"),
        "rap": ("SCT", "128440008"),
        "rvp": ("SCT", "128439006"),
        "lvp": ("SCT", "128438003"),
        "pawp": ("SCT", "128449009"),
        "pcwp": ("SCT", "128448001"),
        "fap": ("SCT", "128442000"),
    },
    SignalClass.PULSE: {"": ("DCM", "109116")},  # Arterial Pulse Waveform
    SignalClass.RESPIRATION: {
        "": ("DCM", "109117"),  # Respiration Waveform
        **dict.fromkeys(("airflow", "flow", "nasal", "oronasal"), ("DCM", "130421")),
        **dict.fromkeys(("thorax", "thor", "chest"), ("DCM", "130431")),
        **dict.fromkeys(("abdo", "abd"), ("DCM", "130432")),
        "effort": ("DCM", "130433"),
        **dict.fromkeys(("co2", "pco2", "etco2"), ("DCM", "130443")),
    },
}
SOURCE_CIDS: dict[SignalClass, int] = {
    SignalClass.ECG: 3001, SignalClass.PRESSURE: 3003, SignalClass.PULSE: 3004,
    SignalClass.RESPIRATION: 3005,
}
"""The context group (PS3.16) a class's Channel Source code comes from."""


@lru_cache(maxsize=1)
def cid_codes() -> dict[int, dict[tuple[str, str], str]]:
    """Per CID: (scheme, code value) -> code meaning, from pydicom's copy of PS3.16."""
    from pydicom.sr._cid_dict import cid_concepts
    from pydicom.sr._concepts_dict import concepts

    codes: dict[int, dict[tuple[str, str], str]] = {}
    for cid in SOURCE_CIDS.values():
        found = codes[cid] = {}
        for scheme, names in cid_concepts[cid].items():
            for name in names:
                for value, (meaning, _cids) in concepts[scheme][name].items():
                    found[(scheme, value.replace(" ", ""))] = meaning
    return codes


@lru_cache(maxsize=4096)
def channel_source(label: str, signal_class: SignalClass) -> LeadCode:
    """The Channel Source code of a signal of ``signal_class`` (which has a waveform IOD)."""
    if signal_class is SignalClass.ECG:
        return code_for_label(label)
    table = _SOURCES[signal_class]
    key = normalise_name(label)
    scheme, value = _lookup(table, key) or next(
        (code for name, code in table.items() if name and key.startswith(name)), table[""])
    return LeadCode(value, scheme, cid_codes()[SOURCE_CIDS[signal_class]][(scheme, value)])
