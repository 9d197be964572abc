"""The value representation rules (vr.py) are dciodvfy's: every control character, lengths in
UTF-8 bytes, and the years of a date (issue 13, item 3)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pydicom
import pytest
from pydicom.valuerep import MAX_VALUE_LEN

from conftest import require_tool
from wfdb2dicom.builder import ConversionOptions, build_dataset
from wfdb2dicom.errors import MetadataError
from wfdb2dicom.metadata import StudyMetadata
from wfdb2dicom.reader import read_record
from wfdb2dicom.validate import run_dciodvfy
from wfdb2dicom.vr import DATE_YEARS, MAX_BYTES, checked_date, checked_text, clean_controls

CONTROLS = [chr(c) for c in [*range(0x20), 0x7F]]


def test_control_characters_per_vr() -> None:
    for char in CONTROLS:
        kept_in_text = char in "\r\n\f\x1b"
        assert clean_controls(f"a{char}b", "ST") == ("a" + (char if kept_in_text else " ") + "b")
        assert clean_controls(f"a{char}b", "UT") == clean_controls(f"a{char}b", "LT")
        for vr in ("SH", "LO", "CS"):
            assert clean_controls(f"a{char}b", vr) == ("a" + (char if char == "\x1b" else " ")
                                                       + "b")
    for text in ("Sinus rhythm", "心 é \\", ""):
        assert clean_controls(text, "ST") is text  # nothing to do costs no copy
    assert clean_controls("\u0085\u2028", "SH") == "\u0085\u2028"  # C1 and Unicode: allowed


def test_lengths_are_bytes_of_utf8() -> None:
    assert {vr: MAX_BYTES[vr] for vr in MAX_VALUE_LEN} == MAX_VALUE_LEN  # pydicom's table
    assert checked_text("é" * 8, "SH", "Station Name", "cart_id") == "é" * 8
    with pytest.raises(MetadataError, match="18 bytes in UTF-8, at most 16"):
        checked_text("é" * 9, "SH", "Station Name", "cart_id")
    assert checked_text("心" * 341 + "x", "ST", "Unformatted Text Value", "report statement")
    with pytest.raises(MetadataError, match="1026 bytes"):
        checked_text("心" * 342, "ST", "Unformatted Text Value", "report statement")


def test_backslash_splits_only_multi_valued_vrs() -> None:
    assert checked_text("a\\b", "ST", "Unformatted Text Value", "report statement") == "a\\b"
    with pytest.raises(MetadataError, match="backslash"):
        checked_text("a\\b", "LO", "Patient ID", "subject_id")


def test_date_years() -> None:
    assert (DATE_YEARS.start, DATE_YEARS.stop) == (1000, 3000)
    for year in (1000, 2180, 2999):
        checked_date(dt.date(year, 1, 1), "ecg_time")
    for year in (1, 999, 3000, 9999):
        with pytest.raises(MetadataError, match="outside the years 1000-2999"):
            checked_date(dt.date(year, 1, 1), "ecg_time")


@pytest.mark.filterwarnings("ignore:Found unknown escape sequence")  # pydicom reading ESC
def test_every_control_character_and_the_date_bounds_pass_dciodvfy(physionet_dir: Path,
                                                                    tmp_path: Path) -> None:
    """The rules above, judged by dciodvfy: one object holds each control character in a
    statement (ST), the Patient ID (LO), the Station Name and a Channel Label (SH)."""
    require_tool("dciodvfy")
    record = read_record(physionet_dir / "test01_00s")
    group = record.groups[0]
    channels = tuple(c._replace(label=f"L{char}{i}") for i, (c, char)
                     in enumerate(zip(group.channels, CONTROLS, strict=False)))
    record = record._replace(groups=(group._replace(channels=channels),))
    everything = "".join(CONTROLS) + "\u0085\u2028"  # and what vr.py leaves: C1, Unicode
    metadata = StudyMetadata(study_id="1", subject_id=f"s{everything}"[:64],
                             cart_id="c\t\x00\x1b", reports=(*CONTROLS, f"x{everything}y"))
    for year in (DATE_YEARS.start, DATE_YEARS.stop - 1):
        options = ConversionOptions(acquisition_datetime=dt.datetime(year, 12, 31, 23, 59))
        path = tmp_path / f"{year}.dcm"
        build_dataset(record, metadata, options=options).save_as(path, enforce_file_format=True)
        report = run_dciodvfy(path)
        assert report.clean, report.errors + report.warnings
    ds = pydicom.dcmread(path)
    statements = [item.UnformattedTextValue for item in ds.WaveformAnnotationSequence]
    assert statements[-1] == "x" + clean_controls(everything, "ST") + "y"
    assert ds.StationName == "c  \x1b"
