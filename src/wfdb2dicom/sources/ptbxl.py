"""PTB-XL's ``ptbxl_database.csv``: one row per ECG, keyed by ecg_id.

Wagner P. et al. (2020), PTB-XL, a large publicly available electrocardiography dataset,
PhysioNet, https://doi.org/10.13026/x4td-x982. The columns read and what they mean:

- ``ecg_id``: the study key (Study Instance UID, Study ID);
- ``patient_id``: float-styled (``15709.0``), written as the integer;
- ``age`` in years; the de-identification puts ages over 89 at 300 (mapped to ``090Y``);
- ``sex``: 0 = male, 1 = female; ``height`` (cm), ``weight`` (kg), mostly empty;
- ``device``: the cart's model (``CS-12   E``, ``AT-6 C 5.5``);
- ``recording_date``: ``1984-11-09 09:17:34`` (the headers carry no date);
- ``report``: the report text (German, English or Swedish);
- ``scp_codes``: a Python dict literal of SCP-ECG statement codes and likelihoods in %,
  ``{'NORM': 100.0, 'SR': 0.0}``; a likelihood of 0 means "not given" (PTB-XL's rhythm and
  form statements carry none), so it is left out of the statement.
"""

from __future__ import annotations

import ast
import datetime as dt
import re
from functools import lru_cache

from ..errors import MetadataError
from ..metadata import StudyMetadata, _number, normalise_study_id
from . import MetadataSource

COLUMNS = ("ecg_id", "patient_id", "age", "sex", "height", "weight", "device",
           "recording_date", "report", "scp_codes")
"""The columns read, in the order of a row's values."""

_RECORD_NAME_RE = re.compile(r"^0*(\d+)_(?:hr|lr)$")
"""``00001_hr`` / ``00001_lr``: PTB-XL's record names, the ecg_id zero-padded."""

SEX_CODES = {"0": "M", "1": "F"}
"""PTB-XL's sex column: 0 male, 1 female."""

MAX_SCP_CODES_CHARS = 4096
"""An scp_codes cell longer than this is no dict of statement codes (PTB-XL's longest is
some 150 characters); refused before it is parsed."""


def from_values(values: tuple) -> StudyMetadata:
    """A row of ptbxl_database.csv (cleaned texts in :data:`COLUMNS` order) as metadata."""
    ecg_id, patient, age, sex, height, weight, device, recorded, report, scp_codes = values
    moment = None
    if recorded:
        try:
            moment = dt.datetime.fromisoformat(recorded)
        except ValueError:
            raise MetadataError(
                f"recording_date {recorded!r} is not a date and time") from None
    years = _number(age)
    size_cm, weight_kg = _number(height), _number(weight)
    statements = ((report,) if report else ()) + _scp_statements(scp_codes)
    return StudyMetadata(
        study_id=normalise_study_id(ecg_id or ""),
        subject_id=normalise_study_id(patient) if patient else None,
        ecg_time=moment,
        reports=statements,
        patient_age=int(years) if years is not None and years >= 0 else None,
        patient_sex=SEX_CODES.get(normalise_study_id(sex)) if sex else None,
        patient_size_m=size_cm / 100 if size_cm and size_cm > 0 else None,
        patient_weight_kg=weight_kg if weight_kg and weight_kg > 0 else None,
        device=device,
    )


@lru_cache(maxsize=8192)
def _scp_statements(text: str | None) -> tuple[str, ...]:
    """``{'NORM': 100.0, 'SR': 0.0}`` -> ``('NORM 100%', 'SR')``, in the cell's order.

    ``ast.literal_eval`` reads literals only (no code runs), and only a dict of code ->
    number is accepted. DICOM has no coding scheme for SCP-ECG's statement acronyms, so
    each is a text statement.
    """
    if not text:
        return ()
    if len(text) > MAX_SCP_CODES_CHARS:
        raise MetadataError(f"scp_codes is {len(text)} characters, not a dict of codes")
    try:
        codes = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        codes = None
    if not isinstance(codes, dict) or not all(
            isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)
            for k, v in codes.items()):
        raise MetadataError(f"scp_codes {text[:60]!r} is not a dict of statement codes and "
                            "likelihoods")
    return tuple(f"{code.strip()} {likelihood:g}%" if likelihood else code.strip()
                 for code, likelihood in codes.items() if code.strip())


def key_from_record_name(name: str) -> str:
    """``00001_hr`` -> ``1``: the ecg_id of a PTB-XL record (other names are kept)."""
    match = _RECORD_NAME_RE.match(name)
    return match.group(1) if match else name


PTB_XL = MetadataSource(
    name="ptbxl",
    title="PTB-XL ptbxl_database.csv",
    key_column="ecg_id",
    columns=COLUMNS,
    signature=frozenset({"ecg_id", "scp_codes"}),
    from_values=from_values,
    key_from_record_name=key_from_record_name,
)
