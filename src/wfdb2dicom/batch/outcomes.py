"""What a task can come to, and the seed's error vocabulary for the ways it can fail.

Every error string a user sees in ``dcm_error`` or the error log is made here, so the
vocabulary of the seed's ``run_convert.py`` has one home: ``Timeout>{N}s``,
``Missing df_info row for study_id``, ``WorkerCrash: ...`` and ``{ExceptionType}: {message}``
(which covers ``ValidationFailed: ...``, ``RecordError: ...`` and our ``UnsafePath: ...``).
"""

from __future__ import annotations

import signal

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


def one_line(text: str) -> str:
    """Collapse whitespace (tabs and newlines included): results go in TSV and CSV cells."""
    return " ".join(text.split())


def describe_exception(exc: BaseException) -> str:
    """``{ExceptionType}: {message}`` on one line, never a traceback."""
    message = one_line(str(exc))
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


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
