"""to-wfdb: DICOM ECG -> WFDB, checked with wfdb's reader against pydicom's decoding."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import wfdb
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.waveforms import multiplex_array

from ecg_variants import MIMIC_ORDER, STANDARD_ORDER, derived_object
from wfdb2dicom.dicom_ecg import read_dicom_ecg
from wfdb2dicom.errors import ConversionError
from wfdb2dicom.to_wfdb import dicom_to_wfdb


@pytest.fixture(params=["shared", "pydicom"])
def vendor_ecg(request: pytest.FixtureRequest, shared_data: Path) -> Path:
    """The two reference vendor objects (the same Mortara recording, shipped twice)."""
    if request.param == "shared":
        return shared_data / "dicom" / "anonymous_ecg.dcm"
    return Path(get_testdata_file("waveform_ecg.dcm"))


def test_vendor_object_round_trips_bit_exact(vendor_ecg: Path, tmp_path: Path) -> None:
    ds = pydicom.dcmread(vendor_ecg)
    records = dicom_to_wfdb(vendor_ecg, tmp_path)
    assert [r.name for r in records] == [vendor_ecg.stem, f"{vendor_ecg.stem}_2"]
    for index, base in enumerate(records):
        digital = wfdb.rdrecord(str(base), physical=False)
        raw = multiplex_array(ds, index, as_raw=True)
        assert digital.d_signal.shape == raw.shape
        assert np.array_equal(digital.d_signal, raw)
        assert digital.fmt == ["16"] * 12
        assert digital.sig_name == STANDARD_ORDER
        assert digital.fs == 1000
        physical = wfdb.rdrecord(str(base))
        assert physical.units == ["uV"] * 12
        np.testing.assert_allclose(
            physical.p_signal, multiplex_array(ds, index, as_raw=False), rtol=1e-12, atol=1e-9
        )
        assert physical.base_datetime == dt.datetime(2013, 1, 25, 10, 59, 19)


def test_header_comments_carry_ids_and_annotations(mortara: Path, tmp_path: Path) -> None:
    rhythm, median = dicom_to_wfdb(mortara, tmp_path)
    comments = wfdb.rdheader(str(rhythm)).comments
    assert "patient_id: 642341" in comments
    assert "study_id: 1" in comments
    assert "statement: RITMO SINUSALE" in comments
    assert "measurement: QRS Duration: 75 ms" in comments
    assert comments[0] == "source: anonymous_ecg.dcm multiplex group 1 of 2 (RHYTHM)"
    assert "multiplex group 2 of 2 (MEDIAN BEAT)" in wfdb.rdheader(str(median)).comments[0]


def test_fiducial_points_go_to_an_annotation_file(mortara: Path, tmp_path: Path) -> None:
    rhythm, _ = dicom_to_wfdb(mortara, tmp_path)
    expected = sorted(
        (position - 1, a.concept)
        for a in read_dicom_ecg(mortara).annotations
        for position in a.sample_positions
    )
    annotation = wfdb.rdann(str(rhythm), "ann")
    assert len(expected) == 66
    assert sorted(zip(annotation.sample.tolist(), annotation.aux_note, strict=True)) == expected


def test_mdc_codes_millivolts_baseline_other_rate_and_order(mortara: Path, tmp_path: Path) -> None:
    dcm = derived_object(mortara, tmp_path / "variant.dcm", order=MIMIC_ORDER, decimate=2,
                         mdc=True, millivolts=True, baseline_mv=0.05)
    ds = pydicom.dcmread(dcm)
    (base,) = dicom_to_wfdb(dcm, tmp_path / "out")
    digital = wfdb.rdrecord(str(base), physical=False)
    assert np.array_equal(digital.d_signal, multiplex_array(ds, 0, as_raw=True))
    assert digital.sig_name == MIMIC_ORDER
    assert digital.fs == 500
    assert digital.adc_gain == [800.0] * 12
    assert digital.baseline == [-40] * 12
    physical = wfdb.rdrecord(str(base))
    assert physical.units == ["mV"] * 12
    np.testing.assert_allclose(physical.p_signal, multiplex_array(ds, 0, as_raw=False),
                               rtol=1e-12, atol=1e-12)


def test_lowest_int16_is_a_sample_unless_it_is_the_padding_value(
    mortara: Path, tmp_path: Path
) -> None:
    ds = pydicom.dcmread(mortara)
    raw = multiplex_array(ds, 0, as_raw=True).copy()
    raw[100:110, 3] = -32768
    ds.WaveformSequence[0].WaveformData = raw.astype("<i2").tobytes()
    ds.save_as(tmp_path / "unpadded.dcm")
    ds.WaveformSequence[0].add_new(
        "WaveformPaddingValue", "OW", (-32768).to_bytes(2, "little", signed=True)
    )
    ds.save_as(tmp_path / "padded.dcm")

    (unpadded,) = dicom_to_wfdb(tmp_path / "unpadded.dcm", tmp_path / "a")[:1]
    record = wfdb.rdrecord(str(unpadded))
    assert record.fmt[0] == "32"  # in fmt 16, -32768 would read back as "no sample"
    assert np.array_equal(wfdb.rdrecord(str(unpadded), physical=False).d_signal, raw)
    assert np.isfinite(record.p_signal).all()

    (padded,) = dicom_to_wfdb(tmp_path / "padded.dcm", tmp_path / "b")[:1]
    record = wfdb.rdrecord(str(padded))
    assert record.fmt[0] == "16"
    assert np.array_equal(wfdb.rdrecord(str(padded), physical=False).d_signal, raw)
    assert np.isnan(record.p_signal[100:110, 3]).all()
    assert np.isfinite(np.delete(record.p_signal, 3, axis=1)).all()


def test_baseline_that_wfdb_cannot_hold_is_refused(mortara: Path, tmp_path: Path) -> None:
    dcm = derived_object(mortara, tmp_path / "odd.dcm", order=STANDARD_ORDER, baseline_mv=0.3)
    with pytest.raises(ConversionError, match="whole number of sample units"):
        dicom_to_wfdb(dcm, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("name", ["not_dicom", "not_waveform", "missing"])
def test_non_ecg_inputs_raise_a_one_line_reason(
    name: str, physionet_dir: Path, tmp_path: Path
) -> None:
    path = {
        "not_dicom": physionet_dir / "100.hea",
        "not_waveform": Path(get_testdata_file("CT_small.dcm")),
        "missing": tmp_path / "nothing.dcm",
    }[name]
    with pytest.raises(ConversionError) as caught:
        dicom_to_wfdb(path, tmp_path / "out")
    message = str(caught.value)
    assert "\n" not in message and path.name in message


def _run(argv: list[str]) -> int:
    from wfdb2dicom import cli

    return cli.main(argv)


def test_cli_reports_each_failure_on_one_line_and_converts_the_rest(
    mortara: Path, physionet_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    status = _run(["to-wfdb", str(physionet_dir / "100.dat"), str(mortara), "-o", str(out)])
    captured = capsys.readouterr()
    assert status != 0
    errors = captured.err.strip().splitlines()
    assert len(errors) == 1
    assert errors[0].startswith("wfdb2dicom to-wfdb: ") and "100.dat" in errors[0]
    assert "Traceback" not in captured.err
    assert (out / "anonymous_ecg.hea").exists() and (out / "anonymous_ecg_2.hea").exists()
    assert str(out / "anonymous_ecg") in captured.out


def test_cli_refuses_non_dicom_with_one_line(tmp_path: Path) -> None:
    """As a user runs it: a separate process, nothing written, one line on stderr."""
    bogus = tmp_path / "not.dcm"
    bogus.write_text("hello")
    proc = subprocess.run([sys.executable, "-m", "wfdb2dicom.cli", "to-wfdb", str(bogus), "-o",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "not.dcm is not a DICOM file" in lines[0]
    assert not list(tmp_path.glob("out/*.hea"))


def test_cli_succeeds_on_good_input(mortara: Path, tmp_path: Path) -> None:
    assert _run(["to-wfdb", str(mortara), "-o", str(tmp_path)]) == 0


@pytest.mark.parametrize("record", ["test01_00s", "s0010_re", "100", "3000003_0003"])
def test_wfdb_to_our_dicom_and_back(record: str, physionet_dir: Path, tmp_path: Path) -> None:
    """Our own objects come back as the record they were made from."""
    convert = pytest.importorskip("wfdb2dicom.convert")
    from wfdb2dicom.builder import ConversionOptions

    when = dt.datetime(2180, 7, 23, 21, 40)
    source = physionet_dir / record
    ds = convert.record_to_dataset(source, options=ConversionOptions(acquisition_datetime=when))
    dcm = tmp_path / f"{record}.dcm"
    ds.save_as(dcm, enforce_file_format=True)
    (base,) = dicom_to_wfdb(dcm, tmp_path / "out")

    original = wfdb.rdrecord(str(source), physical=False)
    back = wfdb.rdrecord(str(base), physical=False)
    assert np.array_equal(back.d_signal, original.d_signal)
    assert back.fs == original.fs
    assert back.adc_gain == original.adc_gain
    assert back.baseline == original.baseline
    assert back.units == original.units
    # lead names come back from the codes, so only their case may differ ("avr" -> "aVR")
    assert [n.lower() for n in back.sig_name] == [n.lower() for n in original.sig_name]
    # the builder takes the header's start only when it has a date; else the option's
    assert wfdb.rdheader(str(base)).base_datetime == (original.base_datetime or when)
    np.testing.assert_allclose(
        wfdb.rdrecord(str(base)).p_signal, wfdb.rdrecord(str(source)).p_signal,
        rtol=1e-12, atol=0, equal_nan=True,
    )


def test_our_objects_round_trip(demo_corpus, demo_metadata, tmp_path: Path) -> None:
    """WFDB -> our DICOM -> WFDB gives the original samples, names, physical values, and the
    machine statements and measurements as header comments."""
    from wfdb2dicom.convert import convert_record

    for rel in demo_corpus.good[:4]:
        original = demo_corpus.root / rel
        dcm = convert_record(original, tmp_path / f"{Path(rel).name}.dcm", demo_metadata)
        ecg = read_dicom_ecg(dcm)
        (back,) = dicom_to_wfdb(dcm, tmp_path / "back")
        a = wfdb.rdrecord(str(original), physical=False)
        b = wfdb.rdrecord(str(back), physical=False)
        np.testing.assert_array_equal(b.d_signal, a.d_signal)
        assert b.sig_name == a.sig_name
        assert b.adc_gain == a.adc_gain and b.baseline == a.baseline
        pa, pb = wfdb.rdrecord(str(original)).p_signal, wfdb.rdrecord(str(back)).p_signal
        np.testing.assert_allclose(pb, pa, rtol=1e-12, equal_nan=True)
        comments = wfdb.rdheader(str(back)).comments
        assert f"patient_id: {ecg.patient_id}" in comments
        for statement in ecg.statements:
            assert f"statement: {' '.join(statement.split())}" in comments
        assert sum(c.startswith("measurement: ") for c in comments) == len(ecg.measurements)


def test_read_dicom_ecg_accepts_a_dataset(mortara: Path) -> None:
    ecg = read_dicom_ecg(pydicom.dcmread(mortara))
    assert isinstance(pydicom.dcmread(mortara), Dataset)
    assert [g.label for g in ecg.groups] == ["RHYTHM", "MEDIAN BEAT"]
    assert ecg.statements == ("RITMO SINUSALE", "ECG NORMALE")
    assert ecg.acquisition_datetime == dt.datetime(2013, 1, 25, 10, 59, 19)


# --- every kind of object the converter makes ---------------------------------------------

OBJECT_RECORDS = ["wfdb-python/binformats", "wfdb-python/mixedsignals",
                  "wfdb-python/multi-segment/041s/041s",
                  "wfdb-python/multi-segment/s25047/s25047-2704-05-04-10-44"]
WHEN = dt.datetime(2000, 1, 1)


def _objects_back_to_source(base: Path, tmp_path: Path, max_duration: float | None = None
                            ) -> set[str]:
    """Every object of ``base`` through to-wfdb equals wfdb's own samples of its signals over
    its span (found from the WFDB start time to-wfdb writes); returns the SOP classes seen."""
    from test_objects import _segment_of
    from test_reader import _wfdb_segments

    from wfdb2dicom.builder import ConversionOptions
    from wfdb2dicom.convert import write_record
    from wfdb2dicom.signal_classes import units_code

    written = write_record(base, f"{tmp_path}/dcm/", options=ConversionOptions(
        acquisition_datetime=WHEN, max_duration=max_duration))
    segments = {index: (start, record) for index, start, record in _wfdb_segments(base)}
    header = wfdb.rdheader(str(base))
    frame_rate, record_start = header.fs, header.base_datetime or WHEN
    classes = set()
    for path in written.paths:
        ds = pydicom.dcmread(path)
        classes.add(ds.SOPClassUID.name)
        (back,) = dicom_to_wfdb(path, tmp_path / "wfdb")
        record = wfdb.rdrecord(str(back), physical=False)
        start_frame, source = segments[_segment_of(path, len(segments))]
        offset_s = (record.base_datetime - record_start).total_seconds() - start_frame / frame_rate
        names = [n.lower() for n in source.sig_name]
        for c, name in enumerate(record.sig_name):
            column = next(i for i, n in enumerate(names) if n == name.lower()
                          and abs(source.fs * source.samps_per_frame[i] - record.fs) < 1e-6)
            first = round(offset_s * record.fs)
            expected = source.e_d_signal[column][first:first + record.sig_len]
            np.testing.assert_array_equal(record.d_signal[:, c], expected, err_msg=path.name)
            assert units_code(record.units[c]) == units_code(source.units[column]), path.name
        if ds.WaveformSequence[0].WaveformSampleInterpretation == "SL":
            assert set(record.fmt) <= {"24", "32"}
    return classes


@pytest.mark.parametrize("rel", OBJECT_RECORDS, ids=lambda r: Path(r).name)
def test_every_object_of_shared_records_back_to_source(rel: str, physionet_dir: Path,
                                                       tmp_path: Path) -> None:
    """General 32-bit ECG (SL), HD, pulse, respiration; segments with their time offsets."""
    classes = _objects_back_to_source(physionet_dir / rel, tmp_path)
    assert classes


def test_icu_parts_back_to_source(challenge_record: Path, tmp_path: Path) -> None:
    """Consecutive parts of each IOD's object: each part is its own span of the source."""
    classes = _objects_back_to_source(challenge_record, tmp_path, max_duration=60)
    assert classes == {"12-lead ECG Waveform Storage", "Hemodynamic Waveform Storage",
                       "Arterial Pulse Waveform Storage",
                       "Multi-channel Respiratory Waveform Storage"}


def test_units_come_back_in_wfdb_spelling(challenge_record: Path, tmp_path: Path) -> None:
    """Before: mm[Hg] went into the header, and wfdb read '[Hg] ...' as the signal name."""
    from wfdb2dicom.builder import ConversionOptions
    from wfdb2dicom.convert import write_record

    written = write_record(challenge_record, f"{tmp_path}/dcm/",
                           options=ConversionOptions(acquisition_datetime=WHEN))
    found = {}
    for path in written.paths:
        (back,) = dicom_to_wfdb(path, tmp_path / "wfdb")
        header = wfdb.rdheader(str(back))
        found.update(zip(header.sig_name, header.units, strict=True))
    source = wfdb.rdheader(str(challenge_record))
    assert found == dict(zip(source.sig_name, source.units, strict=True))
