"""DICOM ECG (ours and vendors') -> WFDB: bit-exact samples, lead names, scale, time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import wfdb
from pydicom.data import get_testdata_file
from pydicom.waveforms import multiplex_array

from wfdb2dicom.convert import convert_record
from wfdb2dicom.dicom_ecg import read_dicom_ecg
from wfdb2dicom.to_wfdb import dicom_to_wfdb

STANDARD = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]


def vendor_objects(shared_data: Path) -> list[Path]:
    return [shared_data / "dicom" / "anonymous_ecg.dcm",
            Path(get_testdata_file("waveform_ecg.dcm"))]


def physical(ds: pydicom.Dataset, group: int) -> np.ndarray:
    return multiplex_array(ds, group, as_raw=False)


@pytest.mark.parametrize("which", [0, 1], ids=["mortara", "pydicom-waveform_ecg"])
def test_vendor_objects_round_trip_group_1(shared_data: Path, tmp_path: Path, which: int) -> None:
    source = vendor_objects(shared_data)[which]
    ds = pydicom.dcmread(source)
    written = dicom_to_wfdb(source, tmp_path)
    assert len(written) == len(ds.WaveformSequence)
    record = wfdb.rdrecord(str(written[0]), physical=False)
    np.testing.assert_array_equal(record.d_signal, multiplex_array(ds, 0, as_raw=True))
    assert record.sig_name == STANDARD  # from the SCPECG / MDC channel source codes
    scaled = wfdb.rdrecord(str(written[0]))
    units = {i.ChannelSensitivityUnitsSequence[0].CodeValue
             for i in ds.WaveformSequence[0].ChannelDefinitionSequence}
    assert set(scaled.units) == units
    np.testing.assert_allclose(scaled.p_signal, physical(ds, 0), rtol=1e-9, atol=1e-6)
    moment = read_dicom_ecg(source).acquisition_datetime
    assert (scaled.base_date, scaled.base_time.replace(microsecond=0)) == (
        moment.date(), moment.time().replace(microsecond=0))


def test_our_objects_round_trip(demo_corpus, demo_metadata, tmp_path: Path) -> None:
    """WFDB -> our DICOM -> WFDB gives the original samples, names and physical values."""
    for rel in demo_corpus.good[:4]:
        original = demo_corpus.root / rel
        dcm = convert_record(original, tmp_path / f"{Path(rel).name}.dcm", demo_metadata)
        back = dicom_to_wfdb(dcm, tmp_path / "back")[0]
        a = wfdb.rdrecord(str(original), physical=False)
        b = wfdb.rdrecord(str(back), physical=False)
        np.testing.assert_array_equal(b.d_signal, a.d_signal)
        assert b.sig_name == a.sig_name
        pa, pb = wfdb.rdrecord(str(original)).p_signal, wfdb.rdrecord(str(back)).p_signal
        np.testing.assert_allclose(pb, pa, rtol=1e-9, equal_nan=True)


def test_cli_refuses_non_dicom_with_one_line(tmp_path: Path) -> None:
    bogus = tmp_path / "not.dcm"
    bogus.write_text("hello")
    proc = subprocess.run([sys.executable, "-m", "wfdb2dicom.cli", "to-wfdb", str(bogus), "-o",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("out/*.hea"))
