"""SNOMED CT concept names of the PhysioNet/CinC Challenge 2020-2021's scored diagnoses.

``dx_mapping_scored.csv`` beside this module holds the Dx, SNOMEDCTCode and Abbreviation
columns of the Challenge's own table, ``dx_mapping_scored.csv`` of
https://github.com/physionetchallenges/evaluation-2021 (the same codes as evaluation-2020):
the 30 diagnoses the Challenge scored, which are most of the Dx its headers carry. A Code
Meaning is required (Type 1), so a code the table lacks has the code itself as its meaning.
"""

from __future__ import annotations

import csv
from functools import cache
from pathlib import Path

from ..metadata import Code

SCT = "SCT"
"""DICOM's Coding Scheme Designator of SNOMED CT."""
TABLE = Path(__file__).with_name("dx_mapping_scored.csv")


@cache
def concept_names() -> dict[str, str]:
    """SNOMED CT code -> concept name, from :data:`TABLE`."""
    with TABLE.open(newline="", encoding="utf-8") as handle:
        return {row["SNOMEDCTCode"].strip(): row["Dx"].strip() for row in csv.DictReader(handle)}


@cache
def sct_code(code: str) -> Code:
    """The coded concept of a Challenge Dx code; its meaning the table's name, else the code."""
    return Code(code, SCT, concept_names().get(code, code))
