"""The batch on a 2-worker Dask ``LocalCluster`` against the local engine, side by side.

Run as its own process:  python bench/dask.py [--workers 2] [--reps 3]

On bench/throughput.py's MIMIC-IV-ECG-shaped corpus (15,000 records, in /dev/shm when there
is one), it runs ``run_convert.py`` without and with ``--scheduler local`` on 5,000 and
15,000 records, interleaved, ``--reps`` times, and prints for each backend:

  wall      whole-process seconds, median and spread (min-max);
  CPU       user + system seconds of the whole process tree (parent, scheduler, nannies,
            workers: this process is their subreaper), per record;
  marginal  the steady-state rate between 5,000 and 15,000 records (start-up cancels),
            from the medians, and the fixed start-up cost it implies.

The Dask overhead is the ratio of the marginal rates (goal: Dask >= 0.8x local).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

# bench/throughput.py (beside this file): the same corpus, input lists and whole-tree timing
from throughput import become_subreaper, timed, write_input_csv

REPO = Path(__file__).resolve().parents[1]


def run_timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of a whole process tree (bench/throughput.py's ``timed``: this
    process is the tree's subreaper, so every descendant's CPU is counted)."""
    timing = timed(cmd, env)
    if timing.status != 0:
        raise SystemExit(f"{' '.join(cmd[:2])} exited with status {timing.status}")
    return timing.wall, timing.cpu


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):7.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--small", type=int, default=5000)
    parser.add_argument("--large", type=int, default=15000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()

    sys.path.insert(0, str(REPO / "src"))
    # bench/throughput.py: the same corpus, input lists and whole-tree timing

    from wfdb2dicom.synthetic import generate_corpus

    if not become_subreaper():
        print("warning: not a subreaper here: CPU of orphaned workers is not counted")
    base = args.dir or Path(tempfile.mkdtemp(
        prefix="wfdb2dicom-bench-dask-",
        dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    base.mkdir(parents=True, exist_ok=True)
    print(f"work directory: {base}")
    corpus = generate_corpus(base / "corpus", args.large, seed=1, broken=False)
    sizes = {"small": args.small, "large": args.large}
    for name, count in sizes.items():
        write_input_csv(base / f"{name}.csv", corpus.record_list_csv, count)
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    backends = {"local": [], "dask": ["--scheduler", "local"]}

    def run(backend: str, size: str) -> tuple[float, float]:
        out = base / f"out-{backend}-{size}"
        shutil.rmtree(out, ignore_errors=True)
        for leftover in base.glob(f"out-{backend}-{size}.csv*"):
            leftover.unlink()
        return run_timed([sys.executable, str(REPO / "run_convert.py"),
                      "--input_csv", str(base / f"{size}.csv"),
                      "--output_csv", str(base / f"out-{backend}-{size}.csv"),
                      "--wfdb_dir", str(corpus.root), "--dcm_dir", str(out),
                      "--df_info_pkl", str(corpus.machine_measurements_csv),
                      "--workers", str(args.workers), "--no-progress",
                      *backends[backend]], env)

    walls: dict[tuple[str, str], list[float]] = {}
    cpus: dict[tuple[str, str], list[float]] = {}
    for rep in range(1, args.reps + 1):
        for backend in backends:
            for size in sizes:
                wall, cpu = run(backend, size)
                walls.setdefault((backend, size), []).append(wall)
                cpus.setdefault((backend, size), []).append(cpu)
                print(f"rep {rep}: {backend:5s} {sizes[size]:6d} records  wall {wall:6.2f} s  "
                      f"CPU {cpu:6.2f} s", flush=True)

    print()
    print(f"{args.workers} workers, medians of {args.reps} (min-max); the machine is shared "
          "and noisy")
    rates = {}
    for backend in backends:
        print(f"{backend}:")
        for size, count in sizes.items():
            per_record = [c / count * 1000 for c in cpus[(backend, size)]]
            print(f"  {count:6d} records  wall s {spread(walls[(backend, size)])}  "
                  f"CPU ms/record {spread(per_record)}")
        small_wall = statistics.median(walls[(backend, "small")])
        large_wall = statistics.median(walls[(backend, "large")])
        rate = (args.large - args.small) / (large_wall - small_wall)
        startup = small_wall - args.small / rate
        marginal_cpu = (statistics.median(cpus[(backend, "large")])
                        - statistics.median(cpus[(backend, "small")])) / (
            args.large - args.small) * 1000
        rates[backend] = rate
        print(f"  marginal rate {rate:7.0f} records/s   fixed start-up {startup:5.2f} s   "
              f"marginal CPU {marginal_cpu:.3f} ms/record")
    print(f"Dask / local marginal rate: {rates['dask'] / rates['local']:.2f}  (goal >= 0.8)")
    if args.dir is None:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
