"""`wfdb2dicom verify` passes on a converted run and names the record whose samples changed."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest

from wfdb2dicom.convert import convert_record
from wfdb2dicom.verification import ObjectChecker, blank_header, layout_of, parse_blanked
from wfdb2dicom.verify import read_run


@pytest.fixture(scope="module")
def run_csv(demo_corpus, demo_metadata, tmp_path_factory) -> tuple[Path, Path]:
    """A run CSV in the batch's format, for the demo corpus (broken rows failed)."""
    out = tmp_path_factory.mktemp("verify")
    rows = []
    with demo_corpus.record_list_csv.open(newline="") as handle:
        for row in csv.DictReader(handle):
            target = out / "dicom" / (row["path"] + ".dcm")
            try:
                convert_record(demo_corpus.root / row["path"], target, demo_metadata)
                row.update(dcm_path=str(target), dcm_error="")
            except Exception as exc:
                row.update(dcm_path="", dcm_error=f"{type(exc).__name__}: {exc}")
            rows.append(row)
    path = out / "run.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path, demo_corpus.root


def verify(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wfdb2dicom.cli", "verify", *args],
                          capture_output=True, text=True, timeout=300)


def test_verify_passes_on_a_converted_run(run_csv, demo_corpus) -> None:
    path, root = run_csv
    proc = verify("--output_csv", str(path), "--wfdb_dir", str(root), "--workers", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(demo_corpus.good)} passed, 0 failed" in proc.stdout


def write_run(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _sample(ds) -> None:
    data = bytearray(ds.WaveformSequence[0].WaveformData)
    data[100] ^= 0x04
    ds.WaveformSequence[0].WaveformData = bytes(data)


def _gain(ds) -> None:
    channel = ds.WaveformSequence[0].ChannelDefinitionSequence[2]
    channel.ChannelSensitivity = str(float(channel.ChannelSensitivity) * 1.01)


def _baseline(ds) -> None:
    ds.WaveformSequence[0].ChannelDefinitionSequence[4].ChannelBaseline = "0.05"


def _swapped_leads(ds) -> None:
    """Two channels' samples swapped (labels left in place)."""
    group = ds.WaveformSequence[0]
    n = int(group.NumberOfWaveformChannels)
    samples = np.frombuffer(group.WaveformData, "<i2").reshape(-1, n).copy()
    samples[:, [3, 5]] = samples[:, [5, 3]]
    group.WaveformData = samples.tobytes()


def _swapped_labels(ds) -> None:
    """Two channels' labels swapped (samples left in place)."""
    items = ds.WaveformSequence[0].ChannelDefinitionSequence
    items[0].ChannelLabel, items[1].ChannelLabel = items[1].ChannelLabel, items[0].ChannelLabel


ALTERATIONS = {
    "sample": (_sample, "samples of 'III' differ from the WFDB record (1 samples)"),
    "gain": (_gain, "sensitivity of 'III' is"),
    "baseline": (_baseline, "baseline of 'aVF' is 0.05"),
    "swapped leads": (_swapped_leads, "samples of 'aVR' differ from the WFDB record"),
    "swapped labels": (_swapped_labels, "channel 1 is 'II', the record's signal 1 is 'I'"),
    "truncated": (None, "ValidationFailed: group 1: WaveformData has 119000 bytes"),
}
"""How an object is altered, and the start of the problem verify must name it with."""


@pytest.fixture(scope="module")
def altered_run(run_csv, tmp_path_factory) -> tuple[Path, Path, dict[str, str]]:
    """The run CSV with one object per alteration replaced by an altered copy;
    alteration -> study_id."""
    path, root = run_csv
    out = tmp_path_factory.mktemp("altered")
    rows = list(csv.DictReader(path.open(newline="")))
    victims = [r for r in rows if r["dcm_path"]][:len(ALTERATIONS)]
    studies = {}
    for (name, (alter, _)), victim in zip(ALTERATIONS.items(), victims, strict=True):
        target = out / f"{victim['study_id']}.dcm"
        if alter is None:
            data = Path(victim["dcm_path"]).read_bytes()
            target.write_bytes(data[:len(data) - 1000])
        else:
            ds = pydicom.dcmread(victim["dcm_path"])
            alter(ds)
            ds.save_as(target)
        victim["dcm_path"] = str(target)
        studies[name] = victim["study_id"]
    return write_run(out / "run.csv", rows), root, studies


def test_verify_fails_on_each_altered_object_naming_its_study(altered_run) -> None:
    path, root, studies = altered_run
    proc = verify("--output_csv", str(path), "--wfdb_dir", str(root), "--workers", "2")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    failures = {line.split("\t")[0].removeprefix("FAIL "): line.split("\t")[2]
                for line in proc.stdout.splitlines() if line.startswith("FAIL")}
    assert set(failures) == set(studies.values()), proc.stdout
    for name, study in studies.items():
        assert failures[study].startswith(ALTERATIONS[name][1]), (name, failures[study])


def test_decoding_reference_fails_on_each_altered_object_too(altered_run) -> None:
    """The fast path (bytes, cached mapping) and the full decode agree on every object."""
    path, root, studies = altered_run
    fast, decoded = ObjectChecker(), ObjectChecker()
    for study, record, dcm, *_ in read_run(path, root):
        expected = study in studies.values()
        by_bytes = fast.check(record, dcm).problem
        by_arrays = decoded.check(record, dcm, decode=True).problem
        assert (by_bytes is not None) == expected == (by_arrays is not None), (
            study, by_bytes, by_arrays)
    assert decoded.compared["bytes"] == 0


def test_verify_single_record(physionet_dir, tmp_path) -> None:
    out = tmp_path / "s.dcm"
    import datetime as dt

    from wfdb2dicom.builder import ConversionOptions

    convert_record(physionet_dir / "s0010_re", out,
                   options=ConversionOptions(acquisition_datetime=dt.datetime(2000, 1, 1)))
    proc = verify(str(physionet_dir / "s0010_re"), str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    other = verify(str(physionet_dir / "test01_00s"), str(out))
    assert other.returncode == 1 and "not in the record" in other.stdout


def test_verify_a_batch_run_by_its_output_csv_alone(demo_corpus, tmp_path) -> None:
    """`verify --output_csv RUN.csv`: the run's --wfdb_dir comes from its ledger."""
    out = tmp_path / "run.csv"
    batch = subprocess.run(
        [sys.executable, "-m", "wfdb2dicom.cli", "batch", "--input_csv",
         str(demo_corpus.record_list_csv), "--output_csv", str(out), "--wfdb_dir",
         str(demo_corpus.root), "--dcm_dir", str(tmp_path / "dcm"), "--df_info_pkl",
         str(demo_corpus.machine_measurements_csv), "--workers", "2"],
        capture_output=True, text=True, timeout=300)
    assert batch.returncode == 1  # the corpus's deliberately broken records
    proc = verify("--output_csv", str(out), "--workers", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(demo_corpus.good)} passed, 0 failed" in proc.stdout
    # one object per row: what the row accounts for is the object itself (nothing more to
    # send or check), and the ledger's claim stays the record path (earlier passes hold)
    tasks = read_run(out, demo_corpus.root)
    assert tasks and all(t.covers == () and t.claim == t.record_path for t in tasks)


PHYSIONET_RECORDS = ["100", "3000003_0003", "s0010_re", "test01_00s"]
BYTES_COMPARABLE = {"test01_00s"}
"""Single-file format-16 records: compared as bytes; the others (212, 80, and s0010_re's
two files, .dat and .xyz) are decoded."""


@pytest.fixture(scope="module")
def corpora_objects(physionet_dir, run_csv, tmp_path_factory) -> list[tuple[str, str, str]]:
    """(name, record path, object path) of every record of the test corpora."""
    import datetime as dt

    from wfdb2dicom.builder import ConversionOptions

    out = tmp_path_factory.mktemp("corpora")
    options = ConversionOptions(acquisition_datetime=dt.datetime(2000, 1, 2, 3, 4, 5))
    objects = []
    for name in PHYSIONET_RECORDS:
        convert_record(physionet_dir / name, out / f"{name}.dcm", options=options)
        objects.append((name, str(physionet_dir / name), str(out / f"{name}.dcm")))
    path, root = run_csv
    objects += [(study, record, dcm) for study, record, dcm, *_ in read_run(path, root)]
    return objects


def test_fast_paths_equal_the_full_wfdb_decode(corpora_objects) -> None:
    fast, decoded = ObjectChecker(), ObjectChecker()
    for name, record, dcm in corpora_objects:
        assert fast.check(record, dcm) == decoded.check(record, dcm, decode=True), name
        assert fast.check(record, dcm).problem is None, name
    n_bytes = len(corpora_objects) - len(PHYSIONET_RECORDS) + len(BYTES_COMPARABLE)
    n_arrays = len(corpora_objects) - n_bytes
    assert fast.compared == {"bytes": 2 * n_bytes, "arrays": 2 * n_arrays}


def test_header_parsed_once_per_blanked_text_equals_rdheader(corpora_objects) -> None:
    """What the cache holds for a blanked header is what wfdb says of the real one."""
    import wfdb

    layouts = set()
    for name, record, _ in corpora_objects:
        blanked = blank_header(Path(record + ".hea").read_text(encoding="latin-1"))
        assert blanked is not None
        (text, renamed), record_name = blanked
        assert record_name == Path(record).name
        cached = parse_blanked(text)._replace(renamed=renamed)
        real = layout_of(wfdb.rdheader(record), renamed=renamed)
        assert cached._replace(file_names=()) == real._replace(file_names=()), name
        assert cached.files_of(record_name) == tuple(real.file_names), name
        layouts.add(text)
    assert len(layouts) < len(corpora_objects)  # the demo's headers share their text


def ledger_rows(output_csv: Path) -> int:
    import sqlite3

    db = sqlite3.connect(f"{output_csv}.verified.sqlite")
    try:
        return db.execute("SELECT count(*) FROM verified").fetchone()[0]
    finally:
        db.close()


def counts(proc: subprocess.CompletedProcess) -> tuple[int, int]:
    """(checked now, unchanged) from verify's summary line."""
    import re

    found = re.search(r"\((\d+) checked now, (\d+) unchanged", proc.stdout)
    assert found, proc.stdout + proc.stderr
    return int(found[1]), int(found[2])


def test_rerun_checks_only_what_changed(run_csv, tmp_path) -> None:
    path, root = run_csv
    rows = list(csv.DictReader(path.open(newline="")))
    objects = tmp_path / "objects"
    objects.mkdir()
    for row in rows:  # objects of our own, to alter; the sources are shared (only touched)
        if row["dcm_path"]:
            copy = objects / Path(row["dcm_path"]).name
            copy.write_bytes(Path(row["dcm_path"]).read_bytes())
            row["dcm_path"] = str(copy)
    run = write_run(tmp_path / "run.csv", rows)
    args = ("--output_csv", str(run), "--wfdb_dir", str(root), "--workers", "1")
    n = sum(1 for r in rows if r["dcm_path"])
    first = verify(*args)
    assert first.returncode == 0 and counts(first) == (n, 0)
    assert ledger_rows(run) == n
    again = verify(*args)
    assert again.returncode == 0 and counts(again) == (0, n)

    touched, altered = [r for r in rows if r["dcm_path"]][:2]
    dat = root / (touched["path"] + ".dat")
    stat = dat.stat()
    os.utime(dat, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    ds = pydicom.dcmread(altered["dcm_path"])
    _sample(ds)  # same size, new content
    ds.save_as(altered["dcm_path"])
    after = verify(*args)
    assert after.returncode == 1 and counts(after) == (2, n - 2)
    assert [line.split("\t")[0] for line in after.stdout.splitlines()
            if line.startswith("FAIL")] == [f"FAIL {altered['study_id']}"]
    failed_again = verify(*args)  # a failure is checked again, every time
    assert failed_again.returncode == 1 and counts(failed_again) == (1, n - 1)
    everything = verify(*args, "--all")
    assert everything.returncode == 1 and counts(everything) == (n, 0)


def test_killed_verify_resumes_where_it_stopped(tmp_path) -> None:
    """A real SIGKILL of the whole process group mid-run; the next run checks only what
    the ledger lacks, and the two runs together check every object once at least."""
    from wfdb2dicom.synthetic import generate_corpus

    corpus = generate_corpus(tmp_path / "mimic", 600, seed=3, broken=False)
    run = tmp_path / "run.csv"
    batch = subprocess.run(
        [sys.executable, "-m", "wfdb2dicom.cli", "batch", "--input_csv",
         str(corpus.record_list_csv), "--output_csv", str(run), "--wfdb_dir",
         str(corpus.root), "--dcm_dir", str(tmp_path / "dcm"), "--df_info_pkl",
         str(corpus.machine_measurements_csv), "--workers", "2", "--no-progress"],
        capture_output=True, text=True, timeout=600)
    assert batch.returncode == 0, batch.stdout + batch.stderr
    n = len(corpus.good)
    args = [sys.executable, "-m", "wfdb2dicom.cli", "verify", "--output_csv", str(run),
            "--workers", "1", "--checkpoint", "10"]
    wal = Path(f"{run}.verified.sqlite-wal")
    proc = subprocess.Popen(args, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if wal.exists() and wal.stat().st_size > 40_000:  # past the schema: checkpoints
            break
        time.sleep(0.002)
    assert proc.poll() is None, "verify ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    time.sleep(0.1)  # let the killed workers go
    done = ledger_rows(run)
    assert 10 <= done < n
    resumed = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert counts(resumed) == (n - done, done)
    assert ledger_rows(run) == n


# --- every object of a run's manifest ------------------------------------------------------

@pytest.fixture(scope="module")
def multi_object_run(physionet_dir, challenge_record, tmp_path_factory) -> Path:
    """A batch run of records of several objects each (SL samples, HD/pulse/respiration,
    segments, consecutive parts with time offsets): its output CSV."""
    from multi_object_run import batch_run

    return batch_run(physionet_dir, challenge_record, tmp_path_factory.mktemp("multi"))


def test_verify_covers_every_object_of_the_manifest(multi_object_run: Path) -> None:
    from wfdb2dicom.batch.runcsv import RunCsv

    objects = list(RunCsv(multi_object_run).iter_objects())
    classes = {o.sop_class_uid for o in objects}
    assert len(classes) == 8 and {1, 2, 3} <= {o.part for o in objects}
    assert {o.segment for o in objects} > {1, 2, 20}
    proc = verify("--output_csv", str(multi_object_run), "--workers", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"verified {len(objects)} objects: {len(objects)} passed, 0 failed" in proc.stdout


@pytest.mark.parametrize(("pattern", "label"), [
    ("a103l_s0001_p002_hd.dcm", "ABP"),              # HD, a part in the middle
    ("041s_s0002_p001_resp.dcm", "RESP"),             # a segment's respiration object
    ("binformats.dcm", "sig 8, fmt 24"),             # SL samples
])
def test_altered_sample_in_any_object_is_caught_and_named(
        multi_object_run: Path, tmp_path: Path, pattern: str, label: str) -> None:
    from wfdb2dicom.batch.runcsv import manifest_path

    manifest = manifest_path(multi_object_run).read_text()
    (victim,) = [Path(line.split(",")[3]) for line in manifest.splitlines()[1:]
                 if line.split(",")[3].endswith("/" + pattern)]
    ds = pydicom.dcmread(victim)
    group = ds.WaveformSequence[0]
    width = 4 if group.WaveformSampleInterpretation == "SL" else 2
    labels = [c.ChannelLabel for c in group.ChannelDefinitionSequence]
    data = bytearray(group.WaveformData)
    at = (100 * len(labels) + labels.index(label)) * width
    data[at] ^= 0x01
    group.WaveformData = bytes(data)
    altered = tmp_path / victim.name
    ds.save_as(altered)
    edited = tmp_path / "run.csv"
    edited.write_bytes(multi_object_run.read_bytes())
    manifest_path(edited).write_text(manifest.replace(str(victim), str(altered)))
    proc = verify("--output_csv", str(edited), "--wfdb_dir",
                  str(multi_object_run.parent / "wfdb"), "--workers", "1")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (failure,) = [line for line in proc.stdout.splitlines() if line.startswith("FAIL")]
    assert str(altered) in failure
    assert f"samples of {label!r} differ from the WFDB record (1 samples)" in failure


def test_fast_path_kept_when_the_manifest_lists_every_signal(run_csv) -> None:
    """A MIMIC object's manifest line names all 12 leads: still compared as bytes."""
    path, root = run_csv
    study, record, dcm, *_ = read_run(path, root)[0]
    names = tuple(c.ChannelLabel for c in
                  pydicom.dcmread(dcm).WaveformSequence[0].ChannelDefinitionSequence)
    checker = ObjectChecker()
    assert checker.check(record, dcm, signals=names).problem is None
    assert checker.check(record, dcm, signals=names[:11]).problem is not None
    assert checker.compared == {"bytes": 1, "arrays": 1}


@pytest.fixture
def parted_run(physionet_dir: Path, tmp_path: Path) -> Path:
    """A batch run of a shared PhysioNet record (test01_00s: 4 ECG signals, 8 s at 500 Hz)
    cut into four 2-second parts; its output CSV."""
    import shutil

    record = tmp_path / "wfdb" / "rec"
    record.mkdir(parents=True)
    for source in physionet_dir.glob("test01_00s.*"):
        shutil.copy(source, record / source.name)
    listing = tmp_path / "in.csv"
    listing.write_text("study_id,path\ntest01_00s,rec/test01_00s\n")
    output_csv = tmp_path / "out.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "wfdb2dicom.cli", "batch", "--input_csv", str(listing),
         "--output_csv", str(output_csv), "--wfdb_dir", str(tmp_path / "wfdb"), "--dcm_dir",
         str(tmp_path / "dcm"), "--workers", "1", "--no-progress", "--max-duration", "2",
         "--acquisition-datetime", "2000-01-01T00:00:00"], capture_output=True, text=True,
        timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return output_csv


@pytest.mark.parametrize(("edit", "reason"), [
    ({"drop": 4}, "its span from 4 s to the segment's end has 2000"),  # the last part
    ({"drop": 2}, "is listed in parts 1, 3, 4: part(s) 2 missing from the run"),
    ({"drop": 1}, "is listed in parts 2, 3, 4: part(s) 1 missing from the run"),
    ({"start": (3, "00:00:03")}, "its span from 2 s to the next part's start (3 s) has 500"),
])
def test_parts_that_do_not_cover_their_segment_fail_naming_the_study(
        parted_run: Path, edit: dict, reason: str) -> None:
    """A part's manifest line and file gone (or a start that makes parts overlap) is found,
    also by a verify that passed the intact run before (its ledger does not hide it)."""
    from wfdb2dicom.batch.runcsv import manifest_path

    manifest = manifest_path(parted_run)
    lines = manifest.read_text().splitlines(keepends=True)
    assert [line.split(",")[7] for line in lines[1:]] == ["1", "2", "3", "4"]
    intact = verify("--output_csv", str(parted_run), "--workers", "1")
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert "verified 4 objects: 4 passed, 0 failed" in intact.stdout

    if "drop" in edit:
        gone = lines.pop(edit["drop"])
        Path(gone.split(",")[3]).unlink()
    else:
        part, start = edit["start"]
        lines[part] = lines[part].replace("T00:00:04,", f"T{start},")
    manifest.write_text("".join(lines))
    proc = verify("--output_csv", str(parted_run), "--workers", "1")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    failures = [line for line in proc.stdout.splitlines() if line.startswith("FAIL")]
    assert failures and all(line.startswith("FAIL test01_00s\t") for line in failures)
    assert any(reason in line for line in failures), failures


# --- a row's objects together hold every signal of every segment ---------------------------

SEGMENTED = {"041s": "multi-segment/041s/041s",
             "s25047": "multi-segment/s25047/s25047-2704-05-04-10-44"}
"""Multi-segment records: 041s (2 segments, 7 signals each: ECG, HD, pulse and respiration
objects), s25047 (a layout segment, a gap, 18 segments of ECG, ABP in the last two)."""


def _segmented_batch(physionet_dir: Path, work: Path, *options: str) -> Path:
    """``wfdb2dicom batch`` of :data:`SEGMENTED` (two-minute parts); its output CSV."""
    import shutil

    root = work / "wfdb"
    for study, rel in SEGMENTED.items():
        source = physionet_dir / "wfdb-python" / rel
        shutil.copytree(source.parent, root / study)
    listing = work / "in.csv"
    listing.write_text("study_id,path\n" + "".join(
        f"{study},{study}/{Path(rel).name}\n" for study, rel in SEGMENTED.items()))
    output_csv = work / "out.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "wfdb2dicom.cli", "batch", "--input_csv", str(listing),
         "--output_csv", str(output_csv), "--wfdb_dir", str(root), "--dcm_dir",
         str(work / "dcm"), "--workers", "2", "--no-progress", "--acquisition-datetime",
         "2000-01-01T00:00:00", "--max-duration", "120", *options],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return output_csv


@pytest.fixture(scope="module")
def segmented_run(physionet_dir: Path, tmp_path_factory) -> Path:
    """A batch run of :data:`SEGMENTED`: its folder (out.csv, its manifest, wfdb/, dcm/)."""
    return _segmented_batch(physionet_dir, tmp_path_factory.mktemp("segmented")).parent


@pytest.mark.parametrize(("gone", "study", "reason"), [
    (["041s_s0002_p001_hd.dcm"], "041s", "segment 2 signal 'ABP'"),  # one HD object
    (["041s_s0001_p001_"], "041s", "segment 1 signal 'III'"),  # all of segment 1 (the first)
    (["_s0019_p001_"], "s25047", "segment 19 signal 'II'"),  # ECG and HD of segment 19
    (["_s0003_p002_ecg.dcm", "_s0005_p001_"], "s25047", "segment 5 signal 'II'"),
])
def test_an_object_missing_from_its_row_fails_naming_study_and_signal(
        segmented_run: Path, tmp_path: Path, gone: list[str], study: str, reason: str) -> None:
    """Objects gone from the manifest and the disk, after a verify that passed the intact
    run (its ledger does not hide them): the row fails, naming the segment and signal no
    object holds (a part gone, too, fails its neighbour as before)."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(segmented_run, run)
    manifest = run / "out.csv.objects.csv"
    manifest.write_text(manifest.read_text().replace(str(segmented_run), str(run)))
    intact = verify("--output_csv", str(run / "out.csv"), "--workers", "2")
    assert intact.returncode == 0, intact.stdout + intact.stderr

    lines = manifest.read_text().splitlines(keepends=True)
    kept, dropped = [], []
    for line in lines:
        cells = line.split(",")
        hit = cells[1] == study and any(part in cells[3] for part in gone)
        (dropped if hit else kept).append(line)
    assert dropped
    for line in dropped:
        Path(line.split(",")[3]).unlink()
    manifest.write_text("".join(kept))
    proc = verify("--output_csv", str(run / "out.csv"), "--workers", "2")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    failures = [line for line in proc.stdout.splitlines() if line.startswith("FAIL")]
    assert failures and all(line.startswith(f"FAIL {study}\t") for line in failures)
    assert any(f"NotCovered: {reason} is in no object and not listed as left out" in line
               for line in failures), failures


def test_signals_left_out_pass_and_must_be_listed(physionet_dir: Path, tmp_path: Path) -> None:
    """A run that leaves ABP out (``--signal-class ABP=other``) verifies: its manifest lists
    ABP as left out in each segment. Without that listing, ABP is in no object: it fails."""
    output_csv = _segmented_batch(physionet_dir, tmp_path, "--signal-class", "ABP=other")
    manifest = output_csv.with_name("out.csv.objects.csv")
    with manifest.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    left_out = {row["study_id"]: row["left_out"] for row in rows if row["left_out"]}
    assert "ABP (segment 2): " in left_out["041s"]
    assert "ABP (segment 20): " in left_out["s25047"]
    assert not any("ABP" in row["channels"].split("|") for row in rows)
    proc = verify("--output_csv", str(output_csv), "--workers", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"verified {len(rows)} objects: {len(rows)} passed, 0 failed" in proc.stdout

    for row in rows:
        if row["study_id"] == "041s":
            row["left_out"] = row["left_out"].replace("ABP (segment 2): ", "ABP (segment 1): ")
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    proc = verify("--output_csv", str(output_csv), "--workers", "2")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (failure,) = [line for line in proc.stdout.splitlines() if line.startswith("FAIL")]
    assert failure.startswith("FAIL 041s\t")
    assert ("NotCovered: segment 2 signal 'ABP' is in no object and not listed as left out"
            in failure)
