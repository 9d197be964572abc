"""What durability costs on a real disk: syncing converted files before the ledger commits.

Run as its own process:  python bench/durability.py [--dir /var/tmp] [--records 1500]

A RAM disk (``/dev/shm``, where ``bench/throughput.py`` runs) syncs for free, so this runs on
a real file system (``--dir``; refuses a tmpfs). Two measurements, each repeated in
interleaved order (A B A B ...), reported as median and min-max:

1. **the design choice**: N files of a MIMIC object's size written as the batch writes them
   (temporary file, rename, directories as MIMIC's layout makes them), with no sync, with an
   ``fsync`` of each file and its directory (what a worker would do), and with one ``syncfs``
   per checkpoint of ``--checkpoint`` files (what the engine does);
2. **the batch**: ``run_convert.py`` over a generated MIMIC-shaped corpus, as it is (syncs
   once per checkpoint, ledger ``synchronous=FULL``) against ``--no-sync``.

On a shared machine wall times vary between runs; the paired order keeps that noise from
favouring one side.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OBJECT_BYTES = 121_000
"""About one MIMIC-IV-ECG object (12 x 5,000 samples x 2 bytes, plus the header)."""


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):8.3f} s  ({min(values):.3f}-{max(values):.3f})"


def write_files(root: Path, count: int, mode: str, checkpoint: int) -> float:
    """Seconds to write ``count`` files atomically under ``root``; ``mode``: none, file, fs."""
    from wfdb2dicom.atomic import sync_directory, sync_filesystem

    data = os.urandom(OBJECT_BYTES)
    started = time.perf_counter()
    for i in range(count):
        folder = root / f"p{i // 100:04d}" / f"s{i:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        tmp, final = folder / f".{i}.dcm.tmp", folder / f"{i}.dcm"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        os.write(fd, data)
        if mode == "file":
            os.fsync(fd)
        os.close(fd)
        os.replace(tmp, final)
        if mode == "file":
            sync_directory(folder)
        if mode == "fs" and (i + 1) % checkpoint == 0:
            sync_filesystem(root)
    if mode == "fs":
        sync_filesystem(root)
    return time.perf_counter() - started


def batch_seconds(corpus, work: Path, workers: int, checkpoint: int, sync: bool) -> float:
    if work.exists():
        shutil.rmtree(work)
    args = [sys.executable, str(REPO / "run_convert.py"),
            "--input_csv", str(corpus.record_list_csv), "--wfdb_dir", str(corpus.root),
            "--dcm_dir", str(work / "dcm"), "--output_csv", str(work / "out.csv"),
            "--df_info_pkl", str(corpus.machine_measurements_csv),
            "--workers", str(workers), "--checkpoint", str(checkpoint), "--no-progress"]
    if not sync:
        args.append("--no-sync")
    os.sync()  # start each run with nothing dirty from the one before
    started = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp"),
                        help="a directory on a real disk (default %(default)s)")
    parser.add_argument("--records", type=int, default=1500)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--checkpoint", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    fs_type = subprocess.run(["stat", "-f", "-c", "%T", str(args.dir)], capture_output=True,
                             text=True).stdout.strip()
    if fs_type in ("tmpfs", "ramfs"):
        parser.error(f"{args.dir} is a {fs_type}: a sync costs nothing there")
    print(f"file system of {args.dir}: {fs_type}; {os.cpu_count()} CPUs; "
          f"{args.reps} paired repetitions")

    from wfdb2dicom.synthetic import generate_corpus

    with tempfile.TemporaryDirectory(dir=args.dir, prefix="wfdb2dicom-durability-") as tmp:
        base = Path(tmp)
        times: dict[str, list[float]] = {"none": [], "file": [], "fs": []}
        for _ in range(args.reps):
            for mode in times:
                root = base / f"files-{mode}"
                os.sync()
                times[mode].append(write_files(root, args.files, mode, args.checkpoint))
                shutil.rmtree(root)
        print(f"\n1. {args.files} files of {OBJECT_BYTES // 1000} kB, written atomically:")
        labels = {"none": "no sync", "file": "fsync per file + dir",
                  "fs": f"syncfs per {args.checkpoint}"}
        for mode, label in labels.items():
            per_file = statistics.median(times[mode]) / args.files * 1e3
            print(f"   {label:<22} {spread(times[mode])}   {per_file:.3f} ms/file")

        corpus = generate_corpus(base / "mimic", args.records, seed=1, broken=False)
        runs: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.reps):
            for sync in (False, True):
                runs[sync].append(batch_seconds(corpus, base / "work", args.workers,
                                                args.checkpoint, sync))
        print(f"\n2. run_convert.py, {args.records} records, {args.workers} workers, "
              f"--checkpoint {args.checkpoint}:")
        for sync, label in ((False, "--no-sync"), (True, "sync (default)")):
            rate = args.records / statistics.median(runs[sync])
            print(f"   {label:<22} {spread(runs[sync])}   {rate:.0f} records/s")
        extra = statistics.median(runs[True]) - statistics.median(runs[False])
        print(f"   difference of medians: {extra:+.3f} s "
              f"({extra / statistics.median(runs[False]) * 100:+.1f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
