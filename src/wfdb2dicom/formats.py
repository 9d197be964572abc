"""The facts of every WFDB signal format, in one table that header, reader and builder read.

Follows wfdb-python's block of tables in ``wfdb/io/_signal.py`` (``BIT_RES``,
``SAMPLE_VALUE_RANGE``, ``INVALID_SAMPLE_VALUE``, ``COMPRESSED_FMTS``, ``BYTES_PER_SAMPLE``);
``tests/test_formats.py`` checks this table against the installed wfdb's.

Spec: https://wfdb.io/spec/signal-files.html (and ``signal(5)`` of the WFDB Applications Guide).

Format 8 has no invalid-sample value. Each byte is a first difference from the previous
sample, not a value, and ``signal(5)`` gives -128 and +127 an ordinary meaning: the largest
differences of each sign, written where a larger step had to be clipped. No byte can
therefore mark "no sample", and the running sum it produces can reach any 32-bit value.
wfdb-python agrees (``INVALID_SAMPLE_VALUE["8"] is None``): a format-8 signal declares no
Waveform Padding Value. (The seed took -128, which would have declared real samples
missing.)
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import NamedTuple


class SignalFormat(NamedTuple):
    """One WFDB signal format."""

    code: str
    """The format as the header spells it (``212``)."""
    storage_bits: Fraction | None
    """Bits each sample takes in the signal file; None for FLAC (compressed, variable)."""
    significant_bits: int
    """Bits of each stored value (wfdb's ``BIT_RES``); format 8: bits of each difference."""
    invalid_value: int | None
    """WFDB's "no sample here" digital value, as wfdb returns it; None when the format has
    none (format 8)."""
    compressed: bool
    """FLAC-compressed (508, 516, 524): the file size does not follow from the header."""
    sample_range: tuple[int, int]
    """Smallest and largest digital sample the format can give (format 8: any int32, the
    running sum of its differences)."""

    def file_bytes(self, n_samples: int) -> int | None:
        """Bytes a file of ``n_samples`` samples (all its signals') holds, as wfdb reads it;
        None when the size does not follow (compressed formats)."""
        if self.storage_bits is None:
            return None
        if self.code == "310" and n_samples % 3 == 2:
            # 310 packs three samples per 32-bit word and writes the last word whole
            return 4 * math.ceil(n_samples / 3)
        return math.ceil(n_samples * self.storage_bits / 8)


def _range(bits: int) -> tuple[int, int]:
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def _format(code: str, storage: Fraction | int | None, bits: int, *, compressed: bool = False,
            invalid: bool = True, range_bits: int | None = None) -> SignalFormat:
    low, high = _range(range_bits or bits)
    return SignalFormat(
        code,
        None if storage is None else Fraction(storage),
        bits,
        low if invalid else None,
        compressed,
        (low, high),
    )


FORMATS: dict[str, SignalFormat] = {
    f.code: f
    for f in (
        _format("8", 8, 8, invalid=False, range_bits=32),
        _format("16", 16, 16),
        _format("24", 24, 24),
        _format("32", 32, 32),
        _format("61", 16, 16),
        _format("80", 8, 8),
        _format("160", 16, 16),
        _format("212", 12, 12),
        _format("310", Fraction(32, 3), 10),
        _format("311", Fraction(32, 3), 10),
        _format("508", None, 8, compressed=True),
        _format("516", None, 16, compressed=True),
        _format("524", None, 24, compressed=True),
    )
}
"""Every signal format wfdb reads, by the header's spelling."""


def bits_for_range(low: int, high: int) -> int:
    """Fewest bits of two's complement that hold every value in ``[low, high]`` (at least 1)."""
    return max((int(v) if v >= 0 else ~int(v)).bit_length() + 1 for v in (low, high))
