"""The format table agrees with wfdb-python's own tables, format by format."""

from __future__ import annotations

import pytest
from wfdb.io import _signal

from wfdb2dicom.formats import FORMATS, bits_for_range


def test_every_format_wfdb_reads_is_in_the_table() -> None:
    assert set(FORMATS) == set(_signal.DAT_FMTS)


@pytest.mark.parametrize("code", sorted(FORMATS, key=int))
def test_format_agrees_with_wfdb(code: str) -> None:
    fmt = FORMATS[code]
    assert fmt.code == code
    assert fmt.significant_bits == _signal.BIT_RES[code]
    assert fmt.invalid_value == _signal.INVALID_SAMPLE_VALUE[code]
    assert fmt.sample_range == _signal.SAMPLE_VALUE_RANGE[code]
    assert fmt.compressed == (code in _signal.COMPRESSED_FMTS)
    if fmt.compressed:
        assert fmt.storage_bits is None
    else:
        assert fmt.storage_bits == pytest.approx(8 * _signal.BYTES_PER_SAMPLE[code])


@pytest.mark.parametrize("code", sorted(set(FORMATS) - set(_signal.COMPRESSED_FMTS), key=int))
def test_file_size_agrees_with_wfdb(code: str) -> None:
    for n_samples in range(0, 13):
        assert FORMATS[code].file_bytes(n_samples) == _signal._required_byte_num(
            "read", code, n_samples), n_samples


def test_format_8_has_no_invalid_value() -> None:
    """-128 is format 8's largest negative difference (signal(5)), not "no sample"."""
    assert FORMATS["8"].invalid_value is None


@pytest.mark.parametrize(("low", "high", "bits"), [
    (481, 1311, 12), (-128, 127, 8), (-129, 0, 9), (0, 0, 1), (-1, 0, 1), (0, 128, 9),
    (-(2**31), 2**31 - 1, 32), (-32768, 32767, 16), (-2048, 2047, 12),
])
def test_bits_for_range(low: int, high: int, bits: int) -> None:
    assert bits_for_range(low, high) == bits
