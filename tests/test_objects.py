"""One record, several objects: one per IOD, per segment and per part, named by what they
hold; every object checked against its IOD, dciodvfy and wfdb's own reading."""

from __future__ import annotations

import datetime as dt
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import wfdb
from pydicom.waveforms import multiplex_array
from test_reader import SHARED_RECORDS, _signal_files_present, _wfdb_segments
from waveform_checks import assert_dciodvfy_clean, assert_meets_own_iod, raw_samples

from conftest import REPO_ROOT
from wfdb2dicom.builder import ConversionOptions, SeveralObjects, study_id_fields
from wfdb2dicom.convert import (
    convert_many_to_parts,
    convert_to_bytes,
    wfdb_to_dicom_ecg_phase1,
    write_record,
)
from wfdb2dicom.iods import by_sop_class
from wfdb2dicom.signal_classes import SignalClass, classify
from wfdb2dicom.uids import derive_uid

WHEN = dt.datetime(2000, 1, 1)
OPTIONS = ConversionOptions(acquisition_datetime=WHEN)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env_path = str(REPO_ROOT / "src")
    return subprocess.run([sys.executable, "-m", "wfdb2dicom.cli", *args], capture_output=True,
                          text=True, timeout=300, env={"PYTHONPATH": env_path, "PATH": "/usr/bin"})


def converted(record: Path, options: ConversionOptions = OPTIONS):
    (result,) = convert_many_to_parts([(record, None, None)], options=options)
    if isinstance(result, Exception):
        raise result
    return [(obj.info, b"".join(obj.parts)) for obj in result.objects], result.left_out


# --- a Challenge false-alarm-like ICU record: II, V, ABP, PLETH, RESP -------------------


def test_icu_record_makes_one_object_per_iod(challenge_record: Path, tmp_path: Path) -> None:
    proc = run_cli("convert", str(challenge_record), "-o", f"{tmp_path}/out/",
                   "--acquisition-datetime", "2000-01-01T00:00:00")
    assert proc.returncode == 0, proc.stderr
    paths = [Path(line) for line in proc.stdout.splitlines()]
    assert [p.name for p in paths] == [
        "a103l_s0001_p001_ecg.dcm", "a103l_s0001_p001_hd.dcm", "a103l_s0001_p001_pulse.dcm",
        "a103l_s0001_p001_resp.dcm"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [p.name for p in paths]
    datasets = [pydicom.dcmread(p) for p in paths]
    assert [by_sop_class(ds.SOPClassUID).name for ds in datasets] == [
        "General ECG", "Hemodynamic", "Arterial Pulse", "Multi-channel Respiratory"]
    assert [ds.Modality for ds in datasets] == ["ECG", "HD", "HD", "RESP"]
    channels = [[c.ChannelLabel for g in ds.WaveformSequence for c in g.ChannelDefinitionSequence]
                for ds in datasets]
    assert channels == [["II", "V"], ["ABP"], ["PLETH"], ["RESP"]]
    assert len({ds.StudyInstanceUID for ds in datasets}) == 1
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 4  # HD and pulse: two Series
    assert len({ds.SeriesNumber for ds in datasets}) == 4
    assert len({ds.SOPInstanceUID for ds in datasets}) == 4
    expected = wfdb.rdrecord(str(challenge_record), physical=False)
    physical = wfdb.rdrecord(str(challenge_record))
    for ds, path in zip(datasets, paths, strict=True):
        assert_meets_own_iod(ds)
        assert_dciodvfy_clean(path, tmp_path)
        assert ds.AcquisitionDateTime == "20000101000000"
        group = ds.WaveformSequence[0]
        for index, channel in enumerate(group.ChannelDefinitionSequence):
            column = expected.sig_name.index(channel.ChannelLabel)
            np.testing.assert_array_equal(raw_samples(group)[:, index],
                                          expected.d_signal[:, column])
            ours = multiplex_array(ds, 0, as_raw=False)[:, index]
            theirs = physical.p_signal[:, column]
            known = ~np.isnan(theirs)
            np.testing.assert_allclose(ours[known], theirs[known], rtol=1e-9, atol=1e-9)
    # the gap in ABP is declared as padding, bit-exact
    assert datasets[1].WaveformSequence[0].WaveformPaddingValue == b"\x00\x80"


def test_several_objects_to_one_file_refused(challenge_record: Path, tmp_path: Path) -> None:
    out = tmp_path / "a103l.dcm"
    proc = run_cli("convert", str(challenge_record), "-o", str(out),
                   "--acquisition-datetime", "2000-01-01T00:00:00")
    assert proc.returncode == 2
    assert "give a directory: convert RECORD -o DIR/" in proc.stderr
    assert proc.stderr.count("\n") == 1 and not out.exists()
    assert not list(tmp_path.iterdir())


def test_seed_function_points_to_a_directory(challenge_record: Path, tmp_path: Path) -> None:
    import pandas as pd

    frame = pd.DataFrame({"study_id": ["a103l"], "subject_id": [1],
                          "ecg_time": ["2000-01-01 00:00:00"]})
    with pytest.raises(SeveralObjects, match=r"convert RECORD -o DIR/"):
        wfdb_to_dicom_ecg_phase1(str(challenge_record), str(tmp_path / "x.dcm"), frame)
    assert not (tmp_path / "x.dcm").exists()


def test_max_duration_splits_into_consecutive_parts(challenge_record: Path,
                                                    tmp_path: Path) -> None:
    """Parts are consecutive in time, name and samples; the acquisition time of each is
    the record's start plus its offset."""
    objects, _ = converted(challenge_record, ConversionOptions(acquisition_datetime=WHEN,
                                                               max_duration=60))
    assert len(objects) == 4 * 5
    names = [f"{o.segment:04d}{o.part:03d}{o.file_suffix}" for o, _ in objects]
    assert names == sorted(names)
    expected = wfdb.rdrecord(str(challenge_record), physical=False)
    uids = set()
    for suffix, labels in (("ecg", ["II", "V"]), ("hd", ["ABP"]), ("resp", ["RESP"])):
        parts = [(info, pydicom.dcmread(pydicom.filebase.DicomBytesIO(data)))
                 for info, data in objects if info.file_suffix == suffix]
        assert [info.part for info, _ in parts] == [1, 2, 3, 4, 5]
        for info, ds in parts:
            start = WHEN + dt.timedelta(seconds=60 * (info.part - 1))
            assert ds.AcquisitionDateTime == start.strftime("%Y%m%d%H%M%S")
            assert info.start == start
            assert ds.WaveformSequence[0].NumberOfWaveformSamples == 15000
            assert_meets_own_iod(ds)
            uids.add(ds.SOPInstanceUID)
        whole = np.concatenate([raw_samples(ds.WaveformSequence[0]) for _, ds in parts])
        columns = [expected.sig_name.index(label) for label in labels]
        np.testing.assert_array_equal(whole, expected.d_signal[:, columns])
    assert len(uids) == 15


def test_parts_are_views_of_the_samples(challenge_record: Path) -> None:
    from wfdb2dicom.builder import plan_record
    from wfdb2dicom.reader import read_record

    record = read_record(challenge_record)
    plan = plan_record(record, options=ConversionOptions(acquisition_datetime=WHEN,
                                                         max_duration=100))
    ecg = [o.plan.samples[0] for o in plan.objects if o.file_suffix == "ecg"]
    assert len(ecg) == 3
    assert all(part.base is not None and part.flags.c_contiguous for part in ecg)
    assert np.shares_memory(ecg[0], ecg[1].base)  # one array for the three parts


def test_deterministic_and_distinct_uids(challenge_record: Path, physionet_dir: Path) -> None:
    first, _ = converted(challenge_record)
    second, _ = converted(challenge_record)
    assert [data for _, data in first] == [data for _, data in second]
    segments, _ = converted(physionet_dir / "wfdb-python/multi-segment/041s/041s")
    uids = [pydicom.dcmread(pydicom.filebase.DicomBytesIO(data)).SOPInstanceUID
            for _, data in first + segments]
    assert len(uids) == len(set(uids)) == 4 + 8


def test_left_out_signal_is_noted_and_record_still_converts(uterine_record: Path,
                                                            tmp_path: Path) -> None:
    """UC without units (WFDB: mV) is a uterine contraction, never an ECG lead."""
    assert classify("UC", "mV") is SignalClass.UTERINE
    proc = run_cli("convert", str(uterine_record), "-o", str(tmp_path / "uc.dcm"),
                   "--acquisition-datetime", "2000-01-01T00:00:00")
    assert proc.returncode == 0, proc.stderr
    assert "signal 'UC' (segment 1) left out: uc signal: no DICOM waveform IOD" in proc.stderr
    ds = pydicom.dcmread(tmp_path / "uc.dcm")
    labels = [c.ChannelLabel for c in ds.WaveformSequence[0].ChannelDefinitionSequence]
    assert labels == ["II"]
    proc = run_cli("convert", str(uterine_record), "-o", str(tmp_path / "both.dcm"),
                   "--acquisition-datetime", "2000-01-01T00:00:00", "--signal-class", "UC=ecg")
    assert proc.returncode == 0, proc.stderr
    ds = pydicom.dcmread(tmp_path / "both.dcm")
    assert [c.ChannelLabel for c in ds.WaveformSequence[0].ChannelDefinitionSequence] == [
        "II", "UC"]


def test_signal_class_override_leaves_a_signal_out(challenge_record: Path) -> None:
    objects, left_out = converted(challenge_record, ConversionOptions(
        acquisition_datetime=WHEN, signal_classes=(("PLETH", SignalClass.OTHER),)))
    assert [o.file_suffix for o, _ in objects] == ["ecg", "hd", "resp"]
    assert [(s.label, s.reason) for s in left_out] == [
        ("PLETH", "other signal: no DICOM waveform IOD for it")]


# --- -o as a directory or a file ---------------------------------------------------------


def test_output_to_new_and_existing_directories(physionet_dir: Path, tmp_path: Path) -> None:
    """Before: ``-o newdir/`` wrote a file named newdir, ``-o existingdir/`` exited 3."""
    new = tmp_path / "new"
    at = ("--acquisition-datetime", "2000-01-01T00:00:00")
    proc = run_cli("convert", str(physionet_dir / "100"), "-o", f"{new}/", *at)
    assert proc.returncode == 0, proc.stderr
    assert new.is_dir() and proc.stdout == f"{new}/100.dcm\n"
    existing = tmp_path / "existing"
    existing.mkdir()
    for target in (f"{existing}/", str(existing)):
        proc = run_cli("convert", str(physionet_dir / "100"), "-o", target, *at)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == f"{existing}/100.dcm\n"


def test_failed_record_leaves_no_file_in_directory(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = run_cli("convert", str(tmp_path / "missing"), "-o", f"{out}/")
    assert proc.returncode == 2 and "missing header" in proc.stderr
    assert not out.exists() or not list(out.iterdir())


# --- Study ID -----------------------------------------------------------------------------


def test_long_study_key_never_refuses(physionet_dir: Path, tmp_path: Path) -> None:
    key = "p000878-2137-10-26-16-57"
    study_id, description = study_id_fields(key)
    assert len(study_id) == 16 and description == key
    assert study_id == study_id_fields(key)[0]  # deterministic
    assert study_id_fields("40689238") == ("40689238", None)
    record = tmp_path / key  # record 100 under a MIMIC-III-style name
    header = (physionet_dir / "100.hea").read_bytes()
    (tmp_path / f"{key}.hea").write_bytes(header.replace(b"100 2", key.encode() + b" 2", 1))
    (tmp_path / "100.dat").write_bytes((physionet_dir / "100.dat").read_bytes())
    ((info, data),), _ = converted(record)
    ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(data))
    assert ds.StudyID == study_id and ds.StudyDescription == key
    assert ds.StudyInstanceUID == derive_uid("study", key)


# --- MIMIC-IV-ECG unchanged ------------------------------------------------------------------

MIMIC_DIGESTS = {
    "default": "4378d108a8723f74087a4a08068305936b87bf130589d1389215068148b6e9b0",
    "no-annotations": "264c9e86563f0eb95a4e49b52dbe3d7f04b0177f2513def72c6df8901108c8b2",
    "uid-root": "974f316a102f3ca75151d2d4f512721b8c94e54f4a4e0bf89f9b7010e0981a32",
}
"""SHA-256 over the SHA-256 of each good record's file, in ``corpus.good`` order, of
``generate_corpus(root, 12, seed=7)`` (the demo corpus of conftest), computed with main's
code at 2be335a (before one record could make several objects) by
``convert_to_bytes(root / rel, table.get(name), options=...)``. The implementation version
name is in those bytes: a version change changes them (update with the same code)."""


@pytest.mark.parametrize("name, options", [
    ("default", ConversionOptions()),
    ("no-annotations", ConversionOptions(annotations=False)),
    ("uid-root", ConversionOptions(uid_root="1.2.826.0.1.3680043.10.543")),
])
def test_mimic_iv_ecg_bytes_unchanged(demo_corpus, demo_metadata, name, options) -> None:
    digest = hashlib.sha256()
    for rel in demo_corpus.good:
        data = convert_to_bytes(demo_corpus.root / rel, demo_metadata.get(Path(rel).name),
                                options=options)
        digest.update(hashlib.sha256(data).digest())
    assert digest.hexdigest() == MIMIC_DIGESTS[name]


# --- every record of the shared PhysioNet data --------------------------------------------


@pytest.mark.parametrize("hea", [h for h in SHARED_RECORDS if _signal_files_present(h)],
                         ids=lambda h: h.stem)
def test_every_shared_record_converts(hea: Path, tmp_path: Path) -> None:
    """``convert REC -o DIR/ --acquisition-datetime 2000-01-01T00:00:00``: every object
    meets its IOD and dciodvfy; stored samples are wfdb's rdrecord(physical=False,
    smooth_frames=False) for their signal and time span, physical values wfdb's; no
    non-ECG signal in an ECG object; a record no IOD accepts is refused in one line."""
    base = hea.with_suffix("")
    try:
        written = write_record(base, f"{tmp_path}/out/", options=OPTIONS)
    except Exception as exc:
        if hea.stem.endswith("n") and "multi-segment" in str(hea):  # numerics at 1/60 Hz
            assert "no signal of the record fits a DICOM waveform IOD" in str(exc)
            return
        raise
    segments = {index: record for index, _, record in _wfdb_segments(base)}
    physical = _wfdb_physical(base)
    stored: dict[tuple[int, str], int] = {}
    for path in written.paths:
        ds = pydicom.dcmread(path)
        iod = assert_meets_own_iod(ds)
        assert_dciodvfy_clean(path, tmp_path)
        segment = _segment_of(path, len(segments))
        expected = segments[segment]
        for g, group in enumerate(ds.WaveformSequence):
            samples = raw_samples(group)
            values = multiplex_array(ds, g, as_raw=False)
            for c, channel in enumerate(group.ChannelDefinitionSequence):
                column = _column_of(expected, channel.ChannelLabel, float(group.SamplingFrequency))
                if iod.signal_class is SignalClass.ECG:
                    assert classify(channel.ChannelLabel, expected.units[column]) is SignalClass.ECG
                np.testing.assert_array_equal(samples[:, c], expected.e_d_signal[column])
                theirs = physical[segment][column]
                known = ~np.isnan(theirs)
                np.testing.assert_allclose(values[known, c], theirs[known], rtol=1e-6,
                                           atol=1e-9)
                stored[segment, expected.sig_name[column]] = 1
    left = {(s.segment, s.label) for s in written.left_out}
    for segment, record in segments.items():  # every signal: stored, or left out with reason
        for name in record.sig_name:
            assert (segment, name) in stored or (segment, name) in left, (segment, name)


def _segment_of(path: Path, n_segments: int) -> int:
    if "_s0" in path.name:
        return int(path.name.rsplit("_s", 1)[1][:4])
    return 1 if n_segments == 1 else min(1, n_segments)


def _column_of(record: wfdb.Record, label: str, fs: float) -> int:
    for column, (name, spf) in enumerate(zip(record.sig_name, record.samps_per_frame,
                                             strict=True)):
        if name == label and abs(record.fs * spf - fs) < 1e-6:
            return column
    raise AssertionError(f"no signal {label} at {fs} Hz")


def _wfdb_physical(base: Path) -> dict[int, list[np.ndarray]]:
    """Per segment index: wfdb's physical values of each signal (e_p_signal)."""
    result = {}
    for index, _, record in _wfdb_segments(base):
        digital = record.e_d_signal
        result[index] = [
            np.where(column == _invalid(record.fmt[i]), np.nan,
                     (column.astype(float) - record.baseline[i]) / record.adc_gain[i])
            for i, column in enumerate(digital)]
    return result


def _invalid(fmt: str) -> float:
    from wfdb.io._signal import INVALID_SAMPLE_VALUE

    value = INVALID_SAMPLE_VALUE.get(fmt)
    return np.nan if value is None else value
