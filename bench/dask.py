"""The batch on a 2-worker Dask ``LocalCluster`` against the local engine, side by side.

Run as its own process:  python bench/dask.py [--workers 2] [--reps 3] [--baseline SRC]

On bench/throughput.py's MIMIC-IV-ECG-shaped corpus (15,000 records, in /dev/shm when there
is one), it runs ``run_convert.py`` without and with ``--scheduler local`` on 5,000 and
15,000 records, interleaved, ``--reps`` times, and prints for each backend:

  wall      whole-process seconds, median and spread (min-max);
  first     seconds from launch to the first converted record on disk: the start-up cost,
            measured directly (the output tree is watched until a ``.dcm`` appears);
  CPU       user + system seconds of the whole process tree (parent, scheduler, nannies,
            fork server, workers: this process is their subreaper), per record; split into
            the parent process alone (with a LocalCluster: its scheduler, nannies and client
            too, all threads of that process; read from /proc while it is a zombie) and the
            rest of the tree (the workers);
  marginal  the steady-state rate between 5,000 and 15,000 records (start-up cancels),
            from the medians, the fixed start-up cost it implies, and the marginal CPU.

The Dask overhead is the ratio of the marginal rates (goal: Dask >= 0.8x local).
``--baseline SRC`` adds a third backend, Dask run from another checkout's ``src`` (e.g. an
older commit's, from ``git archive``), interleaved with the others: a before/after pair
under the same load.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# bench/throughput.py (beside this file): the same corpus, input lists and subreaping
from throughput import become_subreaper, reap_descendants, tree_cpu, write_input_csv

REPO = Path(__file__).resolve().parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Cost:
    wall: float
    cpu: float
    """CPU seconds of the whole process tree (user + system)."""
    parent_cpu: float
    """CPU seconds of the process started (all its threads), without its children."""
    first: float
    """Seconds from launch to the first ``.dcm`` in the output tree."""


class FirstOutput:
    """Watches a directory tree from a thread until a ``.dcm`` file appears in it."""

    def __init__(self, root: Path, start: float) -> None:
        self.root, self.start = root, start
        self.seen: float = float("nan")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _found(self) -> bool:
        for _, _, files in os.walk(self.root):
            if any(name.endswith(".dcm") for name in files):
                return True
        return False

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._found():
                self.seen = time.perf_counter() - self.start
                return
            self._stop.wait(0.01)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.seen


def own_cpu(pid: int) -> float:
    """User + system seconds of process ``pid`` alone, waited for but not reaped (a zombie
    keeps its counts; its children's are apart, in other fields)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def run_measured(cmd: list[str], env: dict[str, str], out: Path) -> Cost:
    """Wall, tree CPU, the parent's own CPU and the time to the first output of ``cmd``."""
    cpu_before = tree_cpu()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = FirstOutput(out, start)
    assert proc.stderr is not None
    stderr = proc.stderr.read()
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    wall = time.perf_counter() - start
    parent = own_cpu(proc.pid)
    proc.wait()
    first_output = first.stop()
    reap_descendants()
    if proc.returncode != 0:
        sys.stderr.write(stderr.decode(errors="replace")[-2000:])
        raise SystemExit(f"{' '.join(cmd[:2])} exited with status {proc.returncode}")
    return Cost(wall, tree_cpu() - cpu_before, parent, first_output)


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):7.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--small", type=int, default=5000)
    parser.add_argument("--large", type=int, default=15000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--baseline", type=Path, default=None, metavar="SRC",
                        help="also run Dask from this src directory (another checkout's)")
    args = parser.parse_args()

    sys.path.insert(0, str(REPO / "src"))
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
    src = {"local": REPO / "src", "dask": REPO / "src"}
    if args.baseline is not None:
        src["dask-baseline"] = args.baseline.resolve()
    with open("/proc/loadavg") as handle:
        print(f"load average at start: {' '.join(handle.read().split()[:3])}")

    def run(backend: str, size: str) -> Cost:
        out = base / f"out-{backend}-{size}"
        shutil.rmtree(out, ignore_errors=True)
        for leftover in base.glob(f"out-{backend}-{size}.csv*"):
            leftover.unlink()
        scheduler = [] if backend == "local" else ["--scheduler", "local"]
        env = dict(os.environ, PYTHONPATH=str(src[backend]))
        return run_measured([sys.executable, str(REPO / "run_convert.py"),
                             "--input_csv", str(base / f"{size}.csv"),
                             "--output_csv", str(base / f"out-{backend}-{size}.csv"),
                             "--wfdb_dir", str(corpus.root), "--dcm_dir", str(out),
                             "--df_info_pkl", str(corpus.machine_measurements_csv),
                             "--workers", str(args.workers), "--no-progress",
                             *scheduler], env, out)

    try:
        report(args, src, sizes, run)
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)
    return 0


def report(args: argparse.Namespace, src: dict[str, Path], sizes: dict[str, int],
           run: Callable[[str, str], Cost]) -> None:
    """Run every backend on every size, interleaved, ``args.reps`` times; print the table."""
    costs: dict[tuple[str, str], list[Cost]] = {}
    for rep in range(1, args.reps + 1):
        for backend in src:
            for size in sizes:
                cost = run(backend, size)
                costs.setdefault((backend, size), []).append(cost)
                print(f"rep {rep}: {backend:13s} {sizes[size]:6d} records  wall {cost.wall:6.2f} s"
                      f"  first {cost.first:5.2f} s  CPU {cost.cpu:6.2f} s (parent "
                      f"{cost.parent_cpu:5.2f})", flush=True)

    with open("/proc/loadavg") as handle:
        load = " ".join(handle.read().split()[:3])
    print()
    print(f"{args.workers} workers, medians of {args.reps} (min-max); load average at the end "
          f"{load}; the machine is shared and noisy")
    rates = {}
    for backend in src:
        print(f"{backend}:")
        for size, count in sizes.items():
            runs = costs[(backend, size)]
            print(f"  {count:6d} records  wall s {spread([c.wall for c in runs])}  first "
                  f"record s {spread([c.first for c in runs])}")
            print(f"{'':16s}CPU ms/record {spread([c.cpu / count * 1000 for c in runs])}  "
                  f"parent {spread([c.parent_cpu / count * 1000 for c in runs])}  rest "
                  f"{spread([(c.cpu - c.parent_cpu) / count * 1000 for c in runs])}")

        def median(field: str, size: str, backend: str = backend) -> float:
            return statistics.median(getattr(c, field) for c in costs[(backend, size)])

        n_extra = args.large - args.small
        rate = n_extra / (median("wall", "large") - median("wall", "small"))
        startup = median("wall", "small") - args.small / rate
        marginal = {field: (median(field, "large") - median(field, "small")) / n_extra * 1000
                    for field in ("cpu", "parent_cpu")}
        rates[backend] = rate
        print(f"  marginal rate {rate:7.0f} records/s   fixed start-up {startup:5.2f} s   "
              f"marginal CPU {marginal['cpu']:.3f} ms/record (parent "
              f"{marginal['parent_cpu']:.3f}, rest {marginal['cpu'] - marginal['parent_cpu']:.3f})")
    for backend in src:
        if backend != "local":
            print(f"{backend} / local marginal rate: {rates[backend] / rates['local']:.2f}  "
                  "(goal >= 0.8)")


if __name__ == "__main__":
    sys.exit(main())
