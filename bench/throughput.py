"""Throughput of the batch converter and of verify against the I/O floor, measured so that
noise shows instead of faking an answer.

Run as its own process:  python bench/throughput.py [--workers 2] [--reps 5]

It generates a MIMIC-IV-ECG-shaped corpus (in /dev/shm when it exists, so disk write-back
does not drown the signal) and runs, as whole processes, interleaved in every repetition:

  floor   processes that only read each record's .hea and .dat and write those bytes to a new
          file (bench/floor.py): the least any converter must do;
  batch   the full batch command (`python run_convert.py`) with the same number of processes;
  verify  `wfdb2dicom verify --output_csv` of that batch run's output (--all, no ledger);
  naive   (once) one process doing wfdb.rdrecord + a pydicom Dataset + save_as per record;
  base    with --baseline SRC: the batch command again, importing another checkout's
          code (SRC is its src/), to compare two versions side by side in the same runs.

Each run is timed two ways: wall time, and the CPU time of its whole process tree. This
process makes itself a child subreaper (``prctl(PR_SET_CHILD_SUBREAPER)``), so orphaned
grandchildren (the fork server and its workers) are re-parented to it and reaped, and their
CPU time reaches ``getrusage(RUSAGE_CHILDREN)`` too.

Rates are marginal: between a small and a large run of the same repetition, so start-up
cancels. The wall rates are reported as the median of the repetitions with their min-max
spread (not the fastest, which favours the luckiest run); a line says when the spread is too
wide to trust them. CPU per record, also marginal, goes beside them.

The clock of this shared VM is noisy and charges stolen time to processes, so it ends with a
cost that noise cannot move: system calls (strace -c -f) and user-space instructions
(valgrind's cachegrind) per record, of ONE worker's work run alone (bench/one_worker.py, no
parent polling beside it), marginal between --cost-small and --cost-large records, and the
instructions of the batch's parent per record (the whole batch with one worker, counted in
the parent alone).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent

PR_SET_CHILD_SUBREAPER = 36
NOISY_SPREAD = 0.25
"""(max - min) / median of a marginal wall rate above which the clock is not to be trusted."""

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


def become_subreaper() -> bool:
    """Orphaned descendants come to this process (Linux); False where that is not possible."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def reap_descendants(limit: float = 60.0) -> None:
    """Wait for every remaining descendant (orphans re-parented here) to exit."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.01)
    print("warning: descendants still running after the run; their CPU is not counted",
          file=sys.stderr)


def tree_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class Timing:
    wall: float
    cpu: float
    """CPU seconds of the whole process tree (user + system)."""
    status: int
    peak: int


def timed(cmd: list[str], env: dict[str, str] | None = None) -> Timing:
    """Wall time and tree CPU time of a whole process, its exit status, its tree's peak RSS."""
    cpu_before = tree_cpu()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    memory = PeakMemory(proc.pid) if Path("/proc").is_dir() else None
    _, stderr = proc.communicate()
    elapsed = time.perf_counter() - start
    peak = memory.stop() if memory else 0
    reap_descendants()
    if proc.returncode != 0:
        sys.stderr.write(stderr.decode(errors="replace")[-2000:])
    return Timing(elapsed, tree_cpu() - cpu_before, proc.returncode, peak)


def write_listing(path: Path, rels: list[str]) -> None:
    path.write_text("\n".join(rels) + "\n")


def write_input_csv(path: Path, record_list: Path, count: int) -> None:
    lines = record_list.read_text().splitlines()
    path.write_text("\n".join(lines[: count + 1]) + "\n")


def spread_text(values: list[float], fmt: str) -> str:
    return f"{format(statistics.median(values), fmt)} [{format(min(values), fmt)}-" \
           f"{format(max(values), fmt)}]"


def relative_spread(values: list[float]) -> float:
    """(max - min) / median; infinite when a marginal is not positive (a slower large run)."""
    middle = statistics.median(values)
    if min(values) <= 0 or middle <= 0:
        return float("inf")
    return (max(values) - min(values)) / middle


# -- deterministic cost --------------------------------------------------------------------

SCHEDULING_CALLS = frozenset({"futex"})
"""Left out of the count: how often threads wait for each other depends on how they were
scheduled (pyarrow's thread pool: 864 and 903 futex calls in two identical runs), not on
the work done."""


def strace_calls(cmd: list[str], env: dict[str, str], work: Path) -> int | None:
    """System calls of ``cmd`` and every process it starts (strace -c -f), those of
    :data:`SCHEDULING_CALLS` aside; None if there is no strace."""
    strace = shutil.which("strace")
    if strace is None:
        return None
    out = work / "strace.txt"
    subprocess.run([strace, "-c", "-f", "-o", str(out), *cmd], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    calls = 0
    for line in out.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[0][0].isdigit() and fields[-1] != "total" \
                and fields[-1] not in SCHEDULING_CALLS:
            calls += int(fields[3])
    return calls


def valgrind_instructions(cmd: list[str], env: dict[str, str], work: Path) -> int | None:
    """User-space instructions of ``cmd`` (valgrind's cachegrind, I refs); None if absent."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return None
    out = work / "cachegrind.out"
    subprocess.run([valgrind, "--tool=cachegrind", "--cache-sim=no",
                    f"--cachegrind-out-file={out}", *cmd], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    found = re.search(r"^summary:\s+(\d+)", out.read_text(), re.MULTILINE)
    return int(found[1]) if found else None


def deterministic_costs(args: argparse.Namespace, base: Path, corpus, rels: list[str],
                        env: dict[str, str], kinds: tuple[str, ...]
                        ) -> dict[str, dict[str, float | None]]:
    """Per kind, marginal system calls and instructions per record of one worker's work."""
    python = sys.executable
    # The same dict and set orders in every run; and Arrow's CSV reader on one thread: its
    # pool's threads spin while they wait, so loading the metadata table took 488M and 1,080M
    # instructions in two identical runs (445,343,447 and 445,335,342 on one thread).
    env = dict(env, PYTHONHASHSEED="0", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    work = base / "cost"
    work.mkdir(exist_ok=True)
    sizes = {"small": args.cost_small, "large": args.cost_large}
    for size, count in sizes.items():
        write_listing(work / f"{size}.txt", rels[:count])
        write_input_csv(work / f"{size}.csv", corpus.record_list_csv, count)
    # the batch's output of each size, for verify to read
    for size in sizes:
        out = work / f"made-{size}"
        shutil.rmtree(out, ignore_errors=True)
        for leftover in work.glob(f"made-{size}.csv*"):
            leftover.unlink()
        subprocess.run([python, str(REPO / "run_convert.py"), "--input_csv",
                        str(work / f"{size}.csv"), "--output_csv", str(work / f"made-{size}.csv"),
                        "--wfdb_dir", str(corpus.root), "--dcm_dir", str(out), "--df_info_pkl",
                        str(corpus.machine_measurements_csv), "--workers", "1"],
                       env=env, check=True, stdout=subprocess.DEVNULL)

    def command(kind: str, size: str) -> list[str]:
        out = work / f"out-{kind}-{size}"
        shutil.rmtree(out, ignore_errors=True)
        worker = [python, str(BENCH / "one_worker.py"), "batch" if kind == "base" else kind]
        if kind == "floor":
            return [*worker, str(work / f"{size}.txt"), str(corpus.root), str(out)]
        if kind in ("batch", "base"):
            return [*worker, str(work / f"{size}.txt"), str(corpus.root), str(out),
                    str(corpus.machine_measurements_csv)]
        return [*worker, str(work / f"made-{size}.csv"), str(corpus.root)]

    def kind_env(kind: str) -> dict[str, str]:
        return dict(env, PYTHONPATH=str(args.baseline)) if kind == "base" else env

    for kind in ("batch", "verify"):  # where a worker's time goes, natively, in-process
        stages = subprocess.run([*command(kind, "large"), "--stages"], env=env, check=True,
                                capture_output=True, text=True).stdout
        print(f"where one {kind} worker's time goes, by stage ({args.cost_large} records, "
              f"in-process, clock time):\n{stages.rstrip()}", flush=True)

    def parent_command(size: str) -> list[str]:
        """The whole batch with one worker: valgrind counts its parent alone (the worker comes
        from the fork server, which valgrind does not follow: Python starts it by exec)."""
        out = work / f"out-parent-{size}"
        shutil.rmtree(out, ignore_errors=True)
        for leftover in work.glob(f"parent-{size}.csv*"):
            leftover.unlink()
        return [python, str(REPO / "run_convert.py"), "--input_csv", str(work / f"{size}.csv"),
                "--output_csv", str(work / f"parent-{size}.csv"), "--wfdb_dir",
                str(corpus.root), "--dcm_dir", str(out), "--df_info_pkl",
                str(corpus.machine_measurements_csv), "--workers", "1", "--checkpoint", "500"]

    extra = args.cost_large - args.cost_small
    costs: dict[str, dict[str, float | None]] = {}
    if "batch" in args.instructions_for:
        counts = [valgrind_instructions(parent_command(size), env, work) for size in sizes]
        costs["parent"] = {"syscalls": None, "instructions": None if None in counts
                           else (counts[1] - counts[0]) / extra}  # type: ignore[operator]
    for kind in kinds:
        costs[kind] = {}
        for name, measure in (("syscalls", strace_calls), ("instructions", valgrind_instructions)):
            if name == "instructions" and kind not in args.instructions_for and not (
                    kind == "base" and "batch" in args.instructions_for):
                costs[kind][name] = None
                continue
            counts = [measure(command(kind, size), kind_env(kind), work) for size in sizes]
            costs[kind][name] = (None if None in counts
                                 else (counts[1] - counts[0]) / extra)  # type: ignore[operator]
    return costs


# -- main ----------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--small", type=int, default=5000)
    parser.add_argument("--large", type=int, default=15000)
    parser.add_argument("--naive-small", type=int, default=100)
    parser.add_argument("--naive-large", type=int, default=300)
    parser.add_argument("--reps", type=int, default=5,
                        help="interleaved repetitions; medians and min-max spreads reported")
    parser.add_argument("--cost-small", type=int, default=1000)
    parser.add_argument("--cost-large", type=int, default=2000)
    parser.add_argument("--instructions-for", default="floor,batch",
                        help="kinds whose instructions valgrind counts (slow: ~50x), "
                             "comma-separated (default floor,batch; add verify if you wait)")
    parser.add_argument("--baseline", type=Path, default=None, metavar="SRC",
                        help="another checkout's src/: its batch runs beside this one's, "
                             "interleaved, as the kind 'base' (a before/after comparison)")
    parser.add_argument("--no-cost", action="store_true", help="skip the deterministic costs")
    parser.add_argument("--cost-only", action="store_true",
                        help="only the deterministic costs (and stages), no timed runs")
    parser.add_argument("--dir", type=Path, default=None,
                        help="work directory (default: a new one in /dev/shm, else /tmp)")
    args = parser.parse_args()
    args.instructions_for = tuple(k for k in args.instructions_for.split(",") if k)

    subreaper = become_subreaper()
    sys.path.insert(0, str(REPO / "src"))
    from wfdb2dicom.synthetic import generate_corpus

    base = args.dir or Path(tempfile.mkdtemp(
        prefix="wfdb2dicom-bench-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    base.mkdir(parents=True, exist_ok=True)
    print(f"work directory: {base}")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"({os.cpu_count()} CPUs)")
    if not subreaper:
        print("warning: cannot become a child subreaper: orphans' CPU time is not counted")
    t0 = time.perf_counter()
    corpus = generate_corpus(base / "corpus", max(args.large, args.cost_large), seed=1,
                             broken=False)
    print(f"generated {len(corpus.good)} records in {time.perf_counter() - t0:.1f} s")
    rels = list(corpus.good)
    scripts = base / "scripts"
    scripts.mkdir(exist_ok=True)
    (scripts / "naive.py").write_text(NAIVE_WORKER)
    sizes = {"small": args.small, "large": args.large}
    for name, count in sizes.items():
        write_listing(base / f"{name}.txt", rels[:count])
        write_input_csv(base / f"{name}.csv", corpus.record_list_csv, count)
    for name, count in (("naive_small", args.naive_small), ("naive_large", args.naive_large)):
        write_listing(base / f"{name}.txt", rels[:count])

    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    python = sys.executable

    def floor(size: str) -> Timing:
        out = base / f"out-floor-{size}"
        shutil.rmtree(out, ignore_errors=True)
        return timed([python, str(BENCH / "floor.py"), str(base / f"{size}.txt"),
                      str(corpus.root), str(out), str(args.workers)], env)

    def batch_cmd(size: str) -> list[str]:
        return [python, str(REPO / "run_convert.py"),
                "--input_csv", str(base / f"{size}.csv"),
                "--output_csv", str(base / f"out-batch-{size}.csv"),
                "--wfdb_dir", str(corpus.root), "--dcm_dir", str(base / f"out-batch-{size}"),
                "--df_info_pkl", str(corpus.machine_measurements_csv),
                "--workers", str(args.workers), "--checkpoint", "2000"]

    def batch(size: str) -> Timing:
        shutil.rmtree(base / f"out-batch-{size}", ignore_errors=True)
        for leftover in base.glob(f"out-batch-{size}.csv*"):
            leftover.unlink()
        return timed(batch_cmd(size), env)

    def baseline_batch(size: str) -> Timing:
        shutil.rmtree(base / f"out-base-{size}", ignore_errors=True)
        for leftover in base.glob(f"out-base-{size}.csv*"):
            leftover.unlink()
        command = batch_cmd(size)
        command[command.index("--output_csv") + 1] = str(base / f"out-base-{size}.csv")
        command[command.index("--dcm_dir") + 1] = str(base / f"out-base-{size}")
        return timed(command, dict(env, PYTHONPATH=str(args.baseline)))

    def verify_cmd(size: str) -> list[str]:
        return [python, "-m", "wfdb2dicom.cli", "verify", "--output_csv",
                str(base / f"out-batch-{size}.csv"), "--workers", str(args.workers),
                "--no-progress"]

    def verify(size: str) -> Timing:
        Path(f"{base / f'out-batch-{size}.csv'}.verified.sqlite").unlink(missing_ok=True)
        return timed([*verify_cmd(size), "--all"], env)

    def naive(size: str) -> Timing:
        out = base / f"out-naive-{size}"
        shutil.rmtree(out, ignore_errors=True)
        return timed([python, str(scripts / "naive.py"), str(base / f"naive_{size}.txt"),
                      str(corpus.root), str(out), str(corpus.machine_measurements_csv)], env)

    kinds = ("floor", "batch", "verify") + (("base",) if args.baseline else ())
    if args.cost_only:
        args.reps = 0
    runs: dict[tuple[str, str], list[Timing]] = {}
    peaks: dict[str, int] = {}
    for rep in range(1, args.reps + 1):
        schedule = [(kind, run) for kind, run in (("floor", floor), ("batch", batch),
                                                  ("verify", verify), ("base", baseline_batch))
                    if kind in kinds]
        if rep == 1:
            schedule.append(("naive", naive))
        for kind, run in schedule:
            for size in ("small", "large"):
                timing = run(size)
                if timing.status != 0:
                    print(f"{kind} {size} exited with status {timing.status}", file=sys.stderr)
                    return 1
                runs.setdefault((kind, size), []).append(timing)
                peaks[kind] = max(peaks.get(kind, 0), timing.peak)
                print(f"rep {rep}: {kind:6s} {size:5s} wall {timing.wall:7.2f} s  "
                      f"CPU {timing.cpu:7.2f} s  peak {timing.peak / 2**20:6.1f} MB",
                      flush=True)

    if not args.cost_only:
        report_timings(args, runs, peaks, kinds, timed, batch_cmd, verify_cmd, env)
    if not args.no_cost:
        report_costs(args, base, corpus, rels, env, kinds)
    if args.dir is None:
        shutil.rmtree(base, ignore_errors=True)
    return 0


def report_timings(args: argparse.Namespace, runs: dict, peaks: dict, kinds: tuple[str, ...],
                   timed: Any, batch_cmd: Any, verify_cmd: Any, env: dict[str, str]) -> None:
    """The marginal rates and CPU per record of the timed runs, their ratios, and the rest."""

    def marginal_rates(kind: str, small: int, large: int) -> list[float]:
        return [(large - small) / (big.wall - little.wall)
                for little, big in zip(runs[(kind, "small")], runs[(kind, "large")], strict=True)]

    def marginal_cpu(kind: str, small: int, large: int) -> list[float]:
        """µs of tree CPU per record, per repetition."""
        return [(big.cpu - little.cpu) / (large - small) * 1e6
                for little, big in zip(runs[(kind, "small")], runs[(kind, "large")], strict=True)]

    rates = {kind: marginal_rates(kind, args.small, args.large) for kind in kinds}
    cpus = {kind: marginal_cpu(kind, args.small, args.large) for kind in kinds}
    naive_rate = marginal_rates("naive", args.naive_small, args.naive_large)[0]
    resume = timed(batch_cmd("large"), env)
    reverify = timed(verify_cmd("large"), env)  # after the --all run: nothing changed

    print()
    print(f"marginal figures ({args.small} -> {args.large} records), median of {args.reps} "
          f"repetitions [min-max]; {args.workers} processes for floor, batch and verify:")
    print(f"  {'':8s} {'wall rate (records/s)':>28s} {'tree CPU per record (µs)':>30s}")
    for kind in kinds:
        print(f"  {kind:8s} {spread_text(rates[kind], '.0f'):>28s} "
              f"{spread_text(cpus[kind], '.0f'):>30s}")
    print(f"  naive    {naive_rate:28.1f}   (1 process, one repetition)")

    def per_rep(numerator: list[float], denominator: list[float]) -> list[float]:
        return [a / b for a, b in zip(numerator, denominator, strict=True)]

    print("ratios (median of the per-repetition ratios [min-max]):")
    for label, values, goal in (
        ("batch / floor, wall rate", per_rep(rates["batch"], rates["floor"]), "goal >= 0.5"),
        ("floor / batch, CPU per record", per_rep(cpus["floor"], cpus["batch"]),
         "goal >= 0.5, aim 0.75"),
        ("verify / batch, wall rate", per_rep(rates["verify"], rates["batch"]),
         "goal >= 0.15, aim 0.25"),
        ("batch / verify, CPU per record", per_rep(cpus["batch"], cpus["verify"]), ""),
    ):
        print(f"  {label:32s} {spread_text(values, '.2f'):>18s}" + (f"   ({goal})" if goal else ""))
    if "base" in kinds:
        print(f"  {'batch / base, wall rate':32s} "
              f"{spread_text(per_rep(rates['batch'], rates['base']), '.2f'):>18s}"
              f"   (this checkout against {args.baseline})")
        print(f"  {'base / batch, CPU per record':32s} "
              f"{spread_text(per_rep(cpus['base'], cpus['batch']), '.2f'):>18s}")
    per_process = statistics.median(rates["batch"]) / args.workers
    print(f"  batch / naive, per process      {per_process / naive_rate:6.1f}   (goal >= 20)")
    noisy = {kind: relative_spread(rates[kind]) for kind in kinds
             if relative_spread(rates[kind]) > NOISY_SPREAD}
    if noisy:
        worst = "; ".join(f"{kind}: max-min is {100 * spread:.0f}% of the median"
                          if spread != float("inf") else
                          f"{kind}: a large run took no longer than its small one"
                          for kind, spread in noisy.items())
        print(f"THE MACHINE WAS TOO NOISY for these wall rates ({worst}; the limit is "
              f"{100 * NOISY_SPREAD:.0f}%): trust the CPU and deterministic figures instead")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"peak memory of any process: floor {peaks['floor'] / 2**20:.0f} MB, batch "
          f"{peaks['batch'] / 2**20:.0f} MB, verify {peaks['verify'] / 2**20:.0f} MB, naive "
          f"{peaks['naive'] / 2**20:.0f} MB (goal < 300)")
    print(f"resume of the finished {args.large}-record batch run: {resume.wall:.2f} s "
          f"(exit {resume.status}, goal < 2 s)")
    print(f"verify again of the unchanged {args.large}-record run (ledger): {reverify.wall:.2f} "
          f"s (exit {reverify.status})")
    print(f"MIMIC-IV-ECG (800,035 records) at the median rates: batch "
          f"{800035 / statistics.median(rates['batch']) / 60:.1f} min, verify "
          f"{800035 / statistics.median(rates['verify']) / 60:.1f} min")



def report_costs(args: argparse.Namespace, base: Path, corpus: Any, rels: list[str],
                 env: dict[str, str], kinds: tuple[str, ...]) -> None:
    """Where one worker's time goes, and the deterministic costs per record."""
    print()
    costs = deterministic_costs(args, base, corpus, rels, env, kinds)
    print(f"deterministic cost per record: one worker's work alone (bench/one_worker.py), "
          f"marginal {args.cost_small} -> {args.cost_large} records:")
    print(f"  {'':8s} {'system calls':>14s} {'instructions':>14s}")
    for kind in kinds:
        calls, instructions = costs[kind]["syscalls"], costs[kind]["instructions"]
        print(f"  {kind:8s} {'-' if calls is None else f'{calls:.1f}':>14s} "
              f"{'-' if instructions is None else f'{instructions:,.0f}':>14s}")
    parent = costs.get("parent", {}).get("instructions")
    if parent is not None:
        print(f"  {'parent':8s} {'-':>14s} {parent:14,.0f}   (the batch's parent, per record: "
              "planning, results, ledger, output CSV and manifest)")
    floor_c, batch_c = costs["floor"], costs["batch"]
    if floor_c["syscalls"] and batch_c["syscalls"]:
        print(f"  batch / floor: system calls {batch_c['syscalls'] / floor_c['syscalls']:.2f}"
              + (f", instructions {batch_c['instructions'] / floor_c['instructions']:.2f}"
                 if floor_c["instructions"] and batch_c["instructions"] else ""))
    base_c = costs.get("base")
    if base_c and base_c["instructions"] and batch_c["instructions"]:
        print(f"  batch / base: instructions {batch_c['instructions'] / base_c['instructions']:.3f}"
              + (f", system calls {batch_c['syscalls'] / base_c['syscalls']:.2f}"
                 if base_c["syscalls"] and batch_c["syscalls"] else ""))
    if shutil.which("strace") is None or shutil.which("valgrind") is None:
        print("  (apt-get install strace valgrind for the missing figures)")


if __name__ == "__main__":
    sys.exit(main())
