"""``wfdb2dicom validate``: every object the tool writes passes it, and it catches what breaks
an IOD's constraints or what dciodvfy objects to, also for the IODs dciodvfy does not know."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from conftest import require_tool
from wfdb2dicom.cli import main
from wfdb2dicom.iods import by_sop_class
from wfdb2dicom.validate import (
    DCIODVFY_KNOWN_SOP_CLASSES,
    dciodvfy_conformance,
    iod_problems,
    run_dciodvfy,
)

WHEN = "2000-01-01T00:00:00"


@pytest.fixture(scope="module")
def objects(challenge_record: Path, shared_data: Path,
            tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One object of each IOD we write, by IOD name: the ICU record gives General ECG,
    Hemodynamic, Arterial Pulse and Multi-channel Respiratory; binformats General 32-bit ECG
    (samples over 16 bits); 041s01 12-lead ECG; s0010_re
    General ECG (15 leads); 3000003_0003 Ambulatory ECG (125 Hz); mixedsignals a Respiratory
    object (one channel at 62.5 Hz)."""
    out = tmp_path_factory.mktemp("validate")
    records = [challenge_record, shared_data / "physionet/wfdb-python/binformats",
               shared_data / "physionet/wfdb-python/multi-segment/041s/041s01",
               shared_data / "physionet/s0010_re", shared_data / "physionet/3000003_0003",
               shared_data / "physionet/wfdb-python/mixedsignals"]
    by_iod: dict[str, Path] = {}
    for index, record in enumerate(records):
        target = f"{out}/{index}/"
        assert main(["convert", str(record), "-o", str(target), "--acquisition-datetime",
                     WHEN]) == 0
        for path in sorted(Path(target).iterdir()):
            by_iod.setdefault(by_sop_class(pydicom.dcmread(path).SOPClassUID).name, path)
    return by_iod


def test_objects_of_every_iod_pass_validate(objects: dict[str, Path], capsys) -> None:
    require_tool("dciodvfy")
    assert set(objects) == {"12-lead ECG", "General ECG", "Ambulatory ECG", "General 32-bit ECG",
                            "Hemodynamic", "Arterial Pulse", "Respiratory",
                            "Multi-channel Respiratory"}
    capsys.readouterr()
    assert main(["validate", *map(str, objects.values())]) == 0, capsys.readouterr().out
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(objects) and all(line.startswith("OK") for line in lines)


def test_dciodvfy_does_not_know_the_iods_checked_relabelled(objects: dict[str, Path]) -> None:
    """The premise of the re-labelled check: dciodvfy cannot judge these IODs itself."""
    require_tool("dciodvfy")
    unknown = [p for p in objects.values()
               if pydicom.dcmread(p).SOPClassUID not in DCIODVFY_KNOWN_SOP_CLASSES]
    assert len(unknown) >= 3
    for path in unknown:
        assert "Information Object Not found" in run_dciodvfy(path).output


@pytest.mark.parametrize("iod_name", ["Arterial Pulse", "General 32-bit ECG"])
def test_relabelled_check_finds_a_missing_type_2_attribute(
        objects: dict[str, Path], iod_name: str, tmp_path: Path, capsys) -> None:
    require_tool("dciodvfy")
    ds = pydicom.dcmread(objects[iod_name])
    del ds.PatientBirthDate  # Type 2 in the Patient module every waveform IOD shares
    broken = tmp_path / "broken.dcm"
    ds.save_as(broken)
    report = dciodvfy_conformance(broken)
    assert not report.clean and any("PatientBirthDate" in e for e in report.errors)
    assert main(["validate", str(broken)]) == 1
    assert capsys.readouterr().out.startswith(f"FAIL {broken}: dciodvfy")


def _break_modality(ds: pydicom.Dataset) -> None:
    ds.Modality = "ECG"


def _break_source(ds: pydicom.Dataset) -> None:
    source = ds.WaveformSequence[0].ChannelDefinitionSequence[0].ChannelSourceSequence[0]
    source.CodeValue = "2:1"  # lead I: CID 3001, not the IOD's own context group


def _break_bits_stored(ds: pydicom.Dataset) -> None:
    ds.WaveformSequence[0].ChannelDefinitionSequence[0].WaveformBitsStored = 2


def _break_frequency(ds: pydicom.Dataset) -> None:
    ds.WaveformSequence[0].SamplingFrequency = "5000"


def _break_interpretation(ds: pydicom.Dataset) -> None:
    ds.WaveformSequence[0].WaveformSampleInterpretation = "UB"


@pytest.mark.parametrize("breaks, phrase", [
    (_break_modality, "Modality"), (_break_source, "channel source"),
    (_break_bits_stored, "Bits Stored"), (_break_frequency, "sampling frequency"),
    (_break_interpretation, "sample interpretation"),
])
@pytest.mark.parametrize("iod_name", ["Arterial Pulse", "Hemodynamic", "Respiratory"])
def test_iod_constraints_are_checked(objects: dict[str, Path], iod_name: str, breaks,
                                     phrase: str) -> None:
    ds = pydicom.dcmread(objects[iod_name])
    assert iod_problems(ds) == []
    breaks(ds)
    problems = iod_problems(ds)
    assert problems and phrase in problems[0], problems


def test_validate_copes_with_a_file_that_is_not_dicom(tmp_path: Path, capsys) -> None:
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not DICOM")
    assert main(["validate", "--no-dciodvfy", str(junk)]) == 1
    assert capsys.readouterr().out.startswith(f"FAIL {junk}:")

