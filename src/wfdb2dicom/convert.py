"""Single-record conversion: WFDB record -> DICOM object, as a Dataset, bytes, or a file.

``wfdb_to_dicom_ecg_phase1`` keeps the seed's signature so its users switch without
changing a line.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydicom.dataset import Dataset

from .atomic import write_atomic
from .builder import ConversionOptions, ObjectPlan, build_dataset, plan_object
from .encoder import encode_plan_parts
from .errors import MetadataError, OutputError
from .fileio import Opener
from .header import read_header
from .metadata import MetadataTable, StudyMetadata, normalise_study_id
from .reader import read_record, record_base
from .record import EcgRecord
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
    """Read a WFDB record and return its DICOM ECG Dataset, without writing anything.

    ``study_id`` defaults to the record name (MIMIC-IV-ECG names records by study_id).
    """
    options = options or ConversionOptions()
    record = read_record(record_path, verify_checksums=options.verify_checksums)
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
    gathered write). ``opener`` opens the record's files."""
    (result,) = convert_many_to_parts([(record_path, metadata, study_id)], options=options,
                                      opener=opener)
    if isinstance(result, Exception):
        raise result
    return result


Job = tuple["str | Path", "StudyMetadata | MetadataTable | None", "str | None"]
"""``(record_path, metadata, study_id)``: one record for :func:`convert_many_to_parts`."""


def convert_many_to_parts(
    jobs: Sequence[Job],
    *,
    options: ConversionOptions | None = None,
    before: Callable[[int], None] | None = None,
    opener: Opener | None = None,
) -> list[list[bytes | memoryview] | Exception]:
    """:func:`convert_to_parts` of many records, stage by stage: every record is read, then
    every record mapped, then checked, then encoded.

    Running one stage's code over a whole chunk keeps it in the CPU's caches: measured ~15%
    less time per record than one record at a time. Each record's result is its parts or
    the exception that stopped it (the others go on). ``before(i)`` is called before each
    step of job ``i`` (the batch engine's heartbeat, so a hung step names its record);
    ``opener`` opens the records' files (the batch engine's check of symlinks).
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

    def read(index: int, _: object) -> EcgRecord:
        return read_record(jobs[index][0], verify_checksums=options.verify_checksums,
                           opener=opener)

    def plan(index: int, record: EcgRecord) -> ObjectPlan:
        _, metadata, study_id = jobs[index]
        key = study_key(study_id, record.name, metadata)
        return plan_object(record, resolve_metadata(metadata, key), study_id=key,
                           options=options)

    def check(_: int, object_plan: ObjectPlan) -> ObjectPlan:
        quick_check_plan(object_plan)
        return object_plan

    def encode(_: int, object_plan: ObjectPlan) -> list[bytes | memoryview]:
        return encode_plan_parts(object_plan)

    indices = list(range(len(jobs)))
    for step in (read, plan, check, encode):
        indices = stage(step, indices)
    return results


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
    """Convert one record to ``out_path``; nothing is written unless conversion succeeds.

    ``out_path`` must not be one of the record's files nor one of ``inputs`` (the metadata
    table, say); that, and a write the file system refuses (a full disk, a read-only
    directory), raise :class:`~wfdb2dicom.errors.OutputError` naming the path, and leave
    neither a file nor a directory made for it. ``opener`` opens the record's files.
    """
    parts = convert_to_parts(record_path, metadata, study_id=study_id, options=options,
                             opener=opener)  # first: it refuses a header that names no file
    _refuse_input_as_output(out_path, [*record_files(record_path, opener), *inputs])
    try:
        write_atomic(out_path, parts)
    except OSError as exc:
        raise OutputError(f"cannot write {out_path}: {exc.strerror or exc}") from None
    return Path(out_path)


def record_files(record_path: str | Path, opener: Opener | None = None) -> list[str]:
    """The files a record is read from: its header, then its signal files."""
    base = os.fspath(record_base(record_path))
    header = read_header(base + ".hea", opener)
    directory = os.path.dirname(base)
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
    ds = record_to_dataset(
        record_base(sample_path_no_ext), table, study_uid=study_uid, series_uid=series_uid
    )
    quick_check(ds)
    write_atomic(out_dcm_path, encode_dataset(ds))
    return str(out_dcm_path)
