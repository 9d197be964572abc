"""One task in a worker process: find the record, convert it, write it atomically.

This is the only module of the engine that knows a conversion happens; it leaves the
conversion itself to :func:`wfdb2dicom.convert.convert_to_parts`. A task is the tuple
``(task_id, rel_path, study_id, metadata, verify)`` built by the engine.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from .outcomes import DONE, FAILED, KEPT, describe_exception
from .paths import Layout

Task = tuple[int, str, str, "tuple | None", bool]
"""``(task_id, rel_path, study_id, metadata row or None, verify)``; the row's values as
:meth:`~wfdb2dicom.metadata.MetadataTable.raw_rows` gives them."""


@dataclass(frozen=True)
class OptionValues:
    """The core conversion's options as plain values.

    The parent builds these without importing :mod:`wfdb2dicom.builder` (pydicom), so a
    resume with nothing to do stays fast; workers turn them into ``ConversionOptions``.
    """

    uid_root: str | None = None
    annotations: bool = True
    acquisition_datetime: dt.datetime | None = None
    verify_checksums: bool = True

    def build(self) -> Any:
        from ..builder import ConversionOptions

        return ConversionOptions(
            uid_root=self.uid_root,
            annotations=self.annotations,
            acquisition_datetime=self.acquisition_datetime,
            verify_checksums=self.verify_checksums,
        )


class TaskRunner:
    """Runs tasks in a worker; picklable, so it reaches spawned workers as an argument."""

    def __init__(self, layout: Layout, options: OptionValues) -> None:
        self.layout = layout
        self.options = options
        self._ready = False

    def setup(self) -> None:
        """Import and build what every task needs, once per worker process."""
        from ..convert import convert_to_parts, write_atomic
        from ..metadata import StudyMetadata

        self._metadata = StudyMetadata.from_values
        self._convert = convert_to_parts
        self._write = write_atomic
        self._conversion_options = self.options.build()
        self._ready = True

    def __call__(self, task: Task) -> tuple[int, str | None]:
        """``(DONE | KEPT | FAILED, error)``; every exception becomes the row's error string."""
        if not self._ready:
            self.setup()
        _, rel, study_id, row, verify = task
        try:
            metadata = None if row is None else self._metadata(row)
            record = self.layout.record_base(rel)
            out = self.layout.output(rel)
            if verify and _still_valid(out):
                return KEPT, None
            data = self._convert(
                record, metadata, study_id=study_id, options=self._conversion_options
            )
            self._write(out, data)
            return DONE, None
        except Exception as exc:  # the row's result; the run goes on
            return FAILED, describe_exception(exc)


def _still_valid(path: str) -> bool:
    """``--verify-existing``: re-read the file and run the seed's quick check on it."""
    import pydicom

    from ..validate import quick_check

    try:
        quick_check(pydicom.dcmread(path))
    except Exception:
        return False
    return True
