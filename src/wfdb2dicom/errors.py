"""Exceptions that carry a one-line reason for the user.

Every refusal in the product is one of these. The batch engine reports them as
``{ExceptionType}: {message}`` (the seed's error vocabulary); the command line prints
the message on one line. Anything else escaping a conversion is a bug.
"""

from __future__ import annotations


class ConversionError(Exception):
    """The input cannot be converted; ``str(exc)`` is a one-line reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(" ".join(reason.split()))


class RecordError(ConversionError):
    """The WFDB record is missing, truncated, corrupt or inconsistent."""


class UnsupportedRecord(ConversionError):
    """The record is valid WFDB but no DICOM ECG IOD can hold it."""


class MetadataError(ConversionError):
    """The metadata needed for the object is missing or cannot be encoded."""


class OutputError(ConversionError):
    """The output cannot go where asked: the path is one of the conversion's own inputs, or
    the file system refuses the write (full disk, read-only, no permission)."""
