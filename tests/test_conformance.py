"""Objects from the demo corpus and the real recordings: conformant, lossless, reproducible."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import wfdb
from pydicom.waveforms import multiplex_array

from conftest import require_tool
from wfdb2dicom.builder import ConversionOptions
from wfdb2dicom.convert import convert_record, record_to_dataset, wfdb_to_dicom_ecg_phase1
from wfdb2dicom.leads import code_for_label
from wfdb2dicom.validate import quick_check, run_dciodvfy

MIMIC_LEADS = ["I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6"]
MDC_CODES = {"I": "2:1", "II": "2:2", "III": "2:61", "aVR": "2:62", "aVL": "2:63",
             "aVF": "2:64", "V1": "2:3", "V2": "2:4", "V3": "2:5", "V4": "2:6", "V5": "2:7",
             "V6": "2:8"}


@pytest.fixture(scope="module")
def converted(demo_corpus, demo_metadata, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dcm")
    files = {}
    for rel in demo_corpus.good:
        files[rel] = convert_record(demo_corpus.root / rel, out / (Path(rel).name + ".dcm"),
                                    demo_metadata)
    return files


def test_dciodvfy_clean_on_demo_corpus(converted) -> None:
    require_tool("dciodvfy")
    for rel, path in converted.items():
        report = run_dciodvfy(path)
        assert report.clean, f"{rel}: {report.errors + report.warnings}"


def channel_by_lead(ds: pydicom.Dataset, group: int = 0) -> dict[str, int]:
    items = ds.WaveformSequence[group].ChannelDefinitionSequence
    return {item.ChannelLabel: i for i, item in enumerate(items)}


def test_samples_bit_exact_and_physical_equal(demo_corpus, converted) -> None:
    for rel, path in converted.items():
        ds = pydicom.dcmread(path)
        source = wfdb.rdrecord(str(demo_corpus.root / rel), physical=False)
        physical = wfdb.rdrecord(str(demo_corpus.root / rel))
        raw = multiplex_array(ds, 0, as_raw=True)
        scaled = multiplex_array(ds, 0, as_raw=False)
        index = channel_by_lead(ds)
        for lead_pos, lead in enumerate(source.sig_name):
            np.testing.assert_array_equal(raw[:, index[lead]], source.d_signal[:, lead_pos])
            expected = physical.p_signal[:, lead_pos]
            valid = ~np.isnan(expected)  # WFDB's invalid sample (-32768) is NaN in p_signal
            np.testing.assert_allclose(scaled[valid, index[lead]], expected[valid], rtol=1e-12,
                                       atol=1e-12)
            padding = ds.WaveformSequence[0].WaveformPaddingValue
            assert np.all(raw[~valid, index[lead]] == np.frombuffer(padding, "<i2")[0])


def test_invalid_samples_kept(demo_corpus, converted) -> None:
    """The corpus has lead-off runs of -32768; they survive bit-exact."""
    seen = 0
    for path in converted.values():
        seen += int(np.sum(multiplex_array(pydicom.dcmread(path), 0, as_raw=True) == -32768))
    assert seen > 0


def test_identifiers_times_filters_and_leads(demo_corpus, converted) -> None:
    table = pd.read_csv(demo_corpus.machine_measurements_csv, dtype=str, keep_default_na=False)
    rows = {row.study_id: row for row in table.itertuples()}
    for rel, path in converted.items():
        ds = pydicom.dcmread(path)
        header = wfdb.rdheader(str(demo_corpus.root / rel))
        row = rows[header.record_name]
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.9.1.1"
        assert ds.PatientID == row.subject_id
        assert ds.StudyID == row.study_id
        assert ds.StationName == row.cart_id
        if header.base_date is not None:
            expected = dt.datetime.combine(header.base_date, header.base_time)
        else:
            expected = dt.datetime.fromisoformat(row.ecg_time)
        assert ds.AcquisitionDateTime == expected.strftime("%Y%m%d%H%M%S")
        assert ds.StudyDate == ds.ContentDate == expected.strftime("%Y%m%d")
        low, high = row.bandwidth.replace("Hz", "").split("-")
        for item in ds.WaveformSequence[0].ChannelDefinitionSequence:
            assert float(item.FilterLowFrequency) == float(low)
            assert float(item.FilterHighFrequency) == float(high)
            if "notch" in row.filtering:
                assert float(item.NotchFilterFrequency) == float(row.filtering.split()[0])
            else:
                assert "NotchFilterFrequency" not in item
            code = item.ChannelSourceSequence[0]
            assert code.CodingSchemeDesignator == "MDC"
            assert code.CodeValue == MDC_CODES[item.ChannelLabel]
            assert item.ChannelSensitivityUnitsSequence[0].CodeValue == "mV"
        labels = [i.ChannelLabel for i in ds.WaveformSequence[0].ChannelDefinitionSequence]
        assert labels == MIMIC_LEADS


def test_annotations_and_no_annotations(demo_corpus, demo_metadata, tmp_path) -> None:
    table = pd.read_csv(demo_corpus.machine_measurements_csv, dtype=str, keep_default_na=False)
    rel = demo_corpus.good[0]
    row = table[table.study_id == Path(rel).name].iloc[0]
    ds = record_to_dataset(demo_corpus.root / rel, demo_metadata)
    texts = [i.UnformattedTextValue for i in ds.WaveformAnnotationSequence
             if "UnformattedTextValue" in i]
    reports = [row[f"report_{i}"] for i in range(18) if row[f"report_{i}"]]
    assert texts == reports
    numeric = {i.ConceptNameCodeSequence[0].CodeMeaning: float(i.NumericValue)
               for i in ds.WaveformAnnotationSequence if "NumericValue" in i}
    if row.rr_interval not in ("", "29999"):
        assert numeric["RR interval global"] == float(row.rr_interval)
    if row.qrs_axis not in ("", "29999"):
        assert numeric["QRS axis"] == float(row.qrs_axis)
    bare = record_to_dataset(demo_corpus.root / rel, demo_metadata,
                             options=ConversionOptions(annotations=False))
    assert "WaveformAnnotationSequence" not in bare


def test_backslash_statement_stays_one_value(demo_corpus, demo_metadata) -> None:
    table = pd.read_csv(demo_corpus.machine_measurements_csv, dtype=str, keep_default_na=False)
    reports = table[[f"report_{i}" for i in range(18)]]
    hits = [(sid, text) for sid, r in zip(table.study_id, reports.values, strict=True)
            for text in r if "\\" in text]
    assert hits, "the demo corpus must contain a statement with a backslash"
    by_study = {Path(rel).name: rel for rel in demo_corpus.good}
    for study_id, text in hits:
        if study_id not in by_study:
            continue
        ds = record_to_dataset(demo_corpus.root / by_study[study_id], demo_metadata)
        written = pydicom.dcmread(pydicom.filebase.DicomBytesIO(_encode(ds)), force=True)
        values = [i.UnformattedTextValue for i in written.WaveformAnnotationSequence
                  if "UnformattedTextValue" in i]
        assert text in values


def _encode(ds: pydicom.Dataset) -> bytes:
    from wfdb2dicom.convert import encode_dataset

    return encode_dataset(ds)


def test_same_record_twice_is_byte_identical(demo_corpus, demo_metadata, tmp_path) -> None:
    rel = demo_corpus.good[1]
    a = convert_record(demo_corpus.root / rel, tmp_path / "a.dcm", demo_metadata)
    b = convert_record(demo_corpus.root / rel, tmp_path / "b.dcm", demo_metadata)
    assert a.read_bytes() == b.read_bytes()


def test_uid_root(demo_corpus, demo_metadata) -> None:
    rel = demo_corpus.good[0]
    ds = record_to_dataset(demo_corpus.root / rel, demo_metadata,
                           options=ConversionOptions(uid_root="1.2.826.0.1.3680043.10.999"))
    for uid in (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID):
        assert uid.startswith("1.2.826.0.1.3680043.10.999.") and len(uid) <= 64
    assert len({ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID}) == 3


PHYSIONET_EXPECTED = {
    "test01_00s": "1.2.840.10008.5.1.4.1.1.9.1.1",
    "s0010_re": "1.2.840.10008.5.1.4.1.1.9.1.2",
    "100": "1.2.840.10008.5.1.4.1.1.9.1.2",
    "3000003_0003": "1.2.840.10008.5.1.4.1.1.9.1.3",
}


@pytest.mark.parametrize("name", sorted(PHYSIONET_EXPECTED))
def test_real_recordings(physionet_dir: Path, tmp_path: Path, name: str) -> None:
    require_tool("dciodvfy")
    options = ConversionOptions(acquisition_datetime=dt.datetime(2000, 1, 2, 3, 4, 5))
    path = convert_record(physionet_dir / name, tmp_path / f"{name}.dcm", options=options)
    ds = pydicom.dcmread(path)
    quick_check(ds)
    assert ds.SOPClassUID == PHYSIONET_EXPECTED[name]
    report = run_dciodvfy(path)
    assert report.clean, report.errors + report.warnings
    source = wfdb.rdrecord(str(physionet_dir / name), physical=False)
    phys = wfdb.rdrecord(str(physionet_dir / name))
    raw = np.concatenate([multiplex_array(ds, g, as_raw=True)
                          for g in range(len(ds.WaveformSequence))], axis=1)
    scaled = np.concatenate([multiplex_array(ds, g, as_raw=False)
                             for g in range(len(ds.WaveformSequence))], axis=1)
    np.testing.assert_array_equal(raw, source.d_signal)
    np.testing.assert_allclose(scaled, phys.p_signal, rtol=1e-12, atol=1e-12)
    codes = [item.ChannelSourceSequence[0].CodeValue
             for group in ds.WaveformSequence for item in group.ChannelDefinitionSequence]
    assert codes == [code_for_label(n).value for n in source.sig_name]


def test_lead_names_matched_case_insensitively() -> None:
    assert code_for_label("avr").value == code_for_label("AVR").value == "2:62"
    assert code_for_label("v1").value == "2:3"
    assert code_for_label("MLII").meaning == "Modified limb lead"
    assert code_for_label("ECG 1").value == "2:0"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wfdb2dicom.cli", *args],
                          capture_output=True, text=True, timeout=120)


def test_cli_convert_success(physionet_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.dcm"
    proc = run_cli("convert", str(physionet_dir / "test01_00s.hea"), "-o", str(out),
                   "--acquisition-datetime", "2001-02-03T04:05:06")
    assert proc.returncode == 0, proc.stderr
    assert pydicom.dcmread(out).AcquisitionDateTime == "20010203040506"


def test_cli_refusals_are_one_line_with_no_file(demo_corpus, physionet_dir, tmp_path) -> None:
    cases = [(demo_corpus.root / rel, kind) for rel, kind in demo_corpus.broken.items()
             if kind != "missing_metadata"]
    cases.append((physionet_dir / "100", "no acquisition time"))
    assert len(cases) >= 6
    for base, kind in cases:
        out = tmp_path / f"{base.name}.dcm"
        proc = run_cli("convert", str(base), "-o", str(out), "--metadata",
                       str(demo_corpus.machine_measurements_csv))
        assert proc.returncode != 0, kind
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in proc.stderr, (kind, proc.stderr)
        assert not out.exists()
        assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


def test_missing_metadata_row_is_refused(demo_corpus, tmp_path) -> None:
    rel = next(r for r, kind in demo_corpus.broken.items() if kind == "missing_metadata")
    proc = run_cli("convert", str(demo_corpus.root / rel), "-o", str(tmp_path / "x.dcm"),
                   "--metadata", str(demo_corpus.machine_measurements_csv))
    assert proc.returncode != 0
    assert "Missing df_info row for study_id" in proc.stderr


def test_record_of_numerics_only_refused(demo_corpus, tmp_path) -> None:
    """HR and SpO2 at one value a minute: no waveform IOD takes either; one line, no file."""
    rel = next(r for r, kind in demo_corpus.broken.items() if kind == "numerics_only")
    proc = run_cli("convert", str(demo_corpus.root / rel), "-o", str(tmp_path) + "/",
                   "--acquisition-datetime", "2100-01-01T00:00:00")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert "no signal of the record fits a DICOM waveform IOD: HR: numeric" in proc.stderr
    assert not list(tmp_path.iterdir())


def test_seed_function_and_pickle(demo_corpus, tmp_path) -> None:
    """The seed's API with its preprocessed df_info (swapped filter names)."""
    df = pd.read_csv(demo_corpus.machine_measurements_csv)
    df_info = df[["subject_id", "study_id", "cart_id", "ecg_time", "bandwidth"]].copy()
    df_info["lowpassfilter"] = df_info["bandwidth"].str.split("-").str[0].str.strip()
    df_info["highpassfilter"] = (df_info["bandwidth"].str.split("-").str[1]
                                 .str.replace("Hz", "").str.strip())
    df_info = df_info.drop(columns=["bandwidth"])
    rel = demo_corpus.good[0]
    out = wfdb_to_dicom_ecg_phase1(str(demo_corpus.root / rel), str(tmp_path / "s.dcm"), df_info)
    ds = pydicom.dcmread(out)
    row = df_info[df_info.study_id == int(Path(rel).name)].iloc[0]
    assert ds.PatientID == str(row.subject_id)
    item = ds.WaveformSequence[0].ChannelDefinitionSequence[0]
    assert float(item.FilterLowFrequency) == float(row.lowpassfilter)
    assert float(item.FilterHighFrequency) == float(row.highpassfilter)
    pkl = tmp_path / "info.pkl"
    df_info.to_pickle(pkl)
    proc = run_cli("convert", str(demo_corpus.root / rel), "-o", str(tmp_path / "p.dcm"),
                   "--metadata", str(pkl))
    assert proc.returncode == 0 and "pickle" in proc.stderr
    assert (tmp_path / "p.dcm").read_bytes() == Path(out).read_bytes()


def test_uids_are_deterministic_across_processes() -> None:
    """UIDs must not depend on the process (pydicom's generate_uid(None, ...) is random)."""
    code = ("from wfdb2dicom.uids import derive_uid; "
            "print(derive_uid('study', '40689238'), derive_uid('study', '40689238', '1.2.3'))")
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout for _ in range(2)}
    assert len(runs) == 1
    default, rooted = runs.pop().split()
    assert default.startswith("2.25.") and rooted.startswith("1.2.3.")


def test_uuid5_fast_path_equals_standard_library() -> None:
    import uuid

    from wfdb2dicom.uids import NAMESPACE, uuid5_int

    for name in ["", "a", "wfdb2dicom|study|40689238", "é" * 40, "x" * 1000]:
        assert uuid5_int(name) == uuid.uuid5(NAMESPACE, name).int
