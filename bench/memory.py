"""Peak memory of a batch run over a MIMIC-sized input list and metadata table.

Run as its own process:  python bench/memory.py [--rows 810000] [--records 15000]

Generates a corpus of --records real records and tables of --rows rows (the records' rows
repeated under new study_ids; the extra input rows point at records that do not exist, so
they fail fast with a one-line reason and the run stays short), then runs the batch command
with 2 workers and reports the peak resident memory (VmHWM) of every process, next to a
run over the --records rows alone and the size of the table as loaded. The goal (issue 4):
no process above 300 MB on the small run, and the large run's growth no more than the size
of the tables themselves.
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
        table_mb = MetadataTable.load(big_metadata)._table.nbytes / 2**20
        input_mb = big_input.stat().st_size / 2**20
        small = run(base, corpus.root, corpus.record_list_csv, corpus.machine_measurements_csv,
                    "small")
        large = run(base, corpus.root, big_input, big_metadata, "large")
        mb = [[round(p / 2**20) for p in r["peaks"]] for r in (small, large)]
        print(f"{args.records}-row run: {small['seconds']:.1f} s, peak per process (MB): {mb[0]}")
        print(f"{args.rows}-row run: {large['seconds']:.1f} s, peak per process (MB): {mb[1]}")
        growth = mb[1][0] - mb[0][0]
        print(f"metadata table as loaded: {table_mb:.0f} MB; input list: {input_mb:.0f} MB")
        print(f"growth of the largest process: {growth} MB (goal: <= {table_mb + input_mb:.0f} "
              f"MB, the tables themselves); small run under 300 MB: {mb[0][0] < 300}")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
