"""Shared fixtures: where the reference data lives, and how tests demand real tools."""

from __future__ import annotations

import functools
import os
import random
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
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


def sigkill_runs_at_random_points(args: list[str], dcm_dir: Path, n_objects: int, *,
                                  kills: int, seed: int, latest: float = 0.9) -> None:
    """Start ``args`` (a batch command) ``kills`` times and SIGKILL its whole process group
    once ``dcm_dir`` holds a random number of ``.dcm`` files, between a tenth and ``latest``
    of ``n_objects``: a kill at an unforeseen point of the run, for a resume to recover from.
    The points are drawn from ``seed``, so a failure replays."""
    rng = random.Random(seed)
    for _ in range(kills):
        target = rng.randint(n_objects // 10, int(n_objects * latest))
        proc = subprocess.Popen(args, start_new_session=True, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if dcm_dir.is_dir() and sum(1 for _ in dcm_dir.rglob("*.dcm")) >= target:
                break
            time.sleep(0.005)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        time.sleep(0.1)  # let the killed workers go


@functools.lru_cache(maxsize=1)
def _tmpfs_refusal() -> str | None:
    """Why no tmpfs can be mounted in a user namespace here; None when one can."""
    if shutil.which("unshare") is None:
        return "unshare is not installed (util-linux)"
    with tempfile.TemporaryDirectory() as point:
        probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs tmpfs {point}"],
                               capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot mount a tmpfs in a user namespace: {probe.stderr.strip()}"
    return None


def run_on_tmpfs(mountpoint: Path, options: str, *commands: list[str | Path],
                 timeout: float = 300) -> list[subprocess.CompletedProcess[str]]:
    """Run ``commands`` one after the other with a tmpfs mounted at ``mountpoint`` (mount
    ``options``: ``size=16k`` makes a real full disk, ``ro`` a read-only one); the result of
    each. A command may be ``mount -o remount,... MOUNTPOINT`` to change it between runs.

    The tmpfs lives in a mount namespace of its own (``unshare -rm``): no root needed, and
    nothing stays mounted, but only the commands see it, so copy out (``cp``) or list
    (``ls -A``) what a test must look at inside it."""
    if reason := _tmpfs_refusal():
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    with tempfile.TemporaryDirectory() as results:
        steps = [f"mount -t tmpfs -o {shlex.quote(options)} tmpfs {shlex.quote(str(mountpoint))}"
                 " || exit 1"]
        for i, cmd in enumerate(commands):
            steps.append(f"{shlex.join(map(str, cmd))} >{results}/{i}.out 2>{results}/{i}.err; "
                         f"echo $? >{results}/{i}.status")
        proc = subprocess.run(["unshare", "-rm", "sh", "-c", "\n".join(steps)],
                              capture_output=True, text=True, timeout=timeout, env=env)
        assert proc.returncode == 0, proc.stderr
        return [subprocess.CompletedProcess(
                    list(map(str, cmd)), int(Path(results, f"{i}.status").read_text()),
                    Path(results, f"{i}.out").read_text(), Path(results, f"{i}.err").read_text())
                for i, cmd in enumerate(commands)]


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


@pytest.fixture(scope="session")
def challenge_record(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PhysioNet/CinC 2015 false-alarm-like ICU record, written with ``wfdb.wrsamp``: II
    and V (mV), ABP (mmHg), PLETH and RESP (NU), 250 Hz, 5 minutes, format 16."""
    import numpy as np
    import wfdb

    directory = tmp_path_factory.mktemp("challenge")
    fs, n = 250, 250 * 300
    t = np.arange(n) / fs
    rng = np.random.default_rng(2015)
    beat = 2 * np.pi * 1.2 * t
    ecg = np.exp(-((np.mod(t, 1 / 1.2) - 0.3) ** 2) / 0.0005)
    signals = np.stack([
        1.2 * ecg + 0.02 * rng.standard_normal(n),          # II, mV
        -0.8 * ecg + 0.02 * rng.standard_normal(n),         # V, mV
        95 + 20 * np.sin(beat) + 7 * np.sin(2 * beat + 0.8),  # ABP, mmHg
        0.5 + 0.3 * np.sin(beat - 0.6),                     # PLETH, NU
        0.4 * np.sin(2 * np.pi * 0.25 * t),                 # RESP, NU
    ], axis=1)
    gains = np.array([200.0, 200.0, 100.0, 1000.0, 1000.0])
    digital = np.rint(signals * gains).astype(np.int16)
    digital[1000:1010, 2] = -32768  # a gap in ABP: WFDB's invalid sample
    wfdb.wrsamp("a103l", fs=fs, units=["mV", "mV", "mmHg", "NU", "NU"],
                sig_name=["II", "V", "ABP", "PLETH", "RESP"], d_signal=digital,
                fmt=["16"] * 5, adc_gain=list(gains), baseline=[0] * 5,
                write_dir=str(directory))
    return directory / "a103l"


@pytest.fixture(scope="session")
def uterine_record(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ECG lead beside a uterine-contraction signal whose header gives no units (WFDB
    then means mV): made with ``wfdb.wrsamp``, the units removed from the header."""
    import numpy as np
    import wfdb

    directory = tmp_path_factory.mktemp("uterine")
    fs, n = 250, 250 * 20
    t = np.arange(n) / fs
    digital = np.rint(np.stack([200 * np.sin(2 * np.pi * 1.1 * t),
                                400 + 300 * np.sin(2 * np.pi * t / 60)], axis=1))
    wfdb.wrsamp("uc01", fs=fs, units=["mV", "mV"], sig_name=["II", "UC"],
                d_signal=digital.astype(np.int16), fmt=["16", "16"], adc_gain=[200.0, 100.0],
                baseline=[0, 0], write_dir=str(directory))
    header = directory / "uc01.hea"
    lines = header.read_text().splitlines()
    lines[2] = lines[2].replace("(0)/mV", "(0)")
    assert "/mV" not in lines[2], lines[2]
    header.write_text("\n".join(lines) + "\n")
    return directory / "uc01"
