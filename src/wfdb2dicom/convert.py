"""Single-record conversion: WFDB record -> DICOM object, as a Dataset, bytes, or a file.

``wfdb_to_dicom_ecg_phase1`` keeps the seed's signature so its users switch without
changing a line.
"""

from __future__ import annotations

import io
import itertools
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from pydicom.dataset import Dataset

from .atomic import write_atomic
from .builder import (
    ConversionOptions,
    SeveralObjects,
    build_dataset,
    plan_record,
    require_objects,
)
from .encoder import encode_plan_parts
from .errors import MetadataError, OutputError
from .fileio import Opener
from .header import MultiSegmentHeader, read_any_header
from .metadata import MetadataTable, StudyMetadata, normalise_study_id
from .object_plan import LeftOutSignal, PlannedObject, RecordPlan
from .reader import read_segments, record_base
from .record import RecordSegment
from .validate import quick_check, quick_check_plan

if TYPE_CHECKING:
    import pandas as pd

MISSING_METADATA = "Missing df_info row for study_id"
"""The seed's error string for a study that the metadata table does not have."""


def resolve_metadata(
    metadata: StudyMetadata | MetadataTable | None, study_id: str
) -> StudyMetadata | None:
    """The study's row when given a table; a table without the row is an error."""
    if isinstance(metadata, MetadataTable):
        found = metadata.get(study_id)
        if found is None:
            raise MetadataError(MISSING_METADATA)
        return found
    return metadata


def study_key(study_id: str | None, record_name: str,
              metadata: StudyMetadata | MetadataTable | None) -> str:
    """The study key: ``study_id`` when given, else what the table's source makes of the
    record name (PTB-XL: ``00001_hr`` -> ``1``, its ecg_id), else the record name (MIMIC-IV-ECG
    names records by study_id)."""
    if study_id:
        return normalise_study_id(study_id)
    if isinstance(metadata, MetadataTable):
        return normalise_study_id(metadata.source.key_from_record_name(record_name))
    return normalise_study_id(record_name)


def record_to_dataset(
    record_path: str | Path,
    metadata: StudyMetadata | MetadataTable | None = None,
    *,
    study_id: str | None = None,
    options: ConversionOptions | None = None,
    study_uid: str | None = None,
    series_uid: str | None = None,
) -> Dataset:
    """Read a WFDB record that makes one object and return its Dataset, writing nothing.

    ``study_id`` defaults to the record name (MIMIC-IV-ECG names records by study_id). A
    record that makes several objects (a multi-segment record, or signals of several
    classes) is refused with :class:`~wfdb2dicom.builder.SeveralObjects`.
    """
    options = options or ConversionOptions()
    segments = read_segments(record_path, verify_checksums=options.verify_checksums)
    first = next(segments)
    if (first.index, first.start_frame) != (1, 0) or next(segments, None) is not None:
        raise SeveralObjects("a multi-segment record makes one DICOM object per segment; "
                             "give a directory: convert RECORD -o DIR/")
    record = first.record
    key = study_key(study_id, record.name, metadata)
    return build_dataset(
        record,
        resolve_metadata(metadata, key),
        study_id=key,
        options=options,
        study_uid=study_uid,
        series_uid=series_uid,
    )


def encode_dataset(ds: Dataset) -> bytes:
    """The reference encoder: pydicom's own writer, as a DICOM Part 10 file in memory."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def convert_to_bytes(
    record_path: str | Path,
    metadata: StudyMetadata | MetadataTable | None,
    *,
    study_id: str | None = None,
    options: ConversionOptions | None = None,
) -> bytes:
    """Read, map, encode and quick-check one record: the complete file's bytes.

    Uses the fast encoder (byte-identical to pydicom's writer; see encoder.py); validated in
    memory, nothing written. Refusals raise :class:`~wfdb2dicom.errors.ConversionError`
    subclasses, a failed integrity check raises :class:`~wfdb2dicom.validate.ValidationFailed`.
    """
    return b"".join(convert_to_parts(record_path, metadata, study_id=study_id,
                                     options=options))


def convert_to_parts(
    record_path: str | Path,
    metadata: StudyMetadata | MetadataTable | None,
    *,
    study_id: str | None = None,
    options: ConversionOptions | None = None,
    opener: Opener | None = None,
) -> list[bytes | memoryview]:
    """:func:`convert_to_bytes` in pieces for :func:`~wfdb2dicom.atomic.write_atomic` (a
    gathered write). For a record that makes one object; one that makes several is refused
    with :class:`~wfdb2dicom.builder.SeveralObjects` (see :func:`write_record`). ``opener``
    opens the record's files."""
    (result,) = convert_many_to_parts([(record_path, metadata, study_id)], options=options,
                                      opener=opener)
    if isinstance(result, Exception):
        raise result
    return result.single_parts()


Job = tuple["str | Path", "StudyMetadata | MetadataTable | None", "str | None"]
"""``(record_path, metadata, study_id)``: one record for :func:`convert_many_to_parts`."""


class ConvertedObject(NamedTuple):
    """One object of a record: what it is (for its file name and manifest line) and its
    encoded file in pieces."""

    info: PlannedObject
    parts: list[bytes | memoryview]


class ConvertedRecord:
    """The objects of one record, in time order (ECG first among objects of one start).

    ``objects`` is a list for a single-segment record; for a multi-segment record it is an
    iterator that reads, maps and encodes one segment at a time as it is consumed (memory:
    one segment), so it can be consumed once. ``left_out`` grows as it goes: complete once
    the objects are consumed. ``several``: the files are named by segment, part and IOD.
    """

    __slots__ = ("objects", "left_out", "several")

    def __init__(self, objects: Iterable[ConvertedObject], left_out: list[LeftOutSignal],
                 several: bool) -> None:
        self.objects = objects
        self.left_out = left_out
        self.several = several

    def single_parts(self) -> list[bytes | memoryview]:
        """The file of a record that makes one object; else :class:`SeveralObjects`."""
        if self.several:
            raise SeveralObjects(
                "the record makes several DICOM objects (one per IOD, segment or part); give "
                "a directory: convert RECORD -o DIR/")
        (only,) = self.objects
        return only.parts


def object_file_name(stem: str, info: PlannedObject, several: bool) -> str:
    """The file name of an object: ``{stem}.dcm`` when the record makes one object, else
    ``{stem}_s{segment:04d}_p{part:03d}_{ecg|hd|pulse|resp}.dcm``, which says the IOD and
    sorts by time within the record (segment, then part; ECG first at the same start)."""
    if not several:
        return f"{stem}.dcm"
    return f"{stem}_s{info.segment:04d}_p{info.part:03d}_{info.file_suffix}.dcm"


def convert_many_to_parts(
    jobs: Sequence[Job],
    *,
    options: ConversionOptions | None = None,
    before: Callable[[int], None] | None = None,
    opener: Opener | None = None,
) -> list[ConvertedRecord | Exception]:
    """The objects of many records, stage by stage: every record is read, then every record
    mapped, then checked, then encoded.

    Running one stage's code over a whole chunk keeps it in the CPU's caches: measured ~15%
    less time per record than one record at a time. Each record's result is a
    :class:`ConvertedRecord` or the exception that stopped it (the others go on). A
    multi-segment record goes through the stages one segment at a time as its objects are
    consumed. ``before(i)`` is called before each step of job ``i`` (the batch engine's
    heartbeat, so a hung step names its record); ``opener`` opens the records' files (the
    batch engine's check of symlinks).
    """
    options = options or ConversionOptions()
    results: list = [None] * len(jobs)
    mark = before or (lambda index: None)

    def stage(step: Callable[[int, object], object], indices: list[int]) -> list[int]:
        survivors = []
        for index in indices:
            mark(index)
            try:
                results[index] = step(index, results[index])
            except Exception as exc:  # this record's result; the chunk goes on
                results[index] = exc
            else:
                survivors.append(index)
        return survivors

    def read(index: int, _: object) -> object:
        segments = read_segments(jobs[index][0], verify_checksums=options.verify_checksums,
                                 opener=opener)
        first = next(segments)
        if first.index == 1 and first.start_frame == 0:
            second = next(segments, None)  # a single-segment record has no second
            if second is None:
                return first
            return _segment_objects(jobs[index], itertools.chain((first, second), segments),
                                    options)
        return _segment_objects(jobs[index], itertools.chain((first,), segments), options)

    def plan(index: int, read_result: object) -> object:
        if isinstance(read_result, ConvertedRecord):
            return read_result
        return _plan_segment(jobs[index], read_result, options, only_segment=True)

    def check(_: int, planned: object) -> object:
        if isinstance(planned, RecordPlan):
            for info in planned.objects:
                quick_check_plan(info.plan)
        return planned

    def encode(_: int, planned: object) -> ConvertedRecord:
        if isinstance(planned, ConvertedRecord):
            return planned
        objects = [ConvertedObject(info, encode_plan_parts(info.plan))
                   for info in planned.objects]
        return ConvertedRecord(objects, list(planned.left_out), len(objects) > 1)

    indices = list(range(len(jobs)))
    for step in (read, plan, check, encode):
        indices = stage(step, indices)
    return results


def _plan_segment(job: Job, segment: RecordSegment, options: ConversionOptions,
                  only_segment: bool) -> RecordPlan:
    _, metadata, study_id = job
    record = segment.record
    key = study_key(study_id, record.name, metadata)
    # A record of one segment (index 1, at frame 0) is planned as a record on its own: the
    # same plan, and its SOP Instance UID tells it from another record of the study.
    plan = plan_record(record, resolve_metadata(metadata, key), study_id=key,
                       options=options, segment=None if only_segment else segment)
    return require_objects(plan) if only_segment else plan


def _segment_objects(job: Job, segments: Iterable[RecordSegment],
                     options: ConversionOptions) -> ConvertedRecord:
    """A multi-segment record's objects, made one segment at a time as they are consumed.

    UIDs and the study key come from the master record's name (not a segment's).
    """
    master = Path(job[0]).name
    if master.endswith((".hea", ".dat")):
        master = master[:-4]
    job = (job[0], job[1], job[2] or master)
    left_out: list[LeftOutSignal] = []

    def objects() -> Iterator[ConvertedObject]:
        made = 0
        for segment in segments:
            planned = _plan_segment(job, segment, options, only_segment=False)
            left_out.extend(planned.left_out)
            for info in planned.objects:
                quick_check_plan(info.plan)
                made += 1
                yield ConvertedObject(info, encode_plan_parts(info.plan))
        if not made:
            require_objects(RecordPlan((), tuple(left_out)))

    return ConvertedRecord(objects(), left_out, True)


def convert_record(
    record_path: str | Path,
    out_path: str | Path,
    metadata: StudyMetadata | MetadataTable | None = None,
    *,
    study_id: str | None = None,
    options: ConversionOptions | None = None,
    inputs: Sequence[str | Path] = (),
    opener: Opener | None = None,
) -> Path:
    """Convert a record that makes one object to ``out_path``; nothing is written unless
    conversion succeeds. A record that makes several objects is refused with
    :class:`~wfdb2dicom.builder.SeveralObjects` (see :func:`write_record`).

    ``out_path`` must not be one of the record's files nor one of ``inputs`` (the metadata
    table, say); that, and a write the file system refuses (a full disk, a read-only
    directory), raise :class:`~wfdb2dicom.errors.OutputError` naming the path, and leave
    neither a file nor a directory made for it. ``opener`` opens the record's files.
    """
    parts = convert_to_parts(record_path, metadata, study_id=study_id, options=options,
                             opener=opener)  # first: it refuses a header that names no file
    _write_output(out_path, parts, [*record_files(record_path, opener), *inputs])
    return Path(out_path)


def _write_output(out_path: str | Path, parts: Sequence[bytes | memoryview],
                  inputs: Sequence[str | Path]) -> None:
    _refuse_input_as_output(out_path, inputs)
    try:
        write_atomic(out_path, parts)
    except OSError as exc:
        raise OutputError(f"cannot write {out_path}: {exc.strerror or exc}") from None


def record_files(record_path: str | Path, opener: Opener | None = None) -> list[str]:
    """The files a record is read from: its header, then its signal files (a multi-segment
    record's: its header, then each segment's header and signal files)."""
    base = os.fspath(record_base(record_path))
    header = read_any_header(base + ".hea", opener)
    directory = os.path.dirname(base)
    if isinstance(header, MultiSegmentHeader):
        files = [base + ".hea"]
        for name, frames in header.segments:
            if name != "~" and frames > 0:
                files += record_files(os.path.join(directory, name), opener)
        return files
    return [base + ".hea", *(os.path.join(directory, name)
                             for name in dict.fromkeys(header.file_names))]


def _refuse_input_as_output(out_path: str | Path, inputs: Sequence[str | Path]) -> None:
    """Writing over an input would destroy it: compared by path (the output need not exist)
    and by file identity (a hard link or a symlink to an input)."""
    real_out = os.path.realpath(out_path)
    for path in inputs:
        same = os.path.realpath(path) == real_out
        if not same:
            try:
                same = os.path.samefile(out_path, path)
            except OSError:  # either does not exist: not the same file
                pass
        if same:
            raise OutputError(f"output {out_path} is {path}, an input of this conversion; "
                              "choose another output path")


def is_directory_target(out_path: str | Path) -> bool:
    """``-o`` names a directory: an existing one, or a path ending in ``/``."""
    text = os.fspath(out_path)
    return text.endswith(("/", os.sep)) or os.path.isdir(text)


class WrittenRecord(NamedTuple):
    paths: list[Path]
    """The files written, in time order."""
    left_out: list[LeftOutSignal]


def write_record(
    record_path: str | Path,
    out_path: str | Path,
    metadata: StudyMetadata | MetadataTable | None = None,
    *,
    study_id: str | None = None,
    options: ConversionOptions | None = None,
    inputs: Sequence[str | Path] = (),
    opener: Opener | None = None,
) -> WrittenRecord:
    """Convert one record: what ``wfdb2dicom convert -o OUT`` does.

    ``out_path`` a directory (:func:`is_directory_target`; made if missing): every object
    goes there, named by :func:`object_file_name` with the record's name as stem. Else a
    file, for a record that makes one object (else :class:`SeveralObjects`). The record
    converts whole or not at all: files written before a failure are removed. No output
    may be an input (see :func:`convert_record`).
    """
    (result,) = convert_many_to_parts([(record_path, metadata, study_id)], options=options,
                                      opener=opener)
    if isinstance(result, Exception):
        raise result
    inputs = [*record_files(record_path, opener), *inputs]
    if not is_directory_target(out_path):
        _write_output(out_path, result.single_parts(), inputs)
        return WrittenRecord([Path(out_path)], result.left_out)
    stem = record_base(record_path).name
    written: list[Path] = []
    try:
        for converted in result.objects:
            path = Path(out_path) / object_file_name(stem, converted.info, result.several)
            _write_output(path, converted.parts, inputs)
            written.append(path)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return WrittenRecord(written, result.left_out)


def wfdb_to_dicom_ecg_phase1(
    sample_path_no_ext: str,
    out_dcm_path: str,
    df_info: pd.DataFrame,
    study_uid: str | None = None,
    series_uid: str | None = None,
) -> str:
    """The seed's single-record function, same signature, conformant output.

    ``df_info`` is the seed's metadata DataFrame (or ``machine_measurements.csv`` read with
    pandas); the study_id is the record name.
    """
    table = MetadataTable.from_dataframe(df_info)
    try:
        ds = record_to_dataset(
            record_base(sample_path_no_ext), table, study_uid=study_uid, series_uid=series_uid
        )
    except SeveralObjects:
        raise SeveralObjects(
            f"record {sample_path_no_ext} makes several DICOM objects (one per IOD, segment "
            "or part) and this function writes one file: use `wfdb2dicom convert RECORD -o "
            "DIR/` (or wfdb2dicom.convert.convert_record with a directory)") from None
    quick_check(ds)
    write_atomic(out_dcm_path, encode_dataset(ds))
    return str(out_dcm_path)
