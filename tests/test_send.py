"""``wfdb2dicom send`` against a real Orthanc: C-STORE and STOW-RS, ledger, failures, outages;
and against DCMTK's storescp: a peer that accepts only Implicit VR Little Endian, or no context.

The objects are real conversions (the synthetic MIMIC-shaped corpus, and PhysioNet records
that give the 12-lead, General and Ambulatory ECG classes) plus a vendor ECG, so every
presentation context we propose is used.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import shutil
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pynetdicom
import pytest
from pydicom.uid import UID, ImplicitVRLittleEndian
from pydicom.waveforms import multiplex_array

from conftest import IN_CI, require_tool
from orthanc_server import OrthancServer, free_port, require_dicomweb
from wfdb2dicom import send
from wfdb2dicom.errors import ConversionError
from wfdb2dicom.send import (
    ENV_PASSWORD,
    ENV_TOKEN,
    ENV_USER,
    dicomweb_auth,
    parse_destination,
    send_run,
)

CSV_HEADER = "study_id,path,dcm_path,dcm_error\n"
FAST_RETRY = {"retries": 2, "retry_delay": 0.05, "timeout": 5.0}


# ---------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def objects(tmp_path_factory, demo_corpus, demo_metadata, shared_data) -> list[tuple[str, Path]]:
    """(study_id, file) of real DICOM ECG objects, every ECG SOP class we propose."""
    from wfdb2dicom.builder import ConversionOptions
    from wfdb2dicom.convert import convert_record

    out = tmp_path_factory.mktemp("objects")
    made = [
        (Path(rel).name, convert_record(demo_corpus.root / rel, out / f"{Path(rel).name}.dcm",
                                        demo_metadata))
        for rel in demo_corpus.good
    ]
    options = ConversionOptions(acquisition_datetime=dt.datetime(2001, 2, 3, 4, 5, 6))
    for name in ("test01_00s", "3000003_0003", "s0010_re"):
        made.append((name, convert_record(shared_data / "physionet" / name, out / f"{name}.dcm",
                                          options=options)))
    vendor = out / "vendor_ecg.dcm"
    shutil.copyfile(shared_data / "dicom" / "anonymous_ecg.dcm", vendor)
    made.append(("vendor", vendor))
    classes = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPClassUID) for _, p in made}
    assert classes == set(send.WAVEFORM_STORAGE_SOP_CLASSES[:3])  # the ECG family (SS)
    return made


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    with OrthancServer.launch(tmp_path_factory.mktemp("orthanc")) as server:
        yield server


@pytest.fixture
def server(orthanc: OrthancServer) -> OrthancServer:
    """The module's Orthanc, emptied: each test sees only what it sent."""
    orthanc.clear()
    return orthanc


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    """No credentials from the environment or the tester's own ~/.netrc."""
    for name in (ENV_USER, ENV_PASSWORD, ENV_TOKEN):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture
def credentials(server, no_credentials, monkeypatch):
    monkeypatch.setenv(ENV_USER, server.user)
    monkeypatch.setenv(ENV_PASSWORD, server.password)


@dataclass
class Run:
    csv: Path
    files: list[Path]  # the converted objects, in CSV order

    @property
    def error_log(self) -> Path:
        return Path(f"{self.csv}.send-errors.log")

    @property
    def ledger(self) -> Path:
        return Path(f"{self.csv}.sent.sqlite")

    def failure_lines(self) -> list[list[str]]:
        lines = self.error_log.read_text().splitlines()
        return [line.split("\t") for line in lines if not line.startswith("=== SEND ")]


def make_run(tmp_path: Path, objects, extra_rows: list[str] = ()) -> Run:
    """A batch run's output CSV over copies of ``objects``, plus a row that did not convert."""
    folder = tmp_path / "dicom_out"
    folder.mkdir(parents=True)
    rows, files = [], []
    for i, (study_id, source) in enumerate(objects):
        target = folder / source.name
        shutil.copyfile(source, target)
        files.append(target)
        # the seed writes absolute paths; relative ones are read from the CSV's folder
        shown = target if i % 2 else target.relative_to(tmp_path)
        rows.append(f"{study_id},files/{study_id},{shown},")
    rows.append("99999999,files/99999999,NA,Timeout>60s")
    rows.extend(extra_rows)
    csv_path = tmp_path / "run.with_dcm.csv"
    csv_path.write_text(CSV_HEADER + "\n".join(rows) + "\n")
    return Run(csv_path, files)


def count_associations(monkeypatch) -> list[tuple]:
    calls: list[tuple] = []
    original = pynetdicom.AE.associate

    def counting(self, *args, **kwargs):
        calls.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pynetdicom.AE, "associate", counting)
    return calls


def cli(*argv: str) -> int:
    """``wfdb2dicom send ...`` through our own ``register`` (the lead wires it into cli.py)."""
    parser = argparse.ArgumentParser(prog="wfdb2dicom")
    send.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["send", *argv])
    return args.handler(args)


# ---------------------------------------------------------------------------------------------
# what Orthanc holds


def _body(data: bytes) -> bytes:
    """The data set of a Part 10 file: after preamble, 'DICM' and the meta group."""
    meta = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).file_meta
    return data[128 + 4 + 12 + meta.FileMetaInformationGroupLength :]


def _explicit_lengths(ds: pydicom.Dataset) -> pydicom.Dataset:
    for element in ds:
        if element.VR == "SQ":
            element.is_undefined_length = False
            for item in element.value:
                item.is_undefined_length_sequence_item = False
                _explicit_lengths(item)
    return ds


def assert_stored_as_sent(server: OrthancServer, files: list[Path], *, stow: bool) -> None:
    """Orthanc holds exactly these objects, and returns each as we sent it.

    STOW-RS carries the whole Part 10 file and Orthanc keeps it untouched: whole files must be
    equal. C-STORE carries only the data set (the file meta group is a Part 10 thing, PS3.10
    7.1), so Orthanc (DCMTK) writes its own meta group (its Implementation Class UID and
    version) and, in doing so, writes sequences and items with explicit lengths where our
    files (pydicom's default, and the vendor's writer) use undefined lengths: the same data
    set by PS3.5 7.5, other bytes. What must be equal is checked exactly: the meta's SOP
    Class, SOP Instance and Transfer Syntax UIDs, and the data set byte for byte once ours is
    re-encoded with explicit lengths (so not one value byte differs).
    """
    stored = server.instances()
    sent = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID): f for f in files}
    assert set(stored) == set(sent)
    for uid, path in sent.items():
        ours, theirs = path.read_bytes(), server.file(stored[uid])
        if stow:
            assert theirs == ours, path.name
            continue
        mine, got = pydicom.dcmread(path), pydicom.dcmread(io.BytesIO(theirs))
        for keyword in ("MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID",
                        "TransferSyntaxUID"):
            assert got.file_meta[keyword].value == mine.file_meta[keyword].value
        assert got == mine, path.name
        rewritten = io.BytesIO()
        pydicom.dcmwrite(rewritten, _explicit_lengths(pydicom.dcmread(path)))
        assert _body(theirs) == _body(rewritten.getvalue()), path.name


# ---------------------------------------------------------------------------------------------
# delivery


def test_cstore_delivers_every_object_and_a_rerun_sends_nothing(server, objects, tmp_path,
                                                                monkeypatch) -> None:
    run = make_run(tmp_path, objects)
    associations = count_associations(monkeypatch)
    summary = send_run(run.csv, server.dicom_url, batch_size=5, progress=False)
    assert (summary.sent, summary.already_sent, summary.failed) == (len(objects), 0, 0)
    assert summary.ok and summary.not_converted == 1
    assert len(associations) == 1, "one association reused across the batches"
    assert_stored_as_sent(server, run.files, stow=False)

    again = send_run(run.csv, server.dicom_url, batch_size=5, progress=False)
    assert (again.sent, again.already_sent, again.failed) == (0, len(objects), 0)
    assert len(associations) == 1, "nothing to send: no association at all"
    headers = [line for line in run.error_log.read_text().splitlines() if line.startswith("===")]
    assert [h.rsplit("|", 1)[1] for h in headers] == [f" todo={len(objects)} ===", " todo=0 ==="]
    assert run.failure_lines() == []
    with sqlite3.connect(run.ledger) as db:
        rows = db.execute("SELECT destination, COUNT(*) FROM sent GROUP BY 1").fetchall()
    assert rows == [(parse_destination(server.dicom_url).url, len(objects))]


def test_stow_delivers_every_object_byte_for_byte(server, objects, tmp_path, credentials) -> None:
    require_dicomweb(server)
    run = make_run(tmp_path, objects)
    assert cli("--output_csv", str(run.csv), "--to", server.dicomweb_url, "--batch-size", "6",
               "--no-progress") == 0
    assert_stored_as_sent(server, run.files, stow=True)
    summary = send_run(run.csv, server.dicomweb_url + "/", progress=False)  # same destination
    assert (summary.sent, summary.already_sent) == (0, len(objects))


def test_ledger_commits_each_batch_and_follows_changed_and_moved_files(server, objects, tmp_path,
                                                                      monkeypatch) -> None:
    run = make_run(tmp_path, objects)
    deliver, calls = send._Run.deliver, []

    def killed_at_third_batch(self, transport, ready):
        calls.append(len(ready))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return deliver(self, transport, ready)

    monkeypatch.setattr(send._Run, "deliver", killed_at_third_batch)
    with pytest.raises(KeyboardInterrupt):
        send_run(run.csv, server.dicom_url, batch_size=5, progress=False)
    monkeypatch.setattr(send._Run, "deliver", deliver)
    assert len(server.instances()) == 10
    resumed = send_run(run.csv, server.dicom_url, batch_size=5, progress=False)
    assert (resumed.sent, resumed.already_sent) == (len(objects) - 10, 10)

    # re-converted (same deterministic UID, new bytes): sent again; moved: not sent again
    changed = pydicom.dcmread(run.files[0])
    changed.InstitutionName = "Re-converted"
    changed.save_as(run.files[0])
    moved = run.files[1].with_name("moved.dcm")
    run.files[1].rename(moved)
    run.csv.write_text(run.csv.read_text().replace(run.files[1].name, moved.name))
    final = send_run(run.csv, server.dicom_url, progress=False)
    assert (final.sent, final.already_sent, final.failed) == (1, len(objects) - 1, 0)


# ---------------------------------------------------------------------------------------------
# per-object failures


def _failure_rows(tmp_path: Path, objects) -> tuple[list[str], Path]:
    """Rows for a missing file, a file that is not DICOM, an object Orthanc refuses (no Study
    Instance UID: it cannot file it) and a second file with an already used SOP Instance UID."""
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "not_dicom.dcm").write_text("study_id,path\n")
    refused = pydicom.dcmread(objects[0][1])
    refused.SOPInstanceUID = refused.file_meta.MediaStorageSOPInstanceUID = "2.25.1234567"
    del refused.StudyInstanceUID
    refused.save_as(bad / "refused.dcm")
    shutil.copyfile(objects[1][1], bad / "duplicate.dcm")
    rows = [
        f"11111111,files/11111111,{bad / 'missing.dcm'},",
        f"22222222,files/22222222,{bad / 'not_dicom.dcm'},",
        f"33333333,files/33333333,{bad / 'refused.dcm'},",
        f"44444444,files/44444444,{bad / 'duplicate.dcm'},NA",
    ]
    return rows, bad


def _assert_failure_log(run: Run, expected: dict[str, str]) -> None:
    lines = run.failure_lines()
    assert all(len(fields) == 3 for fields in lines), lines
    assert "Traceback" not in run.error_log.read_text()
    assert {fields[0]: fields[2].split(":", 1)[0] for fields in lines} == expected
    assert all(fields[1].endswith(".dcm") for fields in lines)


def test_cstore_per_object_failures(server, objects, tmp_path) -> None:
    rows, _ = _failure_rows(tmp_path, objects)
    run = make_run(tmp_path, objects, rows)
    assert cli("--output_csv", str(run.csv), "--to", server.dicom_url, "--batch-size", "4",
               "--no-progress") == 1
    _assert_failure_log(run, {"11111111": "FileMissing", "22222222": "Unreadable",
                              "33333333": "Rejected", "44444444": "DuplicateUID"})
    refusal = next(f[2] for f in run.failure_lines() if f[0] == "33333333")
    assert refusal.startswith("Rejected: C-STORE status 0xA7")
    assert_stored_as_sent(server, run.files, stow=False)

    again = send_run(run.csv, server.dicom_url, progress=False)
    assert (again.sent, again.already_sent, again.failed) == (0, len(objects), 4)
    assert dict(again.failures) == {"FileMissing": 1, "Unreadable": 1, "Rejected": 1,
                                    "DuplicateUID": 1}


def test_stow_per_object_failures(server, objects, tmp_path, credentials) -> None:
    require_dicomweb(server)
    rows, _ = _failure_rows(tmp_path, objects)
    run = make_run(tmp_path, objects[:5], rows)
    summary = send_run(run.csv, server.dicomweb_url, batch_size=50, progress=False)
    assert not summary.ok and summary.sent == 5
    _assert_failure_log(run, {"11111111": "FileMissing", "22222222": "Unreadable",
                              "33333333": "Rejected", "44444444": "DuplicateUID"})
    refusal = next(f[2] for f in run.failure_lines() if f[0] == "33333333")
    assert refusal == "Rejected: STOW-RS failure reason 0xC000 (Cannot understand)"
    assert_stored_as_sent(server, run.files, stow=True)


@pytest.mark.parametrize("requester_late", [False, True])
def test_association_rejected_permanently_is_not_retried(server, objects, tmp_path,
                                                         monkeypatch, requester_late) -> None:
    """``requester_late``: pynetdicom's requesting thread resumes only once the peer has
    rejected and closed the connection, as it did under heavy load (pynetdicom then calls
    the association aborted, the rejection left unread): a permanent rejection all the same,
    never retried as a transient abort."""
    if requester_late:
        from pynetdicom.acse import ACSE

        send_request = ACSE.send_request

        def late(acse: ACSE) -> None:
            send_request(acse)
            deadline = time.monotonic() + 30
            while acse.dul.to_user_queue.empty() or acse.socket._is_connected:
                assert time.monotonic() < deadline, "Orthanc did not answer"
                time.sleep(0.01)

        monkeypatch.setattr(ACSE, "send_request", late)
    run = make_run(tmp_path, objects[:3])
    associations = count_associations(monkeypatch)
    wrong = f"dicom://NOT_ORTHANC@127.0.0.1:{server.dicom_port}"
    summary = send_run(run.csv, wrong, retries=3, retry_delay=5, progress=False)
    assert len(associations) == 1 and dict(summary.failures) == {"Rejected": 3}
    assert "Called AE title not recognised" in run.failure_lines()[0][2]


# ---------------------------------------------------------------------------------------------
# credentials


def test_url_with_password_is_refused(tmp_path, objects) -> None:
    run = make_run(tmp_path, objects[:1])
    with pytest.raises(ConversionError) as refused:
        send_run(run.csv, "http://user:secret@127.0.0.1:8042/dicom-web")
    message = str(refused.value)
    assert ENV_USER in message and ENV_PASSWORD in message and "secret" not in message
    assert "\n" not in message


def test_dicomweb_credentials_from_netrc_and_refusal_without(server, objects, tmp_path,
                                                              no_credentials) -> None:
    require_dicomweb(server)
    run = make_run(tmp_path, objects[:3])
    started = time.monotonic()
    denied = send_run(run.csv, server.dicomweb_url, progress=False, **FAST_RETRY)
    assert dict(denied.failures) == {"HTTPError": 3} and time.monotonic() - started < 5
    assert "HTTP 401" in run.failure_lines()[0][2]
    assert server.instances() == {}

    netrc_file = tmp_path / "netrc"
    netrc_file.write_text(f"machine 127.0.0.1 login {server.user} password {server.password}\n")
    netrc_file.chmod(0o600)
    assert cli("--output_csv", str(run.csv), "--to", server.dicomweb_url, "--netrc",
               str(netrc_file), "--no-progress") == 0
    assert len(server.instances()) == 3


def test_dicomweb_auth_sources(tmp_path) -> None:
    import requests

    def header(auth) -> str | None:
        request = requests.Request("POST", "http://127.0.0.1/dicom-web/studies", auth=auth)
        return request.prepare().headers.get("Authorization")

    assert header(dicomweb_auth("127.0.0.1", environ={ENV_TOKEN: "t0ken"})) == "Bearer t0ken"
    assert header(dicomweb_auth("h", environ={ENV_USER: "u", ENV_PASSWORD: "p"})).startswith(
        "Basic ")
    with pytest.raises(ConversionError):
        dicomweb_auth("h", environ={ENV_USER: "u"})
    with pytest.raises(ConversionError):
        dicomweb_auth("h", environ={ENV_TOKEN: "t", ENV_USER: "u", ENV_PASSWORD: "p"})
    with pytest.raises(ConversionError):
        dicomweb_auth("h", tmp_path / "absent-netrc", environ={})
    netrc_file = tmp_path / "netrc"
    netrc_file.write_text("machine other login a password b\n")
    assert header(dicomweb_auth("127.0.0.1", netrc_file, environ={})) is None


# ---------------------------------------------------------------------------------------------
# transfer syntaxes and presentation contexts (DCMTK storescp)

STORESCP_AET = "STORESCP"

STORESCP_PROFILES = r"""
[[TransferSyntaxes]]
[Uncompressed]
TransferSyntax1 = LittleEndianExplicit
TransferSyntax2 = LittleEndianImplicit

[[PresentationContexts]]
[TwelveLeadECG]
PresentationContext1 = 1.2.840.10008.5.1.4.1.1.9.1.1\Uncompressed
[VerificationOnly]
PresentationContext1 = 1.2.840.10008.1.1\Uncompressed

[[Profiles]]
[TwelveLeadOnly]
PresentationContexts = TwelveLeadECG
[NoStorage]
PresentationContexts = VerificationOnly
"""
"""storescp profiles (``-xf FILE PROFILE``): one ECG class only, and no storage class at all."""


def dcmtk_storescp() -> str:
    """DCMTK's storescp. pynetdicom installs a Python app of the same name (no ``+xi``, no
    ``-xf``) that may come first on PATH, so each ``storescp`` on PATH is asked who it is."""
    first = require_tool("storescp")  # none at all: fails in CI, skips elsewhere
    candidates = [first] + [os.path.join(d, "storescp") for d in os.get_exec_path()]
    for candidate in dict.fromkeys(candidates):
        if not os.access(candidate, os.X_OK):
            continue
        version = subprocess.run([candidate, "--version"], capture_output=True, text=True,
                                 timeout=60, check=False)
        if "dcmtk" in (version.stdout + version.stderr).lower():
            return candidate
    message = "DCMTK's storescp is not on PATH (apt-get install dcmtk)"
    if IN_CI:
        pytest.fail(f"{message}; CI must install it (see .ci/run)")
    pytest.skip(message)


@pytest.fixture(scope="module")
def storescp_executable() -> str:
    return dcmtk_storescp()


@contextmanager
def storescp(executable: str, workdir: Path, *options: str) -> Iterator[tuple[str, Path]]:
    """A DCMTK storescp on a free port: ``(destination URL, folder of received files)``.

    storescp 3.6.7 cannot bind to one interface: it listens on all of them while a test runs.
    """
    received = workdir / "received"
    received.mkdir(parents=True)
    port = free_port()
    with open(workdir / "storescp.log", "wb") as log:
        process = subprocess.Popen(
            [executable, *options, "--aetitle", STORESCP_AET, "--output-directory",
             str(received), str(port)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 15
        while True:
            if process.poll() is not None:
                pytest.fail(f"storescp exited ({process.returncode}): "
                            + (workdir / "storescp.log").read_text(errors="replace"))
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("storescp did not listen within 15s")
                time.sleep(0.05)
        yield f"dicom://{STORESCP_AET}@127.0.0.1:{port}", received
    finally:
        process.terminate()
        process.wait(timeout=15)


def _by_uid(files) -> dict[str, pydicom.Dataset]:
    datasets = [pydicom.dcmread(f) for f in files]
    return {str(ds.SOPInstanceUID): ds for ds in datasets}


def _split_private(ds: pydicom.Dataset) -> dict:
    """Remove the private elements, returning their value bytes as stored.

    Implicit VR carries no VR, and the receiver knows no vendor's private dictionary: it reads
    them back as UN. Their values must still be the same bytes (``get_item`` gives them raw;
    pydicom gives an empty value as ``b''`` or ``None``).
    """
    private = {tag: ds.get_item(tag).value or b"" for tag in ds.keys() if tag.is_private}
    for tag in private:
        del ds[tag]
    return private


def test_cstore_to_implicit_vr_only_peer_reencodes_losslessly(storescp_executable, objects,
                                                                tmp_path, monkeypatch) -> None:
    run = make_run(tmp_path, objects)
    associations = count_associations(monkeypatch)
    with storescp(storescp_executable, tmp_path, "+xi") as (url, received):
        summary = send_run(run.csv, url, batch_size=5, progress=False, **FAST_RETRY)
    assert (summary.sent, summary.failed) == (len(objects), 0), run.failure_lines()
    assert len(associations) == 1

    ours, theirs = _by_uid(run.files), _by_uid(received.iterdir())
    assert set(theirs) == set(ours)
    for uid, mine in ours.items():
        got = theirs[uid]
        assert got.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian  # re-encoded, sent
        assert got.original_encoding == (True, True)  # and stored as received
        for index, (sent, arrived) in enumerate(zip(mine.WaveformSequence,
                                                    got.WaveformSequence, strict=True)):
            assert arrived["WaveformData"].VR == "OW" and arrived.WaveformData == sent.WaveformData
            assert arrived.get("WaveformPaddingValue") == sent.get("WaveformPaddingValue")
            samples = multiplex_array(mine, index, as_raw=True)
            stored = multiplex_array(got, index, as_raw=True)
            assert stored.dtype == samples.dtype and np.array_equal(stored, samples)
        assert _split_private(got) == _split_private(mine)
        assert got == mine, uid  # every public element: same VR, same value


def test_some_classes_refused_is_said_per_object(storescp_executable, objects, tmp_path,
                                                 monkeypatch) -> None:
    """A peer with no context for an object's SOP class: that object fails with the reason,
    the others go on the same association."""
    config = tmp_path / "storescp.cfg"
    config.write_text(STORESCP_PROFILES)
    run = make_run(tmp_path, objects)
    associations = count_associations(monkeypatch)
    with storescp(storescp_executable, tmp_path, "-xf", str(config), "TwelveLeadOnly") as (
        url, received
    ):
        summary = send_run(run.csv, url, batch_size=5, progress=False, **FAST_RETRY)
    classes = {str(ds.SOPInstanceUID): ds.SOPClassUID for ds in _by_uid(run.files).values()}
    twelve_lead = {uid for uid, c in classes.items() if c == send.WAVEFORM_STORAGE_SOP_CLASSES[0]}
    assert set(_by_uid(received.iterdir())) == twelve_lead
    assert len(associations) == 1
    assert dict(summary.failures) == {"Rejected": len(objects) - len(twelve_lead)}
    class_of = {study_id: pydicom.dcmread(path).SOPClassUID for study_id, path in objects}
    for study_id, _, reason in run.failure_lines():
        assert reason == (f"Rejected: no presentation context accepted for "
                          f"{class_of[study_id].name} by {url.split('//')[1]} "
                          f"(abstract syntax not supported)")


def test_no_context_accepted_is_said_and_not_retried(storescp_executable, objects, tmp_path,
                                                     monkeypatch) -> None:
    """The peer accepts the association but no context: pynetdicom aborts it, which is not a
    transient failure (the same proposal gets the same answer)."""
    config = tmp_path / "storescp.cfg"
    config.write_text(STORESCP_PROFILES)
    run = make_run(tmp_path, objects[:4] + objects[-4:])
    associations = count_associations(monkeypatch)
    started = time.monotonic()
    with storescp(storescp_executable, tmp_path, "-xf", str(config), "NoStorage") as (url, _):
        summary = send_run(run.csv, url, batch_size=3, retries=3, retry_delay=30, progress=False)
    assert time.monotonic() - started < 20, "no backoff: not retried"
    assert len(associations) == 1
    assert dict(summary.failures) == {"Rejected": 8} and summary.sent == 0
    names = ", ".join(UID(c).name for c in send.WAVEFORM_STORAGE_SOP_CLASSES)
    expected = (f"Rejected: no presentation context accepted by {url.split('//')[1]} "
                f"for {names} (abstract syntax not supported)")
    assert {fields[2] for fields in run.failure_lines()} == {expected}


# ---------------------------------------------------------------------------------------------
# outages


@pytest.mark.parametrize("scheme", ["dicom", "http"])
def test_connection_refused_is_retried_then_reported(scheme, objects, tmp_path, monkeypatch,
                                                     credentials) -> None:
    port = free_port()  # nothing listens there
    url = (f"dicom://ORTHANC@127.0.0.1:{port}" if scheme == "dicom"
           else f"http://127.0.0.1:{port}/dicom-web")
    run = make_run(tmp_path, objects[:7])
    associations = count_associations(monkeypatch)
    started = time.monotonic()
    summary = send_run(run.csv, url, batch_size=3, progress=False, **FAST_RETRY)
    assert time.monotonic() - started < 10
    assert dict(summary.failures) == {"Unreachable": 7} and summary.sent == 0
    reasons = {fields[2] for fields in run.failure_lines()}
    assert len(reasons) == 1
    (reason,) = reasons
    assert "Connection refused" in reason and "gave up after 3 attempts" in reason
    if scheme == "dicom":
        assert len(associations) == 3, "first attempt and two retries, then the run stops"
    assert cli("--output_csv", str(run.csv), "--to", url, "--retries", "0", "--no-progress") == 1


def test_stopped_server_then_resumed(objects, tmp_path) -> None:
    run = make_run(tmp_path, objects[:6])
    with OrthancServer.launch(tmp_path / "orthanc") as server:
        send_run(run.csv, server.dicom_url, batch_size=2, progress=False)
        server.clear()
        server.stop()
        first = make_run(tmp_path / "second", objects[6:10])
        down = send_run(first.csv, server.dicom_url, batch_size=2, progress=False, **FAST_RETRY)
        assert dict(down.failures) == {"Unreachable": 4}
        server.start()
        up = send_run(first.csv, server.dicom_url, batch_size=2, progress=False)
        assert (up.sent, up.failed) == (4, 0)
        assert_stored_as_sent(server, first.files, stow=False)


# ---------------------------------------------------------------------------------------------
# bad input


def test_bad_input_is_one_line_refusal(tmp_path) -> None:
    good = "dicom://ORTHANC@127.0.0.1:4242"
    with pytest.raises(ConversionError, match="not found"):
        send_run(tmp_path / "absent.csv", good)
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("study_id,path\n1,a\n")
    with pytest.raises(ConversionError, match="missing column"):
        send_run(wrong, good)
    for url in ("ftp://host/x", "dicom://127.0.0.1:4242", "dicom://AE@127.0.0.1",
                "dicom://AN_AE_TITLE_TOO_LONG@h:1", "http://h:notaport/x", "http:///x"):
        with pytest.raises(ConversionError):
            parse_destination(url)
    assert parse_destination("DICOM://Orthanc@LocalHost:104").url == "dicom://Orthanc@localhost:104"
    assert parse_destination("https://H:443/dicom-web/").url == "https://h/dicom-web"


def test_help_states_exit_status_and_credentials(capsys) -> None:
    with pytest.raises(SystemExit):
        cli("--help")
    text = " ".join(capsys.readouterr().out.split())
    assert "Exit status: 0 when every converted object is at the destination" in text
    assert ENV_TOKEN in text and "--batch-size" in text and "--retries" in text


# ---------------------------------------------------------------------------------------------
# every object of a run's manifest


@pytest.fixture(scope="module")
def multi_object_run(physionet_dir, challenge_record, tmp_path_factory) -> Path:
    from multi_object_run import batch_run

    return batch_run(physionet_dir, challenge_record, tmp_path_factory.mktemp("multi"))


def test_every_object_of_a_multi_object_run_arrives(server, multi_object_run) -> None:
    """Hemodynamic, Arterial Pulse, Respiratory, Multi-channel Respiratory and General
    32-bit ECG objects, segments and parts, beside the ECG ones: the manifest's objects all
    go, over one association, as they are stored."""
    from wfdb2dicom.batch.runcsv import RunCsv

    files = [Path(o.file) for o in RunCsv(multi_object_run).iter_objects()]
    classes = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPClassUID) for f in files}
    assert classes == set(send.WAVEFORM_STORAGE_SOP_CLASSES)
    summary = send_run(multi_object_run, server.dicom_url, batch_size=25, progress=False)
    assert (summary.sent, summary.failed) == (len(files), 0), summary
    assert_stored_as_sent(server, files, stow=False)


def test_every_waveform_class_goes_implicit_vr_to_a_strict_peer(
        storescp_executable, multi_object_run, tmp_path) -> None:
    """A peer accepting Implicit VR only receives an object of each SOP class."""
    from wfdb2dicom.batch.runcsv import RunCsv

    first_of_class: dict[str, Path] = {}
    for obj in RunCsv(multi_object_run).iter_objects():
        sop = str(pydicom.dcmread(obj.file, stop_before_pixels=True).SOPClassUID)
        first_of_class.setdefault(sop, Path(obj.file))
    run = make_run(tmp_path, [(f"{i}", path) for i, path in
                              enumerate(first_of_class.values(), start=10000000)])
    # --promiscuous: DCMTK 3.6.7 does not know General 32-bit ECG (it refuses the context)
    with storescp(storescp_executable, tmp_path, "+xi", "--promiscuous") as (url, received):
        summary = send_run(run.csv, url, batch_size=4, progress=False, **FAST_RETRY)
    assert (summary.sent, summary.failed) == (len(first_of_class), 0)
    got = {str(ds.SOPClassUID) for ds in _by_uid(received.iterdir()).values()}
    assert got == set(send.WAVEFORM_STORAGE_SOP_CLASSES)
