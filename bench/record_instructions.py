"""User-space instructions per MIMIC-IV-ECG-shaped record of one batch worker's work: the
deterministic figure to compare two versions of the code with, whatever the machine's noise.

    python bench/record_instructions.py [--src DIR] [--small 1000] [--large 2000]
                                        [--annotate FILE]

It generates a MIMIC-IV-ECG-shaped corpus (synthetic.generate_corpus of THIS checkout, seed 1,
so every version converts the same records), then runs bench/one_worker.py's batch worker
under valgrind's cachegrind at two sizes, with the code imported from ``--src`` (default this
checkout's src/; give another checkout's src/ to measure an older commit on the same corpus).
The difference between the sizes, per record, is the cost of the extra records alone (start-up
and imports cancel). PYTHONHASHSEED, OPENBLAS_NUM_THREADS and OMP_NUM_THREADS (Arrow's thread
pool, whose waiting threads spin) are fixed so two runs of the same
code count the same instructions.

``--annotate FILE`` writes where the extra records' instructions go, by C function (cg_diff of
the two runs, then cg_annotate: start-up and imports cancel, as in the figure) to FILE. Python
functions show as the interpreter's (``_PyEval_EvalFrameDefault``); for those, profile the
same worker with cProfile.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent


def count_instructions(cmd: list[str], env: dict[str, str], out: Path) -> int:
    """Instructions (cachegrind's I refs) of ``cmd``; its per-function counts stay in ``out``."""
    subprocess.run(["valgrind", "--tool=cachegrind", "--cache-sim=no",
                    f"--cachegrind-out-file={out}", *cmd], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    found = re.search(r"^summary:\s+(\d+)", out.read_text(), re.MULTILINE)
    if found is None:
        raise SystemExit(f"no summary line in {out}")
    return int(found[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", type=Path, default=REPO / "src",
                        help="the src/ directory whose code the worker imports")
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=2000)
    parser.add_argument("--annotate", type=Path, default=None,
                        help="write the marginal per-function table (cg_diff) here")
    parser.add_argument("--dir", type=Path, default=None,
                        help="work directory (default: a new one in /dev/shm, else /tmp)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")

    sys.path.insert(0, str(REPO / "src"))
    from wfdb2dicom.synthetic import generate_corpus

    base = args.dir or Path(tempfile.mkdtemp(
        prefix="wfdb2dicom-instr-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    base.mkdir(parents=True, exist_ok=True)
    corpus = generate_corpus(base / "corpus", args.large, seed=1, broken=False)
    rels = list(corpus.good)
    env = dict(os.environ, PYTHONPATH=str(args.src.resolve()), PYTHONHASHSEED="0",
               OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")  # Arrow's pool: one thread
    counts = {}
    for size, count in (("small", args.small), ("large", args.large)):
        listing = base / f"{size}.txt"
        listing.write_text("\n".join(rels[:count]) + "\n")
        out = base / f"out-{size}"
        shutil.rmtree(out, ignore_errors=True)
        counts[size] = count_instructions(
            [sys.executable, str(BENCH / "one_worker.py"), "batch", str(listing),
             str(corpus.root), str(out), str(corpus.machine_measurements_csv)],
            env, base / f"cachegrind-{size}.out")
    marginal = (counts["large"] - counts["small"]) / (args.large - args.small)
    print(f"code: {args.src.resolve()}")
    print(f"instructions: {args.small} records {counts['small']:,}, {args.large} records "
          f"{counts['large']:,}")
    print(f"batch worker, marginal instructions per record: {marginal:,.0f}")
    if args.annotate:
        diff = base / "cachegrind-marginal.out"
        with diff.open("w") as out:
            subprocess.run(["cg_diff", str(base / "cachegrind-small.out"),
                            str(base / "cachegrind-large.out")], check=True, stdout=out)
        table = subprocess.run(["cg_annotate", str(diff)],
                               check=True, capture_output=True, text=True).stdout
        args.annotate.write_text(table)
        print(f"where the extra {args.large - args.small} records' instructions go, by C "
              f"function: {args.annotate}")
    if args.dir is None:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
