"""The I/O floor: processes that only read each record's .hea and .dat and write those bytes
to a new file (makedirs, temporary file, rename), the least any converter must do.

Run by bench/throughput.py:  python bench/floor.py LISTING SRC DST WORKERS
"""

from __future__ import annotations

import os
import sys
import tempfile
from multiprocessing import Pool
from pathlib import Path


def copy_slice(args: tuple[list[str], str, str]) -> None:
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
