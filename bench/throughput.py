"""Throughput of the batch converter against the I/O floor and a naive converter.

Run as its own process:  python bench/throughput.py [--workers 2] [--reps 7]

It generates a MIMIC-IV-ECG-shaped corpus (in /dev/shm when it exists, so disk write-back
does not drown the signal) and times, as whole processes and interleaved:

  floor   processes that only read each record's .hea and .dat and write those bytes to a new
          file (makedirs, temp file, rename): the least any converter must do;
  batch   the full batch command (`python run_convert.py`: metadata join, conversion,
          validation, ledger, output CSV) with the same number of processes;
  naive   one process doing wfdb.rdrecord + a pydicom Dataset + save_as per record.

Rates are steady-state: the marginal rate between a small and a large run
((large - small) / (t_large - t_small)), so that start-up cost cancels; of several interleaved
repetitions the fastest is kept. Peak memory (VmHWM) of every process of each run is sampled
from /proc. It ends with the resume of a finished large run (nothing left to do).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

FLOOR_WORKER = r'''
import os, sys, tempfile
from multiprocessing import Pool
from pathlib import Path

def copy_slice(args):
    paths, src, dst = args
    for rel in paths:
        base = Path(src) / rel
        data = base.with_name(base.name + ".hea").read_bytes()
        data += base.with_name(base.name + ".dat").read_bytes()
        out = Path(dst) / (rel + ".dcm")
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="." + out.name + ".", suffix=".tmp", dir=out.parent)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, out)

if __name__ == "__main__":
    listing, src, dst, workers = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    rels = Path(listing).read_text().split()
    slices = [(rels[i::workers], src, dst) for i in range(workers)]
    with Pool(workers) as pool:
        pool.map(copy_slice, slices)
'''

NAIVE_WORKER = r'''
import sys
from pathlib import Path
import wfdb
from wfdb2dicom.builder import build_dataset
from wfdb2dicom.metadata import MetadataTable
from wfdb2dicom.record import Channel, EcgRecord, MultiplexGroup
import datetime as dt

listing, src, dst, metadata = sys.argv[1:5]
table = MetadataTable.load(metadata)
for rel in Path(listing).read_text().split():
    rec = wfdb.rdrecord(str(Path(src) / rel), physical=False)
    channels = tuple(Channel(n, u, g, b, r, f) for n, u, g, b, r, f in zip(
        rec.sig_name, rec.units, rec.adc_gain, rec.baseline, rec.adc_res, rec.fmt))
    start = (dt.datetime.combine(rec.base_date, rec.base_time)
             if rec.base_date and rec.base_time else None)
    record = EcgRecord(rec.record_name, (MultiplexGroup(rec.fs, channels,
                       rec.d_signal.astype("<i2")),), start, tuple(rec.comments))
    ds = build_dataset(record, table.get(Path(rel).name))
    out = Path(dst) / (rel + ".dcm")
    out.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(out, enforce_file_format=True)
'''


class PeakMemory:
    """Samples VmHWM (peak resident memory) of a process tree from /proc until stopped."""

    def __init__(self, root_pid: int) -> None:
        self.root_pid = root_pid
        self.peaks: dict[int, tuple[str, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _tree(self) -> list[int]:
        pids, frontier = [self.root_pid], [self.root_pid]
        while frontier:
            pid = frontier.pop()
            try:
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                pids.append(child)
                frontier.append(child)
        return pids

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in self._tree():
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
                hwm = int(fields.get("VmHWM", "0 kB").split()[0]) * 1024
                name = fields.get("Name", "?").strip()
                if hwm > self.peaks.get(pid, ("", 0))[1]:
                    self.peaks[pid] = (name, hwm)
            self._stop.wait(0.05)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max((peak for _, peak in self.peaks.values()), default=0)


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int, int]:
    """Wall time of a whole process, its exit status, and the peak memory of its tree."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    memory = PeakMemory(proc.pid) if Path("/proc").is_dir() else None
    _, stderr = proc.communicate()
    elapsed = time.perf_counter() - start
    peak = memory.stop() if memory else 0
    if proc.returncode not in (0,):
        sys.stderr.write(stderr.decode(errors="replace")[-2000:])
    return elapsed, proc.returncode, peak


def write_listing(path: Path, rels: list[str]) -> None:
    path.write_text("\n".join(rels) + "\n")


def write_input_csv(path: Path, record_list: Path, count: int) -> None:
    lines = record_list.read_text().splitlines()
    path.write_text("\n".join(lines[: count + 1]) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--small", type=int, default=5000)
    parser.add_argument("--large", type=int, default=15000)
    parser.add_argument("--naive-small", type=int, default=100)
    parser.add_argument("--naive-large", type=int, default=300)
    parser.add_argument("--reps", type=int, default=7,
                        help="interleaved repetitions, the fastest of each kind kept (default 7: "
                             "on a shared machine, rates drift 10-20%% between repetitions)")
    parser.add_argument("--dir", type=Path, default=None,
                        help="work directory (default: a new one in /dev/shm, else /tmp)")
    args = parser.parse_args()

    sys.path.insert(0, str(REPO / "src"))
    from wfdb2dicom.synthetic import generate_corpus

    base = args.dir or Path(tempfile.mkdtemp(
        prefix="wfdb2dicom-bench-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    base.mkdir(parents=True, exist_ok=True)
    print(f"work directory: {base}")
    t0 = time.perf_counter()
    corpus = generate_corpus(base / "corpus", args.large, seed=1, broken=False)
    print(f"generated {len(corpus.good)} records in {time.perf_counter() - t0:.1f} s")
    rels = list(corpus.good)
    scripts = base / "scripts"
    scripts.mkdir(exist_ok=True)
    (scripts / "floor.py").write_text(FLOOR_WORKER)
    (scripts / "naive.py").write_text(NAIVE_WORKER)
    sizes = {"small": args.small, "large": args.large}
    for name, count in sizes.items():
        write_listing(base / f"{name}.txt", rels[:count])
        write_input_csv(base / f"{name}.csv", corpus.record_list_csv, count)
    for name, count in (("naive_small", args.naive_small), ("naive_large", args.naive_large)):
        write_listing(base / f"{name}.txt", rels[:count])

    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    python = sys.executable

    def floor(size: str) -> tuple[float, int, int]:
        out = base / f"out-floor-{size}"
        shutil.rmtree(out, ignore_errors=True)
        return timed([python, str(scripts / "floor.py"), str(base / f"{size}.txt"),
                      str(corpus.root), str(out), str(args.workers)], env)

    def batch_cmd(size: str) -> list[str]:
        return [python, str(REPO / "run_convert.py"),
                "--input_csv", str(base / f"{size}.csv"),
                "--output_csv", str(base / f"out-batch-{size}.csv"),
                "--wfdb_dir", str(corpus.root), "--dcm_dir", str(base / f"out-batch-{size}"),
                "--df_info_pkl", str(corpus.machine_measurements_csv),
                "--workers", str(args.workers), "--checkpoint", "2000"]

    def batch(size: str) -> tuple[float, int, int]:
        shutil.rmtree(base / f"out-batch-{size}", ignore_errors=True)
        for leftover in base.glob(f"out-batch-{size}.csv*"):
            leftover.unlink()
        return timed(batch_cmd(size), env)

    def naive(size: str) -> tuple[float, int, int]:
        out = base / f"out-naive-{size}"
        shutil.rmtree(out, ignore_errors=True)
        return timed([python, str(scripts / "naive.py"), str(base / f"naive_{size}.txt"),
                      str(corpus.root), str(out), str(corpus.machine_measurements_csv)], env)

    best: dict[tuple[str, str], float] = {}
    peaks: dict[str, int] = {}
    for rep in range(1, args.reps + 1):
        for kind, run in (("floor", floor), ("batch", batch), ("naive", naive)):
            for size in ("small", "large"):
                elapsed, status, peak = run(size)
                if status not in (0,):
                    print(f"{kind} {size} exited with status {status}", file=sys.stderr)
                    return 1
                key = (kind, size)
                best[key] = min(best.get(key, float("inf")), elapsed)
                peaks[kind] = max(peaks.get(kind, 0), peak)
                print(f"rep {rep}: {kind:5s} {size:5s} {elapsed:7.2f} s  "
                      f"peak {peak / 2**20:6.1f} MB", flush=True)

    def marginal(kind: str, small: int, large: int) -> float:
        return (large - small) / (best[(kind, "large")] - best[(kind, "small")])

    floor_rate = marginal("floor", args.small, args.large)
    batch_rate = marginal("batch", args.small, args.large)
    naive_rate = marginal("naive", args.naive_small, args.naive_large)
    resume_time, resume_status, resume_peak = timed(batch_cmd("large"), env)

    print()
    print(f"steady-state rates (records/s, fastest of {args.reps}, {args.workers} processes "
          "for floor and batch, 1 for naive):")
    print(f"  I/O floor          {floor_rate:10.0f}")
    print(f"  batch (full)       {batch_rate:10.0f}")
    print(f"  naive (1 process)  {naive_rate:10.1f}")
    print(f"ratio batch / I/O floor:                {batch_rate / floor_rate:6.2f}  (goal >= 0.5)")
    per_process = batch_rate / args.workers
    print(f"ratio batch / naive, per process:       {per_process / naive_rate:6.1f}  (goal >= 20)")
    print(f"peak memory of any process: floor {peaks['floor'] / 2**20:.0f} MB, batch "
          f"{peaks['batch'] / 2**20:.0f} MB, naive {peaks['naive'] / 2**20:.0f} MB (goal < 300)")
    print(f"resume of the finished {args.large}-record run: {resume_time:.2f} s "
          f"(exit {resume_status}, goal < 2 s)")
    print(f"MIMIC-IV-ECG (800,035 records) at this rate: {800035 / batch_rate / 60:.1f} min")
    if args.dir is None:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
