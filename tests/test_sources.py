"""Metadata sources beyond MIMIC-IV-ECG: PTB-XL's table and the Challenge's header comments.

Every mapped attribute is asserted on synthetic corpora of each shape (synthetic.py), and
every object is judged by dciodvfy.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from conftest import require_tool
from wfdb2dicom.builder import ConversionOptions
from wfdb2dicom.convert import convert_record, record_to_dataset
from wfdb2dicom.errors import ConversionError, MetadataError
from wfdb2dicom.metadata import MetadataTable, StudyMetadata
from wfdb2dicom.sources import detect_source, resolve_format
from wfdb2dicom.sources.header import header_metadata, with_header
from wfdb2dicom.sources.ptbxl import PTB_XL
from wfdb2dicom.sources.snomed import concept_names
from wfdb2dicom.synthetic import (
    generate_challenge_corpus,
    generate_corpus,
    generate_ptbxl_corpus,
)
from wfdb2dicom.validate import run_dciodvfy

TWELVE_LEAD = "1.2.840.10008.5.1.4.1.1.9.1.1"
AMBULATORY = "1.2.840.10008.5.1.4.1.1.9.1.3"
AUGMENTED = {"AVR": "2:62", "AVL": "2:63", "AVF": "2:64",
             "aVR": "2:62", "aVL": "2:63", "aVF": "2:64"}


@pytest.fixture(scope="module")
def ptbxl(tmp_path_factory):
    return generate_ptbxl_corpus(tmp_path_factory.mktemp("ptbxl"), 6)


@pytest.fixture(scope="module")
def ptbxl_rows(ptbxl):
    with open(ptbxl.table_csv, newline="", encoding="utf-8") as handle:
        return {row["ecg_id"]: row for row in csv.DictReader(handle)}


@pytest.fixture(scope="module")
def ptbxl_objects(ptbxl, tmp_path_factory):
    """Each record of the corpus converted with the table: (ecg_id, rel) -> file path."""
    table = MetadataTable.load(ptbxl.table_csv)
    out = tmp_path_factory.mktemp("ptbxl_out")
    objects = {}
    for rel in ptbxl.records:
        ecg_id = str(int(Path(rel).name.split("_")[0]))
        objects[ecg_id, rel] = convert_record(ptbxl.root / rel, out / f"{Path(rel).name}.dcm",
                                              table, study_id=ecg_id)
    return objects


@pytest.fixture(scope="module")
def challenge(tmp_path_factory):
    return generate_challenge_corpus(tmp_path_factory.mktemp("challenge"), 3)


CHALLENGE_TIME = ConversionOptions(acquisition_datetime=dt.datetime(2020, 2, 5, 11, 39, 16))
"""The Challenge's headers give no acquisition time (see test_challenge_record_line)."""


@pytest.fixture(scope="module")
def challenge_objects(challenge, tmp_path_factory):
    out = tmp_path_factory.mktemp("challenge_out")
    return {rel: convert_record(challenge.root / rel, out / f"{rel}.dcm",
                                options=CHALLENGE_TIME)
            for rel in challenge.records}


def _statements(ds) -> list[str]:
    return [str(item.UnformattedTextValue) for item in ds.get("WaveformAnnotationSequence", [])
            if "UnformattedTextValue" in item]


def _coded(ds) -> list[tuple[str, str, str]]:
    return [(str(c.CodeValue), str(c.CodingSchemeDesignator), str(c.CodeMeaning))
            for item in ds.get("WaveformAnnotationSequence", [])
            if "ConceptCodeSequence" in item for c in item.ConceptCodeSequence]


# --- PTB-XL ---------------------------------------------------------------------------


def test_ptbxl_table_is_detected_by_its_columns(ptbxl):
    assert resolve_format(ptbxl.table_csv) == "ptbxl"
    assert MetadataTable.load(ptbxl.table_csv).source is PTB_XL


def test_ptbxl_patient_attributes(ptbxl_objects, ptbxl_rows):
    for (ecg_id, _rel), path in ptbxl_objects.items():
        ds = pydicom.dcmread(path)
        row = ptbxl_rows[ecg_id]
        assert ds.PatientID == str(int(float(row["patient_id"])))  # 15709.0 -> 15709
        age = int(float(row["age"]))
        assert ds.PatientAge == ("090Y" if age >= 90 else f"{age:03d}Y")
        assert ds.PatientSex == {"0": "M", "1": "F"}[row["sex"]]
        if row["height"]:
            assert float(ds.PatientSize) == pytest.approx(float(row["height"]) / 100)
        else:
            assert "PatientSize" not in ds
        if row["weight"]:
            assert float(ds.PatientWeight) == float(row["weight"])
        else:
            assert "PatientWeight" not in ds
        moment = dt.datetime.fromisoformat(row["recording_date"])
        assert ds.AcquisitionDateTime == moment.strftime("%Y%m%d%H%M%S")
        assert ds.StudyDate == moment.strftime("%Y%m%d")
        assert ds.ManufacturerModelName == row["device"]
        assert ds.StudyID == ecg_id


def test_ptbxl_age_over_89_is_090Y_never_300Y(ptbxl_objects, ptbxl_rows):
    old = [key for key in ptbxl_objects if float(ptbxl_rows[key[0]]["age"]) == 300]
    assert old, "the corpus must hold a PTB-XL age of 300"
    for key in old:
        assert pydicom.dcmread(ptbxl_objects[key]).PatientAge == "090Y"


def test_ptbxl_report_and_scp_codes_are_text_statements(ptbxl_objects, ptbxl_rows):
    ds = pydicom.dcmread(ptbxl_objects["1", "records500/00000/00001_hr"])
    assert ptbxl_rows["1"]["scp_codes"] == "{'NORM': 100.0, 'LVOFF': 0.0, 'SR': 0.0}"
    # The report first, then one statement per code; a likelihood of 0 is "not given".
    assert _statements(ds) == [ptbxl_rows["1"]["report"], "NORM 100%", "LVOFF", "SR"]
    ds3 = pydicom.dcmread(ptbxl_objects["3", "records500/00000/00003_hr"])
    assert _statements(ds3)[1:] == ["IMI 80%", "ABQRS", "SR"]


def test_ptbxl_uids_one_study_two_objects(ptbxl_objects):
    for ecg_id in ("1", "2"):
        hr = pydicom.dcmread(ptbxl_objects[ecg_id, f"records500/00000/0000{ecg_id}_hr"])
        lr = pydicom.dcmread(ptbxl_objects[ecg_id, f"records100/00000/0000{ecg_id}_lr"])
        assert hr.StudyInstanceUID == lr.StudyInstanceUID
        assert hr.SOPInstanceUID != lr.SOPInstanceUID
    uids = {pydicom.dcmread(p).SOPInstanceUID for p in ptbxl_objects.values()}
    studies = {pydicom.dcmread(p).StudyInstanceUID for p in ptbxl_objects.values()}
    assert len(uids) == len(ptbxl_objects) and len(studies) == len(ptbxl_objects) // 2


def test_ptbxl_leads_and_iods(ptbxl_objects):
    for (_, rel), path in ptbxl_objects.items():
        ds = pydicom.dcmread(path)
        group = ds.WaveformSequence[0]
        # 100 Hz is below the 12-lead and General ECG IODs' 200 Hz: Ambulatory ECG takes it.
        assert ds.SOPClassUID == (AMBULATORY if rel.startswith("records100") else TWELVE_LEAD)
        assert float(group.SamplingFrequency) == (100 if rel.startswith("records100") else 500)
        for channel in group.ChannelDefinitionSequence:
            if channel.ChannelLabel in AUGMENTED:
                code = channel.ChannelSourceSequence[0]
                assert code.CodeValue == AUGMENTED[channel.ChannelLabel]
                assert code.CodingSchemeDesignator == "MDC"


def test_ptbxl_objects_pass_dciodvfy(ptbxl_objects):
    require_tool("dciodvfy")
    for path in ptbxl_objects.values():
        report = run_dciodvfy(path)
        assert report.clean, (path, report.errors, report.warnings)


def test_ptbxl_batch_takes_the_table_as_its_input_list(ptbxl, tmp_path):
    """``--input_csv ptbxl_database.csv --df_info_pkl ptbxl_database.csv --study_id_col
    ecg_id --path_col filename_hr``, no preprocessing."""
    output_csv = tmp_path / "out.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "wfdb2dicom.cli", "batch", "--input_csv", str(ptbxl.table_csv),
         "--df_info_pkl", str(ptbxl.table_csv), "--study_id_col", "ecg_id", "--path_col",
         "filename_hr", "--wfdb_dir", str(ptbxl.root), "--dcm_dir", str(tmp_path / "dcm"),
         "--output_csv", str(output_csv), "--workers", "1", "--no-progress"],
        capture_output=True, text=True, timeout=300, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr
    with open(output_csv, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6 and all(not row["dcm_error"] for row in rows)
    ds = pydicom.dcmread(tmp_path / "dcm" / "records500/00000/00003_hr.dcm")
    assert (ds.PatientID, ds.PatientAge, ds.StudyID) == ("15783", "090Y", "3")
    direct = record_to_dataset(ptbxl.root / "records500/00000/00003_hr",
                               MetadataTable.load(ptbxl.table_csv), study_id="3")
    assert ds.SOPInstanceUID == direct.SOPInstanceUID


def test_scp_codes_are_read_as_literals_only():
    for bad in ("__import__('os').system('true')", "{'NORM': 'high'}", "[1, 2]", "{'A': "):
        with pytest.raises(MetadataError, match="scp_codes"):
            PTB_XL.from_row({"ecg_id": "1", "scp_codes": bad})
    with pytest.raises(MetadataError, match="recording_date"):
        PTB_XL.from_row({"ecg_id": "1", "recording_date": "yesterday"})


# --- Challenge headers ----------------------------------------------------------------


def test_challenge_age_sex(challenge_objects):
    by_record = {rel: pydicom.dcmread(path) for rel, path in challenge_objects.items()}
    assert (by_record["E00001"].PatientAge, by_record["E00001"].PatientSex) == ("074Y", "M")
    assert (by_record["E00002"].PatientAge, by_record["E00002"].PatientSex) == ("090Y", "F")
    assert "PatientAge" not in by_record["E00003"]  # Age: NaN
    assert by_record["E00003"].PatientSex == ""  # Sex: Unknown (Type 2: empty)


def test_challenge_dx_are_coded_sct_statements(challenge_objects):
    names = concept_names()
    first = pydicom.dcmread(challenge_objects["E00001"])
    assert _coded(first) == [("59118001", "SCT", "right bundle branch block"),
                             ("164889003", "SCT", "atrial fibrillation")]
    assert names["59118001"] == "right bundle branch block"
    items = [i for i in first.WaveformAnnotationSequence if "ConceptCodeSequence" in i]
    assert all(i.ConceptNameCodeSequence[0].CodeValue == "121071" for i in items)
    # A code the Challenge's table lacks has the code itself as its meaning.
    third = pydicom.dcmread(challenge_objects["E00003"])
    assert "164861001" not in names
    assert _coded(third) == [("164861001", "SCT", "164861001"),
                             ("270492004", "SCT", "1st degree av block")]


def test_challenge_rx_hx_sx_text_statements_except_unknown(challenge_objects):
    assert _statements(pydicom.dcmread(challenge_objects["E00001"])) == []
    assert _statements(pydicom.dcmread(challenge_objects["E00002"])) == [
        "Hx: Hypertension", "Sx: Chest pain"]


def test_challenge_objects_pass_dciodvfy(challenge_objects):
    require_tool("dciodvfy")
    for path in challenge_objects.values():
        report = run_dciodvfy(path)
        assert report.clean, (path, report.errors, report.warnings)


def test_table_wins_over_header(challenge):
    table = StudyMetadata(study_id="E00001", subject_id="p7", patient_age=51,
                          patient_sex="F", reports=("from the table",))
    ds = record_to_dataset(challenge.root / "E00001", table, options=CHALLENGE_TIME)
    assert (ds.PatientID, ds.PatientAge, ds.PatientSex) == ("p7", "051Y", "F")
    # What the table lacks still comes from the header: the coded Dx.
    assert [code for code, _, _ in _coded(ds)] == ["59118001", "164889003"]
    assert _statements(ds) == ["from the table"]


def test_header_comments_mimic_style_and_ages_over_89():
    assert header_metadata(("<age>: 38 <sex>: M",)).patient_age == 38
    assert header_metadata(("<age>: 38 <sex>: M",)).patient_sex == "M"
    assert header_metadata(("some note",)) is None
    merged = with_header(None, ("Age: 300", "Sex: Female"))
    assert (merged.patient_age, merged.patient_sex) == (300, "F")


def test_header_age_300_is_090Y(challenge, tmp_path):
    hea = (challenge.root / "E00001.hea").read_text().replace("#Age: 74", "#Age: 300")
    (tmp_path / "E00001.hea").write_text(hea)
    (tmp_path / "E00001.dat").write_bytes((challenge.root / "E00001.dat").read_bytes())
    assert record_to_dataset(tmp_path / "E00001",
                             options=CHALLENGE_TIME).PatientAge == "090Y"


# --- Detection and the override -------------------------------------------------------


def test_metadata_format_override_and_refusal(ptbxl, tmp_path):
    assert detect_source(["study_id", "report_0"]).name == "mimic"
    assert detect_source(["ecg_id", "scp_codes", "patient_id"]).name == "ptbxl"
    with pytest.raises(ConversionError, match="no study_id column"):
        MetadataTable.load(ptbxl.table_csv, "mimic")
    with pytest.raises(ConversionError, match="no ecg_id column"):
        detect_source(["study_id"], "ptbxl")
    proc = subprocess.run(
        [sys.executable, "-m", "wfdb2dicom.cli", "convert",
         str(ptbxl.root / "records500/00000/00001_hr"), "-o", str(tmp_path / "x.dcm"),
         "--metadata", str(ptbxl.table_csv), "--metadata-format", "mimic", "--study-id", "1"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "no study_id column" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.dcm").exists()


def test_mimic_uids_keep_their_names(tmp_path):
    """MIMIC names each record by its study_id: its SOP Instance UID is derived from the
    study_id alone, as always."""
    from wfdb2dicom.uids import derive_uid

    corpus = generate_corpus(tmp_path / "m", 2, broken=False)
    table = MetadataTable.load(corpus.machine_measurements_csv)
    for rel in corpus.good:
        ds = record_to_dataset(corpus.root / rel, table)
        assert ds.SOPInstanceUID == derive_uid("instance", Path(rel).name)
        assert ds.StudyInstanceUID == derive_uid("study", Path(rel).name)


def test_fast_encoder_equals_pydicom_on_other_sources(ptbxl, challenge):
    """Coded statements and the new attributes go through the fast encoder byte for byte as
    pydicom writes them."""
    from wfdb2dicom.convert import convert_to_bytes, encode_dataset

    table = MetadataTable.load(ptbxl.table_csv)
    for rel in ptbxl.records[:4]:
        ecg_id = str(int(Path(rel).name.split("_")[0]))
        assert convert_to_bytes(ptbxl.root / rel, table, study_id=ecg_id) == encode_dataset(
            record_to_dataset(ptbxl.root / rel, table, study_id=ecg_id))
    for rel in challenge.records:
        assert convert_to_bytes(challenge.root / rel, None, options=CHALLENGE_TIME) == (
            encode_dataset(record_to_dataset(challenge.root / rel, options=CHALLENGE_TIME)))


def test_challenge_record_line(challenge, tmp_path):
    """``E00001 12 500 5000 05-May-2020 14:50:55``: a date where WFDB has the base time, in no
    WFDB form. The record converts; that date is not taken for the acquisition time."""
    first_line = (challenge.root / "E00001.hea").read_text().splitlines()[0]
    assert first_line.split()[4:] == ["05-May-2020", "14:50:55"]
    with pytest.raises(MetadataError, match="no acquisition time"):
        record_to_dataset(challenge.root / "E00001")
    assert record_to_dataset(challenge.root / "E00001",
                             options=CHALLENGE_TIME).AcquisitionDateTime == "20200205113916"


def test_demo_ptbxl(tmp_path):
    """``wfdb2dicom demo --dataset ptbxl``: the corpus is written and every row converts."""
    proc = subprocess.run([sys.executable, "-m", "wfdb2dicom.cli", "demo", str(tmp_path),
                           "--dataset", "ptbxl", "-n", "3", "--workers", "1"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "demo: 0 of 3 rows failed" in proc.stdout
    assert (tmp_path / "ptb-xl" / "ptbxl_database.csv").is_file()
    assert sorted(p.name for p in (tmp_path / "dicom").rglob("*.dcm")) == [
        "00001_hr.dcm", "00002_hr.dcm", "00003_hr.dcm"]


def test_ptbxl_record_name_gives_its_ecg_id(ptbxl, ptbxl_objects):
    """``convert records100/00000/00003_lr --metadata ptbxl_database.csv``, no --study-id:
    the table's source makes ecg_id 3 of the record name, the same object as with it."""
    table = MetadataTable.load(ptbxl.table_csv)
    for rel in ("records100/00000/00003_lr", "records500/00000/00003_hr"):
        ds = record_to_dataset(ptbxl.root / rel, table)
        assert ds.StudyID == "3" and ds.PatientAge == "090Y"
        assert ds.SOPInstanceUID == pydicom.dcmread(ptbxl_objects["3", rel]).SOPInstanceUID


def test_metadata_format_choices_are_the_sources():
    from wfdb2dicom.cli_options import METADATA_FORMATS
    from wfdb2dicom.sources import source_names

    assert METADATA_FORMATS == ("auto", *source_names())
