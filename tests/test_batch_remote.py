"""Records and objects behind URLs (fsspec): ``http://`` from a real nginx on 127.0.0.1
(serving byte ranges, as a web server of an archive does) and ``s3://`` to moto's S3 server
on 127.0.0.1. Moto is a stand-in for S3: it speaks the S3 API over HTTP, so s3fs and
botocore run their real code paths, but it is not AWS. ``gs://`` cannot be tested here.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_batch import command, dicom_files, log_entries, read_rows, run

from conftest import require_tool
from wfdb2dicom.batch.paths import UnsafePath
from wfdb2dicom.synthetic import SyntheticCorpus, generate_corpus

NGINX_CONFIG = """\
daemon off;
master_process off;
{user}
error_log {root}/error.log;
pid {root}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {root}/body; proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fcgi; uwsgi_temp_path {root}/uwsgi; scgi_temp_path {root}/scgi;
    server {{ listen 127.0.0.1:{port}; root {serve}; }}
}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, "the server exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> SyntheticCorpus:
    return generate_corpus(tmp_path_factory.mktemp("remote") / "mimic", 80, seed=21)


@pytest.fixture(scope="module")
def reference(corpus: SyntheticCorpus, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local run of the corpus: what every remote run must give, byte for byte."""
    work = tmp_path_factory.mktemp("reference")
    assert run(command(corpus, work)).returncode == 0
    return work


@pytest.fixture(scope="module")
def nginx(corpus: SyntheticCorpus, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """nginx serving the corpus read-only on a free port; its base URL."""
    binary = require_tool("nginx")
    root = tmp_path_factory.mktemp("nginx")
    port = free_port()
    user = "user root;" if os.geteuid() == 0 else ""  # pytest's temp dirs are private
    (root / "nginx.conf").write_text(NGINX_CONFIG.format(user=user, root=root, port=port,
                                                         serve=corpus.root))
    proc = subprocess.Popen([binary, "-c", str(root / "nginx.conf"), "-p", str(root)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, str]]:
    """Moto's S3 server (a stand-in for S3) on 127.0.0.1 with a bucket ``out``; the
    environment that points botocore's provider chain at it."""
    if os.environ.get("CI"):  # there, a missing moto fails the test (scripts/test.sh)
        import moto.server as moto_server
    else:
        moto_server = pytest.importorskip("moto.server")
    import boto3

    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL_S3"], region_name="us-east-1",
                 aws_access_key_id="testing", aws_secret_access_key="testing",
                 ).create_bucket(Bucket="out")
    try:
        yield env
    finally:
        server.stop()


def test_http_input_gives_the_local_runs_bytes(corpus: SyntheticCorpus, reference: Path,
                                               nginx: str, tmp_path: Path) -> None:
    work = tmp_path / "work"
    shutil.copytree(reference, tmp_path / "copy")
    args = command(corpus, work)
    args[args.index("--input_csv") + 1] = f"{nginx}/record_list.csv"
    args[args.index("--wfdb_dir") + 1] = f"{nginx}/"
    args[args.index("--df_info_pkl") + 1] = f"{nginx}/machine_measurements.csv"
    args[args.index("--dcm_dir") + 1] = str(reference / "dcm")  # the reference's, as in it
    (reference / "dcm").rename(tmp_path / "reference-dcm")
    try:
        proc = run(args)
        assert proc.returncode == 0, proc.stderr
        assert (work / "out.csv").read_bytes() == (reference / "out.csv").read_bytes()
        assert dicom_files(reference / "dcm") == dicom_files(tmp_path / "reference-dcm")
        assert log_entries(work / "out.csv.errors.log") == log_entries(
            reference / "out.csv.errors.log")
    finally:
        shutil.rmtree(reference / "dcm", ignore_errors=True)
        (tmp_path / "reference-dcm").rename(reference / "dcm")


def test_http_is_read_only(corpus: SyntheticCorpus, nginx: str, tmp_path: Path) -> None:
    args = command(corpus, tmp_path / "work")
    args[args.index("--dcm_dir") + 1] = f"{nginx}/dcm"
    proc = run(args)
    assert proc.returncode == 2
    assert "read-only" in proc.stderr


def test_a_header_naming_a_file_outside_its_directory_is_refused(
        corpus: SyntheticCorpus, nginx: str, tmp_path: Path) -> None:
    from wfdb2dicom.batch.remote import RemoteLayout

    rel = corpus.good[0]
    header = corpus.root / f"{rel}.hea"
    original = header.read_text()
    name = Path(rel).name
    header.write_text(original.replace(f"{name}.dat", "../../secret.dat"))
    try:
        layout = RemoteLayout(f"{nginx}/", str(tmp_path / "dcm"))
        with pytest.raises(UnsafePath, match="outside the record's directory"):
            layout.record_base(rel)
        layout.release()
    finally:
        header.write_text(original)


def test_s3_output_equals_the_local_run_and_resume_trusts_the_ledger(
        corpus: SyntheticCorpus, reference: Path, s3: dict[str, str], tmp_path: Path) -> None:
    import s3fs

    work = tmp_path / "work"
    args = command(corpus, work)
    args[args.index("--dcm_dir") + 1] = "s3://out/dcm"
    proc = run(args, env=s3)
    assert proc.returncode == 0, proc.stderr

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3["AWS_ENDPOINT_URL_S3"]},
                           key="testing", secret="testing")
    local = dicom_files(reference / "dcm")
    remote = {key.removeprefix("out/dcm/"): fs.cat_file(key) for key in fs.find("out/dcm")}
    assert remote == local
    shown = str((reference / "dcm").absolute())
    assert (work / "out.csv").read_text() == (reference / "out.csv").read_text().replace(
        shown, "s3://out/dcm")

    # Resume trusts the ledger: an object deleted behind its back is not looked for...
    gone = next(iter(local))
    fs.rm_file(f"out/dcm/{gone}")
    again = run(args, env=s3)
    assert again.returncode == 0 and f"skipped (already done):   {len(local)}" in again.stdout
    # ...and --verify-existing re-reads every object, so it is converted again.
    verified = run([*args, "--verify-existing"], env=s3)
    assert verified.returncode == 0 and "converted:                1" in verified.stdout
    fs.invalidate_cache()
    assert fs.cat_file(f"out/dcm/{gone}") == local[gone]
    rows = read_rows(work / "out.csv")
    assert sum(1 for r in rows if r["dcm_path"].startswith("s3://out/dcm/")) == len(local)


def test_convert_reads_a_url_and_writes_an_object(corpus: SyntheticCorpus, nginx: str,
                                                  s3: dict[str, str], tmp_path: Path) -> None:
    import sys

    import s3fs

    rel = corpus.good[3]
    cli = [sys.executable, "-m", "wfdb2dicom.cli", "convert"]
    local = run([*cli, str(corpus.root / rel), "-o", str(tmp_path / "local.dcm"),
                 "--metadata", str(corpus.machine_measurements_csv)])
    assert local.returncode == 0, local.stderr
    fetched = run([*cli, f"{nginx}/{rel}.hea", "-o", "s3://out/one/x.dcm",
                   "--metadata", f"{nginx}/machine_measurements.csv"], env=s3)
    assert fetched.returncode == 0, fetched.stderr
    assert fetched.stdout.strip() == "s3://out/one/x.dcm"
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3["AWS_ENDPOINT_URL_S3"]},
                           key="testing", secret="testing")
    assert fs.cat_file("out/one/x.dcm") == (tmp_path / "local.dcm").read_bytes()
    nowhere = f"http://127.0.0.1:{free_port()}/machine_measurements.csv"
    unreachable = run([*cli, str(corpus.root / rel), "-o", str(tmp_path / "u.dcm"),
                       "--metadata", nowhere])
    assert unreachable.returncode == 2  # one line, no traceback, no "internal error"
    assert unreachable.stderr.startswith(f"wfdb2dicom convert: cannot read {nowhere}: ")
    assert not (tmp_path / "u.dcm").exists()
    missing = run([*cli, f"{nginx}/files/nothing/here", "-o", str(tmp_path / "m.dcm")])
    assert missing.returncode == 2 and "missing header file here.hea" in missing.stderr
