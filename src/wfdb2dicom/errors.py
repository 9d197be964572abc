"""Exceptions that carry a one-line reason for the user.

Every refusal in the product is one of these. The batch engine reports them as
``{ExceptionType}: {message}`` (the seed's error vocabulary); the command line prints
the message on one line. Anything else escaping a conversion is a bug.
"""

from __future__ import annotations

from enum import IntEnum

MAX_REASON_CHARS = 500
"""The longest error text a user sees (stderr, output CSV, error log, ledger). A header
field of 100 MB must not become a 100 MB error line: the next run could not read its own
output CSV back (``csv`` refuses fields over 128 KiB)."""

CUT_NOTE = " [... cut: {n} characters in all]"


def one_line(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """``text`` on one line (whitespace collapsed) and at most ``limit`` characters plus a
    note saying it was cut. Looks at a bounded prefix only, so a huge text costs little."""
    head = " ".join(text[:limit * 4 + 1].split())
    if len(head) <= limit and len(text) <= limit * 4:
        return head
    return head[:limit].rstrip() + CUT_NOTE.format(n=len(text))


class ExitStatus(IntEnum):
    """Every command's exit status, in one place (README and ``--help`` list them)."""

    OK = 0
    """Done: every row converted (or was already), every object passed."""
    ROWS_FAILED = 1
    """The run completed but some rows failed (``wfdb2dicom batch``; ``run_convert.py``
    exits 0 then, as the seed did); for check commands, some object failed."""
    NOTHING_STARTED = 2
    """Refused before anything was written: bad arguments, unusable inputs, a damaged
    ledger, another run on the same output. ``convert``: the record was refused."""
    INTERNAL_ERROR = 3
    """A bug: please report it."""
    STOPPED_BY_IO_ERROR = 4
    """Stopped part-way by an I/O error on a named file (disk full, read-only); what was
    committed is kept: run the same command again to resume."""
    INTERRUPTED = 130
    """SIGINT (Ctrl-C), 128 + 2: run the same command again to resume."""
    TERMINATED = 143
    """SIGTERM, 128 + 15: run the same command again to resume."""


class ConversionError(Exception):
    """The input cannot be converted; ``str(exc)`` is a one-line reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(one_line(reason))


class RecordError(ConversionError):
    """The WFDB record is missing, truncated, corrupt or inconsistent."""


class UnsupportedRecord(ConversionError):
    """The record is valid WFDB but no DICOM ECG IOD can hold it."""


class MetadataError(ConversionError):
    """The metadata needed for the object is missing or cannot be encoded."""


class Terminated(BaseException):
    """SIGTERM, raised like ``KeyboardInterrupt`` is for SIGINT (see
    :func:`raise_on_sigterm`), so both end a command the same way: one line, nothing
    half-written, :attr:`ExitStatus.TERMINATED`."""


def raise_on_sigterm() -> None:
    """From now on SIGTERM raises :class:`Terminated` in the main thread (where the
    platform has SIGTERM handlers)."""
    import signal

    def handler(signum: int, frame: object) -> None:
        raise Terminated()

    try:
        signal.signal(signal.SIGTERM, handler)
    except (AttributeError, ValueError):  # no SIGTERM, or not the main thread
        pass


class OutputError(ConversionError):
    """The output cannot go where asked: the path is one of the conversion's own inputs, or
    the file system refuses the write (full disk, read-only, no permission)."""
