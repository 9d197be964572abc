"""The batch engine: a whole archive of WFDB records to DICOM, resumable, in parallel.

Data flows one way, and each stage has one module::

    input CSV ─▶ plan ─▶ pool (workers run work.TaskRunner) ─▶ ledger ─▶ report (CSV, log)

``paths`` (where files go, and what is refused) and ``outcomes`` (the seed's error
vocabulary) are shared by the parent and the workers, so they import nothing heavy. The
engine knows nothing of DICOM beyond "convert this record, give me a result": that is
``work``'s job, and ``wfdb2dicom.convert``'s below it.
"""

from __future__ import annotations

import os

from ..errors import ConversionError


class BatchError(ConversionError):
    """The run cannot start (bad arguments, unreadable input, a busy or damaged ledger).

    Command-line front ends print the message on one line and exit with
    :attr:`~wfdb2dicom.errors.ExitStatus.NOTHING_STARTED`.
    """


class RunStopped(ConversionError):
    """An I/O error on one of the run's own files (output CSV, error log, ledger) stopped
    it part-way; what was committed is kept, so running the same command resumes.

    Exit status :attr:`~wfdb2dicom.errors.ExitStatus.STOPPED_BY_IO_ERROR`.
    """

    def __init__(self, path: str | os.PathLike[str], exc: BaseException) -> None:
        detail = getattr(exc, "strerror", None) or str(exc)
        super().__init__(f"stopped by an I/O error on {os.fspath(path)}: {detail}; what was "
                         "done is kept: run the same command again to resume")

