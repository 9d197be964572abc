"""Peak memory of a batch run over a MIMIC-sized input list and metadata table.

Run as its own process:  python bench/memory.py [--rows 810000] [--records 15000]

Generates a corpus of --records real records and tables of --rows rows (the records' rows
repeated under new study_ids; the extra input rows point at records that do not exist, so
they fail fast with a one-line reason and the run stays short), then runs the batch command
with 2 workers three times and reports the peak resident memory (VmHWM) of every process:

1. the small input list with the small metadata table (the throughput benchmark's run);
2. the small input list with the large metadata table;
3. the large input list with the large metadata table.

The goal (issue 4): no process above 300 MB in run 1, and each large table adds no more to
any process than the size of the table itself, taken as the size of its file (not of
our in-memory form of it, which would make the yardstick move with the code): the metadata
table from run 1 to run 2, the input list from run 2 to run 3, both together from 1 to 3.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import REPO, PeakMemory  # noqa: E402


def replicate(src: Path, dst: Path, rows: int, path_col: str | None) -> None:
    """``src`` repeated under new study_ids up to ``rows`` rows (extra paths made missing)."""
    with src.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        body = list(reader)
    sid = header.index("study_id")
    pcol = header.index(path_col) if path_col else None
    with dst.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        written, copy = 0, 0
        while written < rows:
            for row in body:
                if written >= rows:
                    break
                row = list(row)
                row[sid] = str(int(row[sid]) + copy * 10_000_000)
                if copy and pcol is not None:
                    row[pcol] = f"missing/{row[sid]}"
                writer.writerow(row)
                written += 1
            copy += 1


def run(base: Path, corpus_root: Path, input_csv: Path, metadata: Path, name: str) -> dict:
    out = base / f"out-{name}"
    cmd = [sys.executable, str(REPO / "run_convert.py"), "--input_csv", str(input_csv),
           "--output_csv", f"{out}.csv", "--wfdb_dir", str(corpus_root), "--dcm_dir", str(out),
           "--df_info_pkl", str(metadata), "--workers", "2", "--no-progress"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    memory = PeakMemory(proc.pid)
    proc.communicate()
    memory.stop()
    peaks = sorted((peak for _, peak in memory.peaks.values()), reverse=True)
    return {"seconds": time.perf_counter() - start, "status": proc.returncode, "peaks": peaks}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=810_000)
    parser.add_argument("--records", type=int, default=15_000)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    from wfdb2dicom.metadata import MetadataTable
    from wfdb2dicom.synthetic import generate_corpus

    base = Path(tempfile.mkdtemp(prefix="wfdb2dicom-mem-",
                                 dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    try:
        corpus = generate_corpus(base / "corpus", args.records, seed=1, broken=False)
        big_input, big_metadata = base / "input-big.csv", base / "metadata-big.csv"
        replicate(corpus.record_list_csv, big_input, args.rows, "path")
        replicate(corpus.machine_measurements_csv, big_metadata, args.rows, None)
        small = run(base, corpus.root, corpus.record_list_csv, corpus.machine_measurements_csv,
                    "small")
        middle = run(base, corpus.root, corpus.record_list_csv, big_metadata, "middle")
        large = run(base, corpus.root, big_input, big_metadata, "large")
        runs = {f"{args.records:,} rows, {args.records:,}-row metadata": small,
                f"{args.records:,} rows, {args.rows:,}-row metadata": middle,
                f"{args.rows:,} rows, {args.rows:,}-row metadata": large}
        for name, result in runs.items():
            peaks = [round(p / 2**20) for p in result["peaks"]]
            print(f"{name}: {result['seconds']:.1f} s, exit {result['status']}, "
                  f"peak per process (MB): {peaks}")
        metadata_mb, input_mb = (path.stat().st_size / 2**20 for path in (big_metadata,
                                                                        big_input))
        table_mb = MetadataTable.load(big_metadata).nbytes / 2**20
        print(f"metadata file {metadata_mb:.0f} MB (held in memory as {table_mb:.0f} MB); "
              f"input list file {input_mb:.0f} MB")

        def growth(before: dict, after: dict) -> float:
            """The largest growth of any process, processes matched by their rank in size
            (the parent first, then the workers, the fork server, the resource tracker)."""
            pairs = zip(before["peaks"], after["peaks"], strict=False)  # a respawn adds one
            return max(b - a for a, b in pairs) / 2**20

        checks = [("largest process, run 1", small["peaks"][0] / 2**20, 300.0),
                  ("growth from the metadata table (run 1 -> 2)", growth(small, middle),
                   metadata_mb),
                  ("growth from the input list (run 2 -> 3)", growth(middle, large), input_mb),
                  ("growth from both (run 1 -> 3)", growth(small, large),
                   metadata_mb + input_mb)]
        for label, value, goal in checks:
            print(f"{label}: {value:.0f} MB (goal: < {goal:.0f} MB) "
                  f"{'met' if value < goal else 'NOT MET'}")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
