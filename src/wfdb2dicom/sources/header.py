"""The header's comments as a metadata source.

- PhysioNet/CinC Challenge 2020-2021 headers: ``#Age: 53``, ``#Sex: Male``,
  ``#Dx: 164889003,59118001`` (SNOMED CT codes), ``#Rx:``, ``#Hx:``, ``#Sx:``. Dx become
  coded statements (scheme SCT) with the concept names of the Challenge's table of scored
  diagnoses (:mod:`.snomed`); Rx, Hx and Sx text statements (``Rx: ...``), unless
  ``Unknown``.
- MIMIC-style and WFDB sample headers: ``<age>: 38 <sex>: M``.

A table's values win over these (:func:`with_header`).
"""

from __future__ import annotations

import re
from functools import lru_cache

from ..metadata import Code, StudyMetadata
from .snomed import sct_code

_SEX_RE = re.compile(r"\bsex>?\s*:\s*(male|female|m|f)\b", re.IGNORECASE)
_AGE_RE = re.compile(r"\bage>?\s*:\s*(\d{1,3})\b", re.IGNORECASE)
_FIELD_RE = re.compile(r"^\s*(Dx|Rx|Hx|Sx)\s*:\s*(.*?)\s*$", re.IGNORECASE)
UNKNOWN = "unknown"
"""What the Challenge writes for an Rx, Hx or Sx it does not know (left out)."""

_MERGED_FIELDS = ("subject_id", "ecg_time", "patient_age", "patient_sex", "patient_size_m",
                  "patient_weight_kg", "device", "coded_statements", "reports")


@lru_cache(maxsize=1024)
def header_metadata(comments: tuple[str, ...]) -> StudyMetadata | None:
    """What the comments say about the study, or None when they say nothing we read.

    Cached by the comments: a corpus repeats few distinct comment blocks per field, and
    MIMIC-IV-ECG's headers have none (one dictionary lookup a record).
    """
    if not comments:
        return None
    sex = age = None
    coded: list[Code] = []
    texts: list[str] = []
    for comment in comments:
        if sex is None and (match := _SEX_RE.search(comment)):
            sex = match.group(1)[0].upper()
        if age is None and (match := _AGE_RE.search(comment)):
            age = int(match.group(1))
        field = _FIELD_RE.match(comment)
        if field is None:
            continue
        name, value = field.group(1).capitalize(), field.group(2)
        if not value or value.lower() == UNKNOWN:
            continue
        if name == "Dx":
            for code in filter(None, (c.strip() for c in value.split(","))):
                if code.isdigit():
                    coded.append(sct_code(code))
                else:
                    texts.append(f"Dx: {code}")
        else:
            texts.append(f"{name}: {value}")
    if sex is None and age is None and not coded and not texts:
        return None
    return StudyMetadata(study_id="", reports=tuple(texts), patient_age=age,
                         patient_sex=sex, coded_statements=tuple(coded))


def with_header(metadata: StudyMetadata | None,
                comments: tuple[str, ...]) -> StudyMetadata | None:
    """``metadata`` completed with what the header's comments say; the table wins.

    Field by field: a value the table gives is kept, one it lacks is taken from the header.
    Without comments (all of MIMIC-IV-ECG) ``metadata`` is returned as it is.
    """
    header = header_metadata(comments) if comments else None
    if header is None:
        return metadata
    if metadata is None:
        return header
    taken = {name: getattr(header, name) for name in _MERGED_FIELDS
             if not getattr(metadata, name) and getattr(header, name)}
    return metadata._replace(**taken) if taken else metadata
