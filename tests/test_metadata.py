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


@pytest.mark.parametrize("first_id", [40_000_000, 9_000_000_000])  # 31-bit keys, and wider
def test_compact_groups_give_every_row_as_written(tmp_path: Path, monkeypatch,
                                                  first_id: int) -> None:
    """Read in many small groups, each compacted its own way (a column empty in one group
    and full in another, dictionaries, plain texts), every row comes back as written:
    stripped, empty -> None, the first of duplicate study_ids winning."""
    import csv
    import random

    import pyarrow as pa
    import pyarrow.csv as pacsv

    from wfdb2dicom import metadata

    monkeypatch.setattr(metadata, "BATCH_ROWS", 128)
    monkeypatch.setattr(metadata, "READ_BLOCK_BYTES", 4096)
    rng = random.Random(7)
    ids = [first_id + i * 7 for i in range(600)]
    rng.shuffle(ids)
    words = ["Sinus rhythm", " Normal ECG ", "Abnormal ECG", "", "Left axis deviation"]
    header = ["study_id", "subject_id", "ecg_time", "report_0", "report_1", "rr_interval",
              "unused"]
    rows = []
    for n, sid in enumerate(ids):
        rows.append([str(sid), str(1000 + n % 37), f"2180-01-01 00:{n % 60:02d}:{n % 59:02d}",
                     rng.choice(words), rng.choice(words) if 200 <= n < 260 else "",
                     str(600 + n % 300) if n % 5 else "", "x"])
    rows.append([str(ids[3]), "duplicate", "", "", "", "", ""])  # later: loses to the first
    path = tmp_path / "mm.csv"
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])

    table = MetadataTable.load(path)
    plain = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
        column_types=dict.fromkeys(header, pa.string())))
    used = plain.drop_columns(["unused"])
    assert len(table) == len(rows) and table.nbytes < used.nbytes * 0.75, (
        table.nbytes, used.nbytes)
    wanted = [*ids, first_id + 1, 123]  # the last two are in no row
    got = table.raw_rows([str(s) for s in wanted])
    assert got[-2:] == [None, None]
    for row, values in zip(rows[:-1], got[:-2], strict=True):
        written = dict(zip(header, row, strict=True))
        assert values == tuple((written.get(name) or "").strip() or None for name in COLUMNS)

    parquet = tmp_path / "mm.parquet"
    import pyarrow.parquet as pq

    pq.write_table(plain, parquet)
    assert MetadataTable.load(parquet).raw_rows([str(s) for s in wanted]) == got
