"""Tasks in a worker process: find each record, convert it, write it atomically.

This is the only module of the engine that knows a conversion happens; it leaves the
conversion itself to :func:`wfdb2dicom.convert.convert_many_to_parts`. A task is the tuple
``(task_id, rel_path, study_id, metadata, verify)`` built by the engine.

A converted record's result carries what the ledger keeps of it:
``(task_id, DONE, None, files, objects, n_left_out)`` (see
:data:`~wfdb2dicom.batch.ledger.Entry`).
"""

from __future__ import annotations

import datetime as dt
import gc
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .ledger import ObjectEntry, encode_objects, encode_single_object
from .outcomes import DONE, FAILED, KEPT, describe_failure
from .paths import Layout
from .runcsv import CHANNEL_SEPARATOR, LEFT_OUT_SEPARATOR

STAGE_GROUP = 16
"""Records taken through the stages together, within a chunk: 16 records' samples (~2 MB)
are still in the CPU's caches when they are written; a whole chunk's (~15 MB) were not.
Measured against whole chunks: 4-5% less worker CPU; groups of 8 lose the stages' gain."""

WORKER_GC_THRESHOLDS = (5000, 20, 20)
"""``gc.set_threshold`` in workers (Python's default: 700, 10, 10); see :meth:`TaskRunner.setup`."""

Task = tuple[int, str, str, "tuple | None", "bool | str | None"]
"""``(task_id, rel_path, study_id, metadata row or None, verify)``; the row's values as
:meth:`~wfdb2dicom.metadata.MetadataTable.raw_rows` gives them. ``verify``: False, or (for
``--verify-existing``) the record's ``files`` as the ledger has them (None: ``<rel>.dcm``)
wrapped as ``(files,)``."""

Outcome = tuple  # (DONE | KEPT | FAILED, error[, files, objects, n_left_out])


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
    signal_classes: tuple[str, ...] = ()
    """``--signal-class NAME=CLASS`` as given (checked by :meth:`check`)."""
    max_duration: float | None = None
    metadata_format: str = "mimic"
    """The source of the metadata rows the worker is sent (resolved by the parent)."""

    def check(self) -> None:
        """Refuse a bad ``--signal-class`` before any work (ConversionError)."""
        from ..signal_classes import parse_override

        for text in self.signal_classes:
            parse_override(text)

    def build(self) -> Any:
        from ..builder import ConversionOptions
        from ..signal_classes import parse_override

        return ConversionOptions(
            uid_root=self.uid_root,
            annotations=self.annotations,
            acquisition_datetime=self.acquisition_datetime,
            verify_checksums=self.verify_checksums,
            signal_classes=tuple(sorted(dict(map(parse_override, self.signal_classes))
                                        .items())),
            max_duration=self.max_duration,
        )


class TaskRunner:
    """Runs tasks in a worker; picklable, so it reaches spawned workers as an argument."""

    def __init__(self, layout: Layout, options: OptionValues, run_tag: str = "") -> None:
        """``run_tag``: the run's identity in temporary names (``atomic.run_tag``)."""
        self.layout = layout
        self.options = options
        self.run_tag = run_tag
        self._ready = False

    def setup(self) -> None:
        """Import and build what every task needs, once per worker process.

        Then the garbage collector is told to leave alone what is now alive (modules,
        pydicom's dictionaries: ~10^5 objects a full collection would scan again and again)
        and to run less often: a record allocates hundreds of short-lived tuples and makes
        no reference cycles, so the default (a collection per 700 allocations) cost ~5 µs a
        record, ~0.5 µs after.
        """
        from ..convert import convert_many_to_parts, object_file_name, write_atomic
        from ..sources import source_named

        self._metadata = source_named(self.options.metadata_format).from_values
        self._convert_many = convert_many_to_parts
        self._file_name = object_file_name
        self._write = write_atomic
        self._conversion_options = self.options.build()
        self._layout_writes = hasattr(self.layout, "write")  # objects in object storage
        gc.freeze()
        gc.set_threshold(*WORKER_GC_THRESHOLDS)
        self._ready = True

    def __call__(self, task: Task) -> Outcome:
        """``(DONE | KEPT | FAILED, error, ...)`` of one task."""
        return self.run_chunk([task], lambda task_id: None)[0][1:]

    def run_chunk(self, tasks: list[Task], mark: Callable[[int], None]) -> list[tuple]:
        """``(task_id, DONE | KEPT | FAILED, error, ...)`` of each task, in order (a
        converted one's with its files and objects); every exception becomes its task's
        error string.

        Stage by stage (see :func:`~wfdb2dicom.convert.convert_many_to_parts`): metadata and
        paths for the chunk, then conversion and writes for each :data:`STAGE_GROUP` records.
        An output directory is made (and checked) only when its file is written, so a record
        that fails leaves nothing behind. ``mark(task_id)`` is called before each step of a
        task, so the pool's heartbeat names the task a hung step belongs to.
        """
        if not self._ready:
            self.setup()
        try:
            return self._run_chunk(tasks, mark)
        finally:
            release = getattr(self.layout, "release", None)  # records staged from a URL
            if release is not None:
                release()

    def _run_chunk(self, tasks: list[Task], mark: Callable[[int], None]) -> list:
        outcome: dict[int, Outcome] = {}
        jobs, job_tasks, rels = [], [], []
        for task_id, rel, study_id, row, verify in tasks:
            mark(task_id)
            try:
                metadata = None if row is None else self._metadata(row)
                record = self.layout.record_base(rel)
                if verify and all(_still_valid(self.layout, object_rel)
                                  for object_rel in _object_rels(rel, verify[0])):
                    outcome[task_id] = (KEPT, None)
                    continue
            except Exception as exc:  # the row's result; the run goes on
                outcome[task_id] = (FAILED, describe_failure(exc))
                continue
            jobs.append((record, metadata, study_id))
            job_tasks.append(task_id)
            rels.append(rel)
        for start in range(0, len(jobs), STAGE_GROUP):
            group = slice(start, start + STAGE_GROUP)
            group_tasks = job_tasks[group]
            converted = self._convert_many(
                jobs[group], options=self._conversion_options,
                before=lambda index, ids=group_tasks: mark(ids[index]),
                opener=self.layout.open_input)
            for index, (task_id, rel) in enumerate(zip(group_tasks, rels[group], strict=True)):
                mark(task_id)
                outcome[task_id] = self._write_result(rel, converted, index)
        return [(task[0], *outcome[task[0]]) for task in tasks]

    def _write_result(self, rel: str, converted: list, index: int) -> Outcome:
        """Write every object of record ``index`` of ``converted`` (taking it out of the
        list), named as ``convert -o DIR/`` names them; its outcome. The record is written
        whole or not at all: a failure part-way removes the files it wrote.

        A failed record's exception reaches ``converted`` through its traceback's frames. Left
        in the list, or in a local of the chunk's loop, that cycle would keep every record of
        the group (samples included) alive until the garbage collector came by; here it dies
        with this call.
        """
        result, converted[index] = converted[index], None
        if isinstance(result, Exception):
            return FAILED, describe_failure(result)
        folder, _, stem = rel.rpartition("/")
        folder = f"{folder}/" if folder else ""
        if not result.several and not self._layout_writes:  # one object: all of MIMIC
            (only,) = result.objects
            info, left_out, path = only.info, result.left_out, None
            try:
                path = self.layout.output(rel)  # makes its directory
                self._write(path, only.parts, tag=self.run_tag)
                objects = (encode_single_object(f"{stem}.dcm", info.plan.sop_class_uid,
                                                info.modality, info.start.isoformat(),
                                                info.channels)
                           if not left_out and info.segment == 1 and info.part == 1 else
                           encode_objects([_entry(f"{stem}.dcm", info)],
                                          _left_out_text(left_out)))
            except Exception as exc:
                if path is not None:
                    _remove(path)
                return FAILED, describe_failure(exc)
            return DONE, None, None, objects, len(left_out)
        names: list[str] = []
        entries: list[ObjectEntry] = []
        written: list[str] = []
        try:
            for obj in result.objects:
                info = obj.info
                name = self._file_name(stem, info, result.several)
                if self._layout_writes:  # objects in object storage (batch/remote.py)
                    self.layout.write(folder + name[:-4], obj.parts, self.run_tag)
                else:
                    path = self.layout.output(folder + name[:-4])  # makes its directory
                    self._write(path, obj.parts, tag=self.run_tag)
                    written.append(path)
                names.append(name)
                entries.append(_entry(name, info))
        except Exception as exc:
            for path in written:
                _remove(path)
            return FAILED, describe_failure(exc)
        files = "\n".join(names) if result.several else None
        return (DONE, None, files, encode_objects(entries, _left_out_text(result.left_out)),
                len(result.left_out))


def _entry(name: str, info: Any) -> ObjectEntry:
    """What the manifest says of one object (a :class:`~wfdb2dicom.object_plan.PlannedObject`)."""
    return (name, info.plan.sop_class_uid, info.modality, info.segment, info.part,
            info.start.isoformat(), CHANNEL_SEPARATOR.join(info.channels))


def _left_out_text(left_out: list) -> str:
    return LEFT_OUT_SEPARATOR.join(
        f"{signal.label} (segment {signal.segment}): {signal.reason}" for signal in left_out)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _object_rels(rel: str, files: str | None) -> list[str]:
    """The output names (without ``.dcm``) of record ``rel``'s objects: ``rel`` itself, or
    each of ``files`` (names, one a line, as the ledger keeps them) in its directory."""
    if files is None:
        return [rel]
    folder = rel.rpartition("/")[0]
    prefix = f"{folder}/" if folder else ""
    return [prefix + name[:-4] for name in files.split("\n")]


def _still_valid(layout: Layout, rel: str) -> bool:
    """``--verify-existing``: re-read the file (or object) and run the seed's quick check."""
    import io

    import pydicom

    from ..validate import quick_check

    try:
        if getattr(layout, "remote_output", False):
            source: Any = io.BytesIO(layout.read_output(rel))
        else:
            source = layout.output(rel)
        quick_check(pydicom.dcmread(source))
    except Exception:
        return False
    return True
