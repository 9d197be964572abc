"""What a task can come to, and the seed's error vocabulary for the ways it can fail.

Every error string a user sees in ``dcm_error`` or the error log is made here, so the
vocabulary of the seed's ``run_convert.py`` has one home: ``Timeout>{N}s``,
``Missing df_info row for study_id``, ``WorkerCrash: ...`` and ``{ExceptionType}: {message}``
(which covers ``ValidationFailed: ...``, ``RecordError: ...`` and our ``UnsafePath: ...``).
An exception that is neither a refusal of the input (:class:`~wfdb2dicom.errors.ConversionError`)
nor an I/O error is a bug: ``InternalError: {ExceptionType}: {message}``, counted apart.
Every text is one line of at most :data:`~wfdb2dicom.errors.MAX_REASON_CHARS` characters.
"""

from __future__ import annotations

import signal

from ..errors import ConversionError, one_line

DONE = 0
"""Converted and written."""
KEPT = 1
"""``--verify-existing``: the file already there passed the check and was left alone."""
FAILED = 2
"""Not converted; the result carries the error string."""

Result = tuple[int, int, "str | None"]
"""``(task_id, DONE | KEPT | FAILED, error or None)``: what workers send back."""

MISSING_METADATA = "Missing df_info row for study_id"
"""The seed's string for a study the metadata table lacks (same text as ``convert``'s)."""


INTERNAL_ERROR = "InternalError"
"""The label of a failure that is a bug, not bad input (``InternalError: TypeError: ...``)."""


def describe_exception(exc: BaseException) -> str:
    """``{ExceptionType}: {message}`` on one line (bounded), never a traceback."""
    message = one_line(str(exc))
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def describe_failure(exc: BaseException) -> str:
    """A task's error string: the input's refusal or an I/O error as
    :func:`describe_exception` gives it; anything else labelled a bug."""
    if isinstance(exc, (ConversionError, OSError)):
        return describe_exception(exc)
    return internal_error(describe_exception(exc))


def internal_error(detail: str) -> str:
    """``InternalError: {detail}``."""
    return one_line(f"{INTERNAL_ERROR}: {detail}")


def timeout_error(seconds: float) -> str:
    """``Timeout>60s`` for ``--timeout 60`` (the seed's text; ``:g`` keeps integers bare)."""
    return f"Timeout>{seconds:g}s"


def worker_crash_error(exitcode: int | None) -> str:
    """``WorkerCrash: worker died with exit code -9 (SIGKILL)``."""
    if exitcode is None:
        return "WorkerCrash: worker died"
    detail = ""
    if exitcode < 0:
        try:
            detail = f" ({signal.Signals(-exitcode).name})"
        except ValueError:
            pass
    return f"WorkerCrash: worker died with exit code {exitcode}{detail}"


def error_kind(error: str) -> str:
    """The summary's grouping key: ``RecordError``, ``Timeout``, ``WorkerCrash``, ..."""
    if error.startswith("Timeout>"):
        return "Timeout"
    if error == MISSING_METADATA:
        return "Missing df_info row"
    return error.split(":", 1)[0]
