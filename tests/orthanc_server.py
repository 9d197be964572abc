"""A real Orthanc for tests: temporary storage, generated configuration, loopback use only.

Why a real server: C-STORE negotiation, status codes and STOW-RS answers are where senders go
wrong, and a mock only repeats our own reading of the standard. Orthanc is small, starts in
about a second, and is one ``apt-get install orthanc orthanc-dicomweb`` away.

Orthanc 1.10 has no option to bind to one interface, so its DICOM port listens on all of
them while a test runs. The configuration therefore accepts DICOM only from one registered
modality (our calling AE title, from 127.0.0.1), checks the called AE title, and refuses
remote HTTP (``RemoteAccessAllowed: false``) with authentication on.

Use it as a context manager or through the ``orthanc`` fixtures in ``test_send.py``::

    with OrthancServer.launch(tmp_path) as server:
        server.dicom_url          # dicom://AET@127.0.0.1:PORT
        server.dicomweb_url       # http://127.0.0.1:PORT/dicom-web
        server.instances()        # SOP Instance UID -> Orthanc id
        server.file(orthanc_id)   # the stored file's bytes
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from conftest import IN_CI, require_tool

ORTHANC_FALLBACKS = ("/usr/sbin/Orthanc", "/usr/local/sbin/Orthanc", "/usr/local/bin/Orthanc")
"""Debian installs Orthanc in /usr/sbin, which a non-root PATH often lacks."""

DICOMWEB_PLUGIN_DIRS = (
    "/usr/share/orthanc/plugins",
    "/usr/lib/orthanc",
    "/usr/local/share/orthanc/plugins",
)
STARTUP_TIMEOUT = 30.0
CLIENT_AET = "WFDB2DICOM"


def find_orthanc() -> str:
    """The Orthanc executable; fails the test in CI, skips it elsewhere, when missing."""
    found = shutil.which("Orthanc")
    if found:
        return found
    for candidate in ORTHANC_FALLBACKS:
        if os.access(candidate, os.X_OK):
            return candidate
    return require_tool("Orthanc")  # fails (CI) or skips with the install hint


def find_dicomweb_plugin() -> Path | None:
    """``libOrthancDicomWeb.so`` from the orthanc-dicomweb package, if installed."""
    for directory in DICOMWEB_PLUGIN_DIRS:
        for candidate in sorted(Path(directory).glob("libOrthancDicomWeb.so*")):
            if candidate.is_file():
                return candidate
    return None


def require_dicomweb(server: OrthancServer) -> None:
    """Skip (fail in CI) a STOW-RS test when the DICOMweb plugin is not there."""
    if server.plugin is None:
        message = "Orthanc DICOMweb plugin not installed (apt-get install orthanc-dicomweb)"
        if IN_CI:
            pytest.fail(f"{message}; CI must install it (see .ci/run)")
        pytest.skip(message)


def free_port() -> int:
    """A TCP port nothing listens on right now (the kernel's pick, released at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class OrthancServer:
    """One Orthanc process; ``start``/``stop`` may be repeated (same ports, same storage)."""

    executable: str
    workdir: Path
    plugin: Path | None
    aet: str = "ORTHANC_TEST"
    user: str = "wfdb2dicom-test"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    http_port: int = field(default_factory=free_port)
    dicom_port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @classmethod
    def launch(cls, workdir: Path) -> OrthancServer:
        """Find Orthanc (skip/fail if absent), write its configuration, start it."""
        server = cls(find_orthanc(), Path(workdir), find_dicomweb_plugin())
        while server.dicom_port == server.http_port:
            server.dicom_port = free_port()
        server.start()
        return server

    # -- addresses ---------------------------------------------------------------------------
    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.rest_url}/dicom-web"

    @property
    def dicom_url(self) -> str:
        return f"dicom://{self.aet}@127.0.0.1:{self.dicom_port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "orthanc.log"

    # -- lifecycle ---------------------------------------------------------------------------
    def config(self) -> dict:
        config = {
            "Name": "wfdb2dicom-test",
            "StorageDirectory": str(self.workdir / "storage"),
            "IndexDirectory": str(self.workdir / "storage"),
            "StorageCompression": False,  # files kept as received: we compare bytes
            "HttpPort": self.http_port,
            "HttpCompressionEnabled": False,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {self.user: self.password},
            "DicomPort": self.dicom_port,
            "DicomAet": self.aet,
            "DicomCheckCalledAet": True,
            "DicomModalities": {"wfdb2dicom": [CLIENT_AET, "127.0.0.1", 104]},
            "DicomAlwaysAllowStore": False,
            "DicomAlwaysAllowEcho": False,
            "DicomAlwaysAllowFind": False,
            "DicomAlwaysAllowGet": False,
            "DicomAlwaysAllowMove": False,
            "DicomCheckModalityHost": True,
            # General 32-bit ECG (2020) is newer than Debian's DCMTK: a PACS that stores it
            # is configured to accept a SOP class its toolkit does not know.
            "UnknownSopClassAccepted": True,
            "SaveJobs": False,
            "ConcurrentJobs": 1,
            "Plugins": [str(self.plugin)] if self.plugin else [],
        }
        if self.plugin:
            config["DicomWeb"] = {"Enable": True, "Root": "/dicom-web/", "EnableWado": False}
        return config

    def start(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Start and wait (bounded) until ``/system`` answers and the DICOM port accepts."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        config_path = self.workdir / "orthanc.json"
        config_path.write_text(json.dumps(self.config(), indent=2))
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [self.executable, str(config_path)],
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._give_up(f"Orthanc exited with status {self.process.returncode}")
            if self._answers():
                return
            time.sleep(0.1)
        self.stop()
        self._give_up(f"Orthanc did not answer within {timeout:g}s")

    def _answers(self) -> bool:
        try:
            ok = self.get("/system", timeout=2).status_code == 200
            with socket.create_connection(("127.0.0.1", self.dicom_port), timeout=2):
                pass
            return ok
        except (requests.RequestException, OSError):
            return False

    def _give_up(self, message: str) -> None:
        tail = self.log_path.read_text(errors="replace").splitlines()[-15:]
        pytest.fail(f"{message}; log tail:\n" + "\n".join(tail), pytrace=False)

    def stop(self) -> None:
        """Terminate (SIGTERM, Orthanc shuts down cleanly), kill after 15 s."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        self.process = None

    def __enter__(self) -> OrthancServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- REST --------------------------------------------------------------------------------
    def get(self, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return requests.get(f"{self.rest_url}{path}", auth=(self.user, self.password), **kwargs)

    def instances(self) -> dict[str, str]:
        """SOP Instance UID -> Orthanc instance id, for everything stored."""
        response = self.get("/instances", params={"expand": ""})
        response.raise_for_status()
        return {i["MainDicomTags"]["SOPInstanceUID"]: i["ID"] for i in response.json()}

    def file(self, orthanc_id: str) -> bytes:
        """The stored DICOM file, as Orthanc serves it."""
        response = self.get(f"/instances/{orthanc_id}/file")
        response.raise_for_status()
        return response.content

    def clear(self) -> None:
        """Delete every patient (and so everything), so tests do not see each other's data."""
        response = self.get("/patients")
        response.raise_for_status()
        for patient in response.json():
            requests.delete(
                f"{self.rest_url}/patients/{patient}", auth=(self.user, self.password), timeout=30
            ).raise_for_status()
