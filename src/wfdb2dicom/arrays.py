"""Arrow arrays and scalars built from their buffers, so that pandas is never imported.

pyarrow imports pandas (~60 MB of memory, 0.1-0.5 s) the first time it converts a Python or
numpy object (``pa.array``, ``pa.scalar``, or a Python literal given to a compute function),
to check whether it is a pandas object. The batch parent needs none of pandas: it builds the
few arrays and scalars it needs here, from buffers.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def strings(values: list[str] | list[str | None]) -> pa.Array:
    """A string array of ``values`` (``None`` -> null)."""
    valid = None
    if any(value is None for value in values):
        mask = np.fromiter((value is not None for value in values), bool, len(values))
        valid = pa.py_buffer(np.packbits(mask, bitorder="little"))
    encoded = [value.encode() if value is not None else b"" for value in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    data = pa.py_buffer(b"".join(encoded))
    if offsets[-1] < 2**31:
        return pa.StringArray.from_buffers(
            len(encoded), pa.py_buffer(offsets.astype(np.int32)), data, valid)
    return pa.LargeStringArray.from_buffers(len(encoded), pa.py_buffer(offsets), data, valid)


def positions(values: np.ndarray) -> pa.Array:
    """An int64 array over a numpy array's memory (for ``take``)."""
    values = np.ascontiguousarray(values, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])


def text_scalar(value: str | None) -> pa.Scalar:
    """A string scalar (``None`` -> a null string), for compute functions."""
    return strings([value])[0]


def int64_values(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The values of an int64 array without nulls, as numpy (``to_numpy`` imports pandas)."""
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    parts = [np.frombuffer(chunk.buffers()[1], np.int64, len(chunk), chunk.offset * 8)
             for chunk in chunks]
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts) if parts else np.empty(0, np.int64)
