"""Shared fixtures: where the reference data lives, and how tests demand real tools."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_tool(name: str) -> str:
    """Path of executable ``name``; in CI its absence fails the test, elsewhere it skips."""
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed (apt-get install dicom3tools dcmtk orthanc)"
    if IN_CI:
        pytest.fail(f"{message}; CI must install it (see .ci/run)")
    pytest.skip(message)


def require_shared_data() -> Path:
    """The reference recordings in ../shared/data (never copied into the repo)."""
    if SHARED_DATA.is_dir():
        return SHARED_DATA
    if IN_CI:
        pytest.fail(f"reference data missing at {SHARED_DATA}")
    pytest.skip(f"reference data not found at {SHARED_DATA}")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return require_shared_data()


@pytest.fixture(scope="session")
def mortara(shared_data: Path) -> Path:
    """A real vendor 12-lead ECG object (Mortara cart; SCPECG codes, two groups)."""
    return shared_data / "dicom" / "anonymous_ecg.dcm"


@pytest.fixture(scope="session")
def physionet_dir(shared_data: Path) -> Path:
    return shared_data / "physionet"


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory: pytest.TempPathFactory):
    """A small synthetic MIMIC-IV-ECG-shaped corpus (the generator `wfdb2dicom demo` uses)."""
    from wfdb2dicom.synthetic import generate_corpus

    return generate_corpus(tmp_path_factory.mktemp("demo") / "mimic-iv-ecg", 12, seed=7)


@pytest.fixture(scope="session")
def demo_metadata(demo_corpus):
    from wfdb2dicom.metadata import MetadataTable

    return MetadataTable.load(demo_corpus.machine_measurements_csv)
