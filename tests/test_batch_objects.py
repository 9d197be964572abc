"""The batch writes every object of a record: named as ``convert -o DIR/`` names them, listed
in the manifest ``{output_csv}.objects.csv``, and resumed whole after a kill."""

from __future__ import annotations

import csv
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest
from test_batch import read_rows, run

from wfdb2dicom.batch.runcsv import MANIFEST_COLUMNS, RunCsv, manifest_path
from wfdb2dicom.convert import write_record
from wfdb2dicom.iods import by_sop_class

RECORDS = {  # input path -> the shared record it copies
    "mimic/100": "100",
    "ms/s25047/s25047-2704-05-04-10-44": "wfdb-python/multi-segment/s25047",
    "ms/041s/041s": "wfdb-python/multi-segment/041s",
    "mixed/mixedsignals": "wfdb-python/mixedsignals",
}
WHEN = "2000-01-01T00:00:00"


@pytest.fixture(scope="module")
def corpus(physionet_dir: Path, challenge_record: Path,
           tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A ``--wfdb_dir`` holding copies of the shared records (a run reads nothing outside
    it) and the ICU fixture; its input CSV, in an order that puts one-object records between
    records of several."""
    root = tmp_path_factory.mktemp("objects_corpus")
    for rel, source in RECORDS.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        found = physionet_dir / source
        if found.is_dir():
            shutil.copytree(found, target.parent, dirs_exist_ok=True)
        else:
            for path in found.parent.glob(f"{found.name}.*"):
                shutil.copy(path, target.parent / path.name)
        if rel.startswith("mixed/"):
            for path in found.parent.glob(f"{found.name}_*.dat"):
                shutil.copy(path, target.parent / path.name)
    (root / "icu").mkdir()
    for path in challenge_record.parent.glob(f"{challenge_record.name}.*"):
        shutil.copy(path, root / "icu" / path.name)
    listing = root / "in.csv"
    listing.write_text("study_id,path,note\n"
                       "s25047,ms/s25047/s25047-2704-05-04-10-44,a\n"
                       "100,mimic/100.hea,b\n"
                       "a103l,icu/a103l,c\n"
                       "041s,ms/041s/041s,d\n"
                       "mixed,mixed/mixedsignals,e\n")
    return root, listing


def batch_args(root: Path, listing: Path, work: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "wfdb2dicom.cli", "batch", "--input_csv", str(listing),
            "--output_csv", str(work / "out.csv"), "--wfdb_dir", str(root), "--dcm_dir",
            str(work / "dcm"), "--workers", "1", "--no-progress", "--acquisition-datetime",
            WHEN, "--signal-class", "PLETH=other", *extra]


def end_state(work: Path) -> dict[str, bytes]:
    """Every file a run left (ledger aside), its root replaced so two runs compare."""
    state = {}
    for path in sorted(work.rglob("*")):
        if path.is_file() and ".ledger.sqlite" not in path.name and not path.name.endswith(
                ".errors.log"):
            state[str(path.relative_to(work))] = path.read_bytes().replace(
                str(work).encode(), b"WORK")
    return state


def test_batch_writes_every_object_as_convert_does(corpus: tuple[Path, Path],
                                                   tmp_path: Path) -> None:
    root, listing = corpus
    work = tmp_path / "run"
    proc = run(batch_args(root, listing, work))
    assert proc.returncode == 0, proc.stderr
    rows = read_rows(work / "out.csv")
    assert [row["dcm_error"] for row in rows] == [""] * 5
    assert [row["note"] for row in rows] == list("abcde")  # the seed's format, kept
    # the files are what convert -o DIR/ writes, byte for byte, under the same names
    expected: dict[str, list[Path]] = {}
    for row in rows:
        rel = row["path"].removesuffix(".hea")
        out = tmp_path / "convert" / rel
        written = write_record(root / rel, f"{out.parent}/", study_id=row["study_id"],
                               options=_options())
        expected[row["study_id"]] = written.paths
        objects = sorted((work / "dcm" / rel).parent.iterdir())
        assert [p.name for p in objects] == sorted(p.name for p in written.paths)
        for path in written.paths:
            assert (work / "dcm" / rel).parent.joinpath(path.name).read_bytes() == \
                path.read_bytes()
        # dcm_path: the row's first object in time, ECG first
        assert Path(row["dcm_path"]).name == written.paths[0].name
    assert [p.name for p in expected["100"]] == ["100.dcm"]  # one object: <path>.dcm
    assert expected["a103l"][0].name == "a103l_s0001_p001_ecg.dcm"
    assert len(expected["s25047"]) == 20 and len(expected["041s"]) == 6
    # the manifest: one line per object, in input order, matching the files
    with open(manifest_path(work / "out.csv"), newline="") as handle:
        lines = list(csv.reader(handle))
    assert tuple(lines[0]) == MANIFEST_COLUMNS
    objects = list(RunCsv(work / "out.csv").iter_objects())
    assert len(objects) == len(lines) - 1 == sum(len(p) for p in expected.values())
    assert [Path(obj.file).name for obj in objects] == [
        p.name for row in rows for p in expected[row["study_id"]]]
    assert [obj.row for obj in objects] == sorted(obj.row for obj in objects)
    for obj in objects:
        ds = pydicom.dcmread(obj.file)
        assert obj.sop_class_uid == ds.SOPClassUID and obj.modality == ds.Modality
        assert obj.channels == tuple(c.ChannelLabel for g in ds.WaveformSequence
                                     for c in g.ChannelDefinitionSequence)
        assert obj.start.replace("-", "").replace(":", "").replace("T", "")[:14] == \
            ds.AcquisitionDateTime[:14]
        assert obj.study_id == rows[obj.row - 1]["study_id"]
        assert Path(obj.record_path) == root / rows[obj.row - 1]["path"].removesuffix(".hea")
        assert by_sop_class(obj.sop_class_uid).modality == obj.modality
    icu = [obj for obj in objects if obj.study_id == "a103l"]
    assert [Path(obj.file).name for obj in icu] == [
        f"a103l_s0001_p001_{kind}.dcm" for kind in ("ecg", "hd", "resp")]
    assert icu[0].left_out.startswith("PLETH (segment 1): ")
    left_out = [text for obj in objects if obj.left_out for text in obj.left_out.split(" | ")]
    assert all(text.startswith("PLETH (segment ") for text in left_out)  # ICU's, 041s'
    assert f"signals left out:         {len(left_out)} (" in proc.stdout
    assert len(left_out) == 3
    s25047 = [obj for obj in objects if obj.study_id == "s25047"]
    assert [(o.segment, o.part) for o in s25047] == sorted((o.segment, o.part) for o in s25047)


def _options():
    """The batch's options, as the workers build them."""
    import datetime as dt

    from wfdb2dicom.batch.work import OptionValues

    return OptionValues(acquisition_datetime=dt.datetime(2000, 1, 1),
                        signal_classes=("PLETH=other",)).build()


def test_kill_and_resume_equals_an_uninterrupted_run(corpus: tuple[Path, Path],
                                                    tmp_path: Path) -> None:
    root, listing = corpus
    whole = tmp_path / "whole"
    assert run(batch_args(root, listing, whole)).returncode == 0
    killed = tmp_path / "killed"
    args = batch_args(root, listing, killed, "--checkpoint", "1")
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any((killed / "dcm").rglob("*_ecg.dcm")):
        time.sleep(0.02)
    import os

    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "out.csv").exists()  # killed part-way
    resumed = run(args)
    assert resumed.returncode == 0, resumed.stderr
    assert end_state(killed) == end_state(whole)
    # a record's files are done only when all are there: one removed is made again
    victim = next((killed / "dcm" / "ms" / "041s").glob("*_s0002_*.dcm"))
    victim.unlink()
    again = run(args)
    assert again.returncode == 0 and "converted:                1" in again.stdout
    assert end_state(killed) == end_state(whole)


def test_verify_existing_rereads_every_object(corpus: tuple[Path, Path],
                                              tmp_path: Path) -> None:
    root, listing = corpus
    work = tmp_path / "run"
    assert run(batch_args(root, listing, work)).returncode == 0
    before = end_state(work)
    damaged = next((work / "dcm" / "icu").glob("*_hd.dcm"))
    damaged.write_bytes(b"not DICOM")
    proc = run(batch_args(root, listing, work, "--verify-existing"))
    assert proc.returncode == 0, proc.stderr
    assert "converted:                1" in proc.stdout  # the ICU record, redone whole
    assert end_state(work) == before
