"""Property: whatever header and metadata row ``convert`` is given, it either writes an object
that dciodvfy passes, holding wfdb's samples, or refuses with one line on stderr and exit 2,
leaving no file (issue 13, "Done when").

Headers are real ones mutated field by field (huge, negative, non-finite, empty, control
characters, any Unicode); metadata rows carry any text. The examples are derandomized and
bounded, so CI runs the same ones every time in well under a minute.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
import wfdb
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydicom.waveforms import multiplex_array

from conftest import require_tool
from wfdb2dicom.cli import main
from wfdb2dicom.metadata import REPORT_COLUMNS
from wfdb2dicom.validate import run_dciodvfy

NASTY_FIELDS = [
    "", "0", "-1", "1", "999999999999", "18446744073709551617", "-2147483649", "1e400",
    "inf", "-inf", "nan", "0.5", "1e-300", "08:35:inf", "99999999999:00:00", "25:00:00",
    "10:00:00", "1/1/1", "31/12/999", "1/1/3000", "29/02/2001", "01/01/2100", "16", "16x4",
    "16:3", "16+7", "212", "8", "80", "24", "32", "310", "100(5)/uV", "1e999/mV", "200/°C",
    "0/mV", "-200(0)/mV", "~", "../x", "a/b", ".", "EC\x00G", "\x07", "\t", "心" * 20,
]
TEXT = st.text(st.characters(codec="utf-8"), max_size=12)
FIELD = st.sampled_from(NASTY_FIELDS) | TEXT


@st.composite
def mutated_header(draw: st.DrawFn, text: str) -> str:
    """``text`` with up to three fields or lines replaced, removed, added or repeated (mostly
    replaced: a changed line count is refused early, and teaches little)."""
    lines = [line.split(" ") for line in text.splitlines() if line.strip()]
    for _ in range(draw(st.integers(0, 3))):
        row = draw(st.integers(0, len(lines) - 1))
        fields = lines[row]
        column = draw(st.integers(0, max(len(fields) - 1, 0)))
        action = draw(st.sampled_from(["replace"] * 8 + ["drop", "add", "repeat line",
                                                         "drop line"]))
        if action == "replace" and fields:
            fields[column] = draw(FIELD)
        elif action == "drop" and fields:
            del fields[column]
        elif action == "add":
            fields.insert(column, draw(FIELD))
        elif action == "repeat line":
            lines.insert(row, list(fields))
        elif action == "drop line" and len(lines) > 1:
            del lines[row]
    return "\n".join(" ".join(fields) for fields in lines) + "\n"


SANE_ROW = {"subject_id": "10000032", "cart_id": "6848", "ecg_time": "2180-07-23 09:08:00",
            "bandwidth": "0.005-150 Hz", "reports": ["Sinus rhythm", "Normal ECG"]}


def mostly(sane: object, nasty: st.SearchStrategy) -> st.SearchStrategy:
    """``sane`` three times in four: one nasty field in a row is enough to refuse it, and a
    row that always refused would never test what is written."""
    return st.one_of(st.just(sane), st.just(sane), st.just(sane), nasty)


STATEMENT = st.one_of(
    st.sampled_from(["Sinus rhythm", "é" * 512, "心" * 341 + "x", "a\tb\x00c\x07d\x01e\x7f",
                     "\\", "\r\n", "\x00"]),
    st.text(st.characters(codec="utf-8"), max_size=60),
    mostly("Normal ECG", st.sampled_from(["心" * 400, "é" * 1024, "x" * 1025])),
)
METADATA_ROW = st.fixed_dictionaries({
    "subject_id": mostly("10000032", st.sampled_from(["", "x" * 65, "a\\b"]) | TEXT),
    "cart_id": mostly("6848", st.sampled_from(["", "x" * 17]) | TEXT),
    "ecg_time": mostly("2180-07-23 09:08:00", st.sampled_from([
        "0001-01-01 00:00:00", "2999-12-31 23:59:59", "3000-01-01 00:00:00", "bad", ""])),
    "bandwidth": mostly("0.005-150 Hz", st.sampled_from(["", "x-y Hz", "150-0.005 Hz"])),
    "reports": st.lists(STATEMENT, max_size=4),
})


@pytest.fixture(scope="module")
def base_records(physionet_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A format-16 record (the fast path) and a format-212 one (the wfdb path; the first
    2,000 frames of MIT-BIH record 100, written by wfdb)."""
    directory = tmp_path_factory.mktemp("bases")
    for source in physionet_dir.glob("test01_00s.*"):
        shutil.copy(source, directory / source.name)
    mitdb = wfdb.rdrecord(str(physionet_dir / "100"), physical=False, sampto=2000)
    wfdb.wrsamp("short100", fs=500, units=mitdb.units, sig_name=mitdb.sig_name,
                d_signal=mitdb.d_signal, fmt=["212", "212"], adc_gain=mitdb.adc_gain,
                baseline=mitdb.baseline, write_dir=str(directory))
    return [directory / "test01_00s", directory / "short100"]


def write_metadata(path: Path, row: dict) -> None:
    values = {"study_id": "1", **{k: v for k, v in row.items() if k != "reports"},
              **dict(zip(REPORT_COLUMNS, row["reports"], strict=False))}
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(values))
        writer.writeheader()
        writer.writerow(values)


def wfdb_channels(base: Path) -> list[np.ndarray]:
    """wfdb's samples per channel, in the order our objects hold them: grouped by samples per
    frame (in order of first appearance), header order within a group."""
    source = wfdb.rdrecord(str(base), physical=False, smooth_frames=False)
    spf = list(source.samps_per_frame)
    order = [i for rate in dict.fromkeys(spf) for i, s in enumerate(spf) if s == rate]
    return [np.asarray(source.e_d_signal[i]) for i in order]


@given(data=st.data())
@settings(max_examples=100, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_convert_writes_a_valid_object_or_refuses_in_one_line(base_records, data) -> None:
    require_tool("dciodvfy")
    base = data.draw(st.sampled_from(base_records), label="record")
    # One of the two inputs, or both: a refusal of one would hide what the other does.
    mutate = data.draw(st.sampled_from(["header", "metadata", "both"]), label="mutate")
    header = base.with_suffix(".hea").read_text()
    if mutate != "metadata":
        header = data.draw(mutated_header(header), label="header")
    row = data.draw(METADATA_ROW, label="metadata") if mutate != "header" else SANE_ROW
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        for source in base.parent.glob(f"{base.name}.*"):
            shutil.copy(source, work / source.name)
        record = work / base.name
        record.with_suffix(".hea").write_text(header, encoding="utf-8")
        write_metadata(work / "md.csv", row)
        inputs = {p.name: p.read_bytes() for p in work.iterdir()}
        out = work / "out" / "o.dcm"
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            status = main(["convert", str(record), "-o", str(out), "--metadata",
                           str(work / "md.csv"), "--study-id", "1"])
        lines = stderr.getvalue().splitlines()
        assert status in (0, 2), lines
        assert {p.name: p.read_bytes() for p in work.iterdir() if p.name != "out"} == inputs
        event("converted" if status == 0 else "refused: " + " ".join(lines[0].split()[2:5]))
        if status == 2:
            assert len(lines) == 1 and "internal error" not in lines[0], lines
            assert not (work / "out").exists()  # no file, no directory made for it
            return
        assert os.listdir(work / "out") == ["o.dcm"]
        report = run_dciodvfy(out)
        assert report.clean, (header, row, report.errors + report.warnings)
        ds = pydicom.dcmread(out)
        ours = [column for index in range(len(ds.WaveformSequence))
                for column in multiplex_array(ds, index, as_raw=True).T]
        expected = wfdb_channels(record)
        assert len(ours) == len(expected)
        for mine, theirs in zip(ours, expected, strict=True):
            np.testing.assert_array_equal(mine, theirs)
