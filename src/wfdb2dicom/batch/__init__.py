"""The batch engine: a whole archive of WFDB records to DICOM, resumable, in parallel.

Data flows one way, and each stage has one module::

    input CSV ─▶ plan ─▶ pool (workers run work.TaskRunner) ─▶ ledger ─▶ report (CSV, log)

``paths`` (where files go, and what is refused) and ``outcomes`` (the seed's error
vocabulary) are shared by the parent and the workers, so they import nothing heavy. The
engine knows nothing of DICOM beyond "convert this record, give me a result": that is
``work``'s job, and ``wfdb2dicom.convert``'s below it.
"""

from __future__ import annotations

from ..errors import ConversionError


class BatchError(ConversionError):
    """The run cannot start or go on (bad arguments, unreadable input, a busy ledger).

    Command-line front ends print the message on one line and exit with status 2.
    """
