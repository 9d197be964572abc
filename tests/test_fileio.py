"""Reads are bounded: never more than the expected size plus the one byte that tells a longer
file, nor more than MAX_UNSIZED_READ for a file of unknown size (issue 13, item 9)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from wfdb2dicom import fileio
from wfdb2dicom.errors import RecordError
from wfdb2dicom.fileio import SizeMismatch, open_regular_file, read_file
from wfdb2dicom.header import read_header


def pipe_holding(size: int) -> tuple[int, threading.Thread]:
    """The read end of a pipe that a thread fills with ``size`` bytes, then closes."""
    read_end, write_end = os.pipe()

    def fill() -> None:
        data = memoryview(b"\x01" * size)
        try:
            while data:
                data = data[os.write(write_end, data):]
        except BrokenPipeError:
            pass
        finally:
            os.close(write_end)

    writer = threading.Thread(target=fill, daemon=True)
    writer.start()
    return read_end, writer


def left_in(read_end: int, writer: threading.Thread) -> int:
    """Bytes the reader left in the pipe."""
    left = 0
    while chunk := os.read(read_end, 1 << 20):
        left += len(chunk)
    writer.join()
    os.close(read_end)
    return left


@pytest.mark.parametrize("expected", [0, 100, fileio.SMALL_FILE + 5])
def test_expected_size_read_takes_one_byte_more_at_most(expected: int) -> None:
    read_end, writer = pipe_holding(expected + 1000)
    with pytest.raises(SizeMismatch) as info:
        read_file("stream", expected, opener=lambda _: os.dup(read_end))
    assert info.value.actual is None and info.value.expected == expected  # a stream
    assert left_in(read_end, writer) == 1000 - 1


def test_unsized_read_stops_after_the_bound() -> None:
    read_end, writer = pipe_holding(fileio.MAX_UNSIZED_READ + 1000)
    with pytest.raises(SizeMismatch):
        read_file("stream", opener=lambda _: os.dup(read_end))
    assert left_in(read_end, writer) == 1000 - 1


def test_exact_stream_is_read_whole() -> None:
    read_end, writer = pipe_holding(3 * fileio.SMALL_FILE)
    data = read_file("stream", 3 * fileio.SMALL_FILE, opener=lambda _: os.dup(read_end))
    assert len(data) == 3 * fileio.SMALL_FILE
    assert left_in(read_end, writer) == 0


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_endless_device_is_bounded() -> None:
    with pytest.raises(SizeMismatch):
        read_file("/dev/zero", 1000)
    with pytest.raises(SizeMismatch):
        read_file("/dev/zero")


def test_wrong_size_of_a_huge_declared_file_is_found_before_allocating(tmp_path: Path) -> None:
    path = tmp_path / "small"
    path.write_bytes(b"\0" * 10)
    with pytest.raises(SizeMismatch) as info:
        read_file(str(path), 1 << 62)  # allocating this would raise MemoryError
    assert (info.value.actual, info.value.expected) == (10, 1 << 62)
    with pytest.raises(SizeMismatch) as info:
        read_file(str(path), 4)
    assert (info.value.actual, info.value.expected) == (10, 4)


def test_oversized_header_is_refused(tmp_path: Path) -> None:
    hea = tmp_path / "r.hea"
    comment = "#" + "x" * 99 + "\n"
    hea.write_text("r 1 500 10\nr.dat 16\n" + comment * (fileio.MAX_UNSIZED_READ // 100 + 1))
    with pytest.raises(RecordError, match="larger than 4194304 bytes"):
        read_header(hea)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs (POSIX)")
def test_regular_file_opener_refuses_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(fileio.NotRegularFile, match="a FIFO"):
        open_regular_file(str(fifo))  # no writer: a blocking open would never return
    with pytest.raises(IsADirectoryError):
        open_regular_file(str(tmp_path))
    regular = tmp_path / "f"
    regular.write_bytes(b"abc")
    assert read_file(str(regular), 3, open_regular_file) == b"abc"
