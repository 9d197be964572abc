"""Metadata lookups: the join of the batch (study_id -> row) and the values workers get."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from wfdb2dicom.errors import MetadataError
from wfdb2dicom.metadata import COLUMNS, MetadataTable, StudyMetadata


def subjects(table: MetadataTable, keys: list[str]) -> list[str | None]:
    return [m.subject_id if m else None for m in table.get_many(keys)]


def test_numeric_keys_normalise_and_the_first_duplicate_wins() -> None:
    table = MetadataTable.from_dataframe(pd.DataFrame(
        {"study_id": [5, 7, 7, 9], "subject_id": ["15", "17", "27", "19"]}))
    assert subjects(table, ["7", "5.0", " 9 ", "8", "x", "7", "+5", "0" * 20 + "7"]) == [
        "17", "15", "19", None, None, "17", None, None]


def test_non_numeric_keys_use_exact_text() -> None:
    table = MetadataTable.from_dataframe(pd.DataFrame(
        {"study_id": ["s1", "7", "s1"], "subject_id": ["1", "2", "3"]}))
    assert subjects(table, ["s1", "7", "8", "7.0"]) == ["1", "2", None, "2"]


def test_raw_rows_are_value_tuples_in_column_order(tmp_path: Path) -> None:
    """Columns a file lacks come back as None; rows requested twice come back twice."""
    path = tmp_path / "mm.csv"
    path.write_text("report_1,study_id,ecg_time,extra,rr_interval\n"
                    " second ,40000001,2180-01-02 03:04:05,x,800\n"
                    ",40000002,,y,29999\n")
    table = MetadataTable.load(path)
    rows = table.raw_rows(["40000002", "40000001", "404", "40000001"])
    assert rows[2] is None and rows[1] == rows[3]
    first = dict(zip(COLUMNS, rows[1], strict=True))
    assert first["study_id"] == "40000001" and first["report_1"] == "second"
    assert first["report_0"] is None and first["cart_id"] is None
    metadata = StudyMetadata.from_values(rows[1])
    assert metadata.reports == ("second",)
    assert metadata.ecg_time == dt.datetime(2180, 1, 2, 3, 4, 5)
    assert metadata.measurements == {"rr_interval": 800.0}
    assert StudyMetadata.from_values(rows[0]).measurements == {}  # 29999: not measured


def test_from_row_matches_from_values_and_refuses_bad_times() -> None:
    row = {"study_id": "40000001", "report_0": "Sinus rhythm", "bandwidth": "0.005-150 Hz",
           "filtering": "60 Hz notch Baseline filter", "qrs_onset": "40", "qrs_end": "130"}
    metadata = StudyMetadata.from_row(row)
    assert (metadata.filter_low_hz, metadata.filter_high_hz, metadata.notch_hz) == (
        0.005, 150.0, 60.0)
    assert metadata.reports == ("Sinus rhythm",)
    with pytest.raises(MetadataError, match="ecg_time"):
        StudyMetadata.from_row({"study_id": "1", "ecg_time": "yesterday"})
