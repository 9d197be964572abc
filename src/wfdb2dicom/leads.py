"""ECG lead names <-> DICOM CID 3001 codes.

The code meanings come from pydicom's copy of the standard's context groups, so they match
what dciodvfy expects. MDC codes ``2:n`` and the older SCP-ECG codes ``5.6.3-9-n`` number the
leads the same way (SCP-ECG's lead table is where MDC took them from), which lets a reader
accept both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

MDC = "MDC"
SCPECG = "SCPECG"
UNSPECIFIED_LEAD = "2:0"


@dataclass(frozen=True)
class LeadCode:
    """A coded lead: Code Value, Coding Scheme Designator, Code Meaning."""

    value: str
    scheme: str
    meaning: str


# Lead names as they appear in WFDB headers (lower case, spaces, dashes and underscores
# removed) -> MDC lead number. The number is also the SCP-ECG lead number.
_LEAD_NUMBERS: dict[str, int] = {
    "i": 1, "ii": 2, "iii": 61, "avr": 62, "avl": 63, "avf": 64, "-avr": 65,
    "v1": 3, "v2": 4, "v3": 5, "v4": 6, "v5": 7, "v6": 8, "v7": 9, "v8": 66, "v9": 67,
    "v2r": 10, "v3r": 11, "v4r": 12, "v5r": 13, "v6r": 14, "v7r": 15, "v8r": 68, "v9r": 69,
    "x": 16, "y": 17, "z": 18, "vx": 16, "vy": 17, "vz": 18,
    "cc5": 19, "cm5": 20, "la": 21, "ra": 22, "ll": 23,
    "ml": 126, "mli": 126, "mlii": 126, "mliii": 126,
    "mcl": 91, "mcl1": 92, "mcl2": 93, "mcl3": 94, "mcl4": 95, "mcl5": 96, "mcl6": 97,
    "v": 86, "chest": 86, "ecg": 0,
}
_ALIASES = {"leadi": "i", "leadii": "ii", "leadiii": "iii", "d1": "i", "d2": "ii", "d3": "iii"}

# Preferred label when writing a lead back (to WFDB), by lead number.
_LABELS: dict[int, str] = {
    1: "I", 2: "II", 61: "III", 62: "aVR", 63: "aVL", 64: "aVF", 65: "-aVR",
    3: "V1", 4: "V2", 5: "V3", 6: "V4", 7: "V5", 8: "V6", 9: "V7", 66: "V8", 67: "V9",
    10: "V2R", 11: "V3R", 12: "V4R", 13: "V5R", 14: "V6R", 15: "V7R", 68: "V8R", 69: "V9R",
    16: "X", 17: "Y", 18: "Z", 19: "CC5", 20: "CM5", 21: "LA", 22: "RA", 23: "LL",
    126: "ML", 86: "V",
}


def normalise_lead_name(label: str) -> str:
    """Fold case and separators so ``aVR``, ``AVR`` and ``a VR`` compare equal."""
    key = re.sub(r"[\s_]+", "", label.strip().lower())
    return _ALIASES.get(key, key)


@cache
def _cid3001_meanings() -> dict[str, str]:
    from pydicom.sr._cid_dict import cid_concepts
    from pydicom.sr._concepts_dict import concepts

    meanings = {}
    for name in cid_concepts[3001][MDC]:
        for value, (meaning, _cids) in concepts[MDC][name].items():
            meanings[value.replace(" ", "")] = meaning
    return meanings


def lead_number(label: str) -> int | None:
    """MDC/SCP-ECG lead number of a header label, or None for a label we do not know."""
    return _LEAD_NUMBERS.get(normalise_lead_name(label))


def is_known_lead(label: str) -> bool:
    number = lead_number(label)
    return number is not None and number != 0


def code_for_label(label: str) -> LeadCode:
    """CID 3001 code for a WFDB signal label; unknown labels are 'Unspecified lead'."""
    number = lead_number(label)
    value = f"2:{number}" if number is not None else UNSPECIFIED_LEAD
    meanings = _cid3001_meanings()
    if value not in meanings:
        value = UNSPECIFIED_LEAD
    return LeadCode(value, MDC, meanings[value])


def label_for_code(value: str, scheme: str) -> str | None:
    """Lead name for a Channel Source code in scheme MDC or SCPECG; None if not a known lead."""
    value = value.strip()
    if scheme == MDC and value.startswith("2:"):
        number_text = value[2:]
    elif scheme == SCPECG and value.startswith("5.6.3-9-"):
        number_text = value[len("5.6.3-9-"):]
    else:
        return None
    try:
        return _LABELS.get(int(number_text))
    except ValueError:
        return None
