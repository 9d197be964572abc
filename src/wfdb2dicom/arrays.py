"""Arrow arrays and scalars built from their buffers, so that pandas is never imported.

pyarrow imports pandas (~60 MB of memory, 0.1-0.5 s) the first time it converts a Python or
numpy object (``pa.array``, ``pa.scalar``, or a Python literal given to a compute function),
to check whether it is a pandas object. The batch parent needs none of pandas: it builds the
few arrays and scalars it needs here, from buffers.
"""

from __future__ import annotations

from array import array
from itertools import accumulate

import numpy as np
import pyarrow as pa


def positions(values: np.ndarray) -> pa.Array:
    """An int64 array over a numpy array's memory (for ``take``)."""
    values = np.ascontiguousarray(values, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])


def text_scalar(value: str | None) -> pa.Scalar:
    """A string scalar (``None`` -> a null string), for compute functions."""
    column = StringColumn(block=1)
    column.add([value])
    return column.chunked().chunk(0)[0]


class StringColumn:
    """A string column that grows as values are added: its bytes, each value's end, and
    which values are None; made into Arrow arrays of ``block`` values once, at the end.

    Grown with the standard library alone: numpy (and Arrow arrays made per block) leave
    small objects of their own among the short-lived ones of the caller's next block of
    values, and CPython's small-object allocator frees an arena (1 MiB) only when all of it
    is free: measured, 16 MB stayed resident per 800,000 input rows.
    """

    def __init__(self, block: int) -> None:
        self.block = block
        self.data = bytearray()
        self.ends = array("q")
        """End offset (in ``data``) of each value."""
        self.nulls: list[int] = []
        """Positions of the values that were None (rare)."""

    def add(self, values: list[str] | list[str | None]) -> None:
        if None in values:
            start = len(self.ends)
            self.nulls += [start + i for i, value in enumerate(values) if value is None]
        encoded = [value.encode() if value is not None else b"" for value in values]
        self.ends += array("q", accumulate(map(len, encoded), initial=len(self.data)))[1:]
        self.data += b"".join(encoded)

    def chunked(self) -> pa.ChunkedArray:
        """The column as arrays of ``block`` values over ``data`` (the text is not copied)."""
        ends = np.frombuffer(self.ends, np.int64)
        data = pa.py_buffer(self.data)
        valid = None
        if self.nulls:
            valid = np.ones(len(ends), bool)
            valid[self.nulls] = False
        chunks = []
        for start in range(0, max(len(ends), 1), self.block):
            stop = min(start + self.block, len(ends))
            first = int(ends[start - 1]) if start else 0
            offsets = np.zeros(stop - start + 1, np.int32)  # within the block: no 2 GiB limit
            offsets[1:] = ends[start:stop] - first
            bitmap = None
            if valid is not None:
                bitmap = pa.py_buffer(np.packbits(valid[start:stop], bitorder="little"))
            chunks.append(pa.StringArray.from_buffers(
                stop - start, pa.py_buffer(offsets), data.slice(first, int(offsets[-1])),
                bitmap))
        return pa.chunked_array(chunks, pa.string())


def int64_values(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The values of an int64 array without nulls, as numpy (``to_numpy`` imports pandas)."""
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    parts = [np.frombuffer(chunk.buffers()[1], np.int64, len(chunk), chunk.offset * 8)
             for chunk in chunks]
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts) if parts else np.empty(0, np.int64)
