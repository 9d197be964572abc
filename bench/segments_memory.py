"""Peak memory of converting a multi-hour multi-segment FLAC record (issue 14: < 500 MB).

Run as its own process:  python bench/segments_memory.py [--hours 6] [--dir /dev/shm/...]

Writes, with ``wfdb.wrsamp``, a record shaped like MIMIC-IV Waveform's (and like
``mixedsignals`` of wfdb's sample data): frame rate 62.4725 Hz; ECG II, III and V at 4
samples per frame (249.89 Hz), ABP and Pleth at 2, Resp at 1; every signal file FLAC (format
516), one file per rate. The record is variable-layout multi-segment: a layout header, then
one segment per hour with a short gap (``~``) between hours. Then it measures, each in a
child process (peak resident set of the children, ``RUSAGE_CHILDREN``):

1. ``import wfdb2dicom, wfdb`` only: the floor every run pays;
2. reading every segment with ``reader.read_segments`` (the reader's share);
3. ``wfdb2dicom convert REC -o DIR/ --acquisition-datetime 2000-01-01T00:00:00``.

The bound: a multi-hour record converts with peak RSS under 500 MB, which holds when memory
follows one segment, not the record. Each measurement runs in a fresh child, because
``ru_maxrss`` of the children is the maximum over every child waited for so far.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BOUND_MB = 500
FRAME_RATE = 62.4725
SIGNALS: tuple[tuple[str, int, str, float, int], ...] = (
    # name, samples per frame, units, gain (adu per unit), baseline
    ("II", 4, "mV", 200.0, 0),
    ("III", 4, "mV", 200.0, 0),
    ("V", 4, "mV", 200.0, 0),
    ("ABP", 2, "mmHg", 16.0, 800),
    ("Pleth", 2, "NU", 4096.0, 0),
    ("Resp", 1, "Ohm", 4093.0, 2),
)
FILE_SUFFIX = {4: "e", 2: "p", 1: "r"}
GAP_FRAMES = 625  # ten seconds between hours


def synthetic_signals(n_frames: int, seed: int) -> list[np.ndarray]:
    """Per signal, int16 samples: a beat-like waveform at its rate plus noise."""
    rng = np.random.default_rng(seed)
    signals = []
    for _name, spf, _units, gain, baseline in SIGNALS:
        n = n_frames * spf
        t = np.arange(n) / (FRAME_RATE * spf)
        wave = np.sin(2 * np.pi * 1.2 * t) ** 15 + 0.1 * np.sin(2 * np.pi * 0.25 * t)
        samples = baseline + gain * wave + rng.normal(0, gain * 0.01, n)
        signals.append(np.clip(np.rint(samples), -32767, 32767).astype(np.int16))
    return signals


def write_segment(directory: Path, name: str, n_frames: int, seed: int) -> None:
    import wfdb

    signals = synthetic_signals(n_frames, seed)
    record = wfdb.Record(
        record_name=name,
        n_sig=len(SIGNALS),
        fs=FRAME_RATE,
        sig_len=n_frames,
        file_name=[f"{name}_{FILE_SUFFIX[s[1]]}.dat" for s in SIGNALS],
        fmt=["516"] * len(SIGNALS),
        samps_per_frame=[s[1] for s in SIGNALS],
        adc_gain=[s[3] for s in SIGNALS],
        baseline=[s[4] for s in SIGNALS],
        units=[s[2] for s in SIGNALS],
        sig_name=[s[0] for s in SIGNALS],
        adc_res=[16] * len(SIGNALS),
        adc_zero=[0] * len(SIGNALS),
        block_size=[0] * len(SIGNALS),
        init_value=[int(column[0]) for column in signals],
        checksum=[int(column.sum(dtype=np.int64)) & 0xFFFF for column in signals],
        e_d_signal=signals,
    )
    record.checksum = [c - 0x10000 if c >= 0x8000 else c for c in record.checksum]
    record.wrsamp(expanded=True, write_dir=str(directory))


def write_record(directory: Path, name: str, hours: float, segment_hours: float) -> Path:
    """The master header, a layout header and one segment per ``segment_hours``."""
    n_segments = max(1, round(hours / segment_hours))
    frames = round(segment_hours * 3600 * FRAME_RATE)
    layout = f"{name}_layout"
    (directory / f"{layout}.hea").write_text(
        f"{layout} {len(SIGNALS)} {FRAME_RATE} 0\n" + "".join(
            f"~ 0 {gain}({baseline})/{units} 16 0 0 0 0 {signal}\n"
            for signal, _spf, units, gain, baseline in SIGNALS))
    segment_lines = [f"{layout} 0"]
    total = 0
    for index in range(1, n_segments + 1):
        segment = f"{name}_{index:04d}"
        write_segment(directory, segment, frames, seed=index)
        segment_lines.append(f"{segment} {frames}")
        total += frames
        if index < n_segments:
            segment_lines.append(f"~ {GAP_FRAMES}")
            total += GAP_FRAMES
    (directory / f"{name}.hea").write_text(
        f"{name}/{len(segment_lines)} {len(SIGNALS)} {FRAME_RATE} {total}\n"
        + "\n".join(segment_lines) + "\n")
    return directory / name


def peak_rss_mb(args: list[str]) -> tuple[float, float, subprocess.CompletedProcess]:
    """(peak RSS in MB, seconds, result) of one child process, run to its end.

    ``ru_maxrss`` of the children is the maximum over all children waited for, so this
    forks a fresh intermediate process whose only child is the one measured.
    """
    probe = (
        "import resource, subprocess, sys, time; t = time.perf_counter(); "
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
        "time.perf_counter() - t, p.returncode); "
        "sys.stderr.write(p.stdout + p.stderr)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    result = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True,
                            text=True, env=env, check=True)
    kilobytes, seconds, returncode = result.stdout.split()
    result.returncode = int(returncode)
    return int(kilobytes) / 1024, float(seconds), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=6.0)
    parser.add_argument("--segment-hours", type=float, default=1.0)
    parser.add_argument("--dir", type=Path, default=None,
                        help="where to write (default: a new directory in /dev/shm or tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    options = parser.parse_args()
    parent = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    work = options.dir or Path(tempfile.mkdtemp(prefix="segments-memory-", dir=parent))
    work.mkdir(parents=True, exist_ok=True)
    try:
        started = time.perf_counter()
        record = write_record(work, "wave", options.hours, options.segment_hours)
        size = sum(p.stat().st_size for p in work.iterdir()) / 2**20
        print(f"wrote {record} ({options.hours:g} h, {size:.0f} MB of FLAC) in "
              f"{time.perf_counter() - started:.0f} s")
        python = sys.executable
        runs = {
            "import only": [python, "-c", "import wfdb, wfdb2dicom.reader"],
            "read_segments": [python, "-c",
                              "import sys; from wfdb2dicom.reader import read_segments; "
                              "print(sum(s.record.groups[0].n_samples "
                              "for s in read_segments(sys.argv[1])))", str(record)],
            "convert -o DIR/": [python, "-c",
                                "import sys; from wfdb2dicom.cli import main; "
                                "sys.exit(main(sys.argv[1:]))", "convert", str(record), "-o",
                                f"{work / 'out'}/", "--acquisition-datetime",
                                "2000-01-01T00:00:00"],
        }
        failed = False
        for label, args in runs.items():
            mb, seconds, result = peak_rss_mb(args)
            verdict = "ok" if mb < BOUND_MB else f"OVER the {BOUND_MB} MB bound"
            if result.returncode != 0:
                verdict = f"FAILED (exit {result.returncode}): {result.stderr.strip()[:300]}"
                failed = True
            elif mb >= BOUND_MB:
                failed = True
            objects = sum(line.endswith(".dcm") for line in result.stderr.splitlines())
            made = f"  {objects} objects" if objects else ""
            print(f"{label:16} peak RSS {mb:7.1f} MB  {seconds:6.1f} s  {verdict}{made}")
        return 1 if failed else 0
    finally:
        if not options.keep and options.dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
