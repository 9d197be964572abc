"""Study metadata tables (MIMIC-IV-ECG's ``machine_measurements.csv``, PTB-XL's
``ptbxl_database.csv``) indexed by their normalised study key.

What a table's columns mean is its source's business (:mod:`wfdb2dicom.sources`); this module
holds what every source gives (:class:`StudyMetadata`) and the table itself. Accepts a table
exactly as PhysioNet publishes it (CSV), the same table as Parquet, or the seed's preprocessed
pickle. The table is streamed in and held as Arrow record batches in
their most compact form (see :class:`MetadataTable`), with a sorted key index when every
study_id is numeric, so 800,000 rows cost a fraction of the file's size and a lookup is a
binary search.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from .errors import ConversionError, MetadataError
from .fileio import regular_file_problem

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from .sources import MetadataSource

MISSING_MEASUREMENT = 29999.0
"""MIMIC-IV-ECG's marker for a measurement the cart did not make."""

REPORT_COLUMNS = tuple(f"report_{i}" for i in range(18))
MEASUREMENT_COLUMNS = (
    "rr_interval", "p_onset", "p_end", "qrs_onset", "qrs_end", "t_end",
    "p_axis", "qrs_axis", "t_axis",
)

_NOTCH_RE = re.compile(r"(\d+(?:\.\d+)?)\s*Hz\s+notch", re.IGNORECASE)
_BANDWIDTH_RE = re.compile(
    r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(?:Hz)?\s*-\s*(\d+(?:\.\d+)?)\s*(?:Hz)?\s*$", re.IGNORECASE
)


COLUMNS = (
    "study_id", "subject_id", "cart_id", "ecg_time", "bandwidth", "filtering",
    "lowpassfilter", "highpassfilter", *REPORT_COLUMNS, *MEASUREMENT_COLUMNS,
)
"""The columns we use, in the order of a row's values (:data:`RowValues`)."""
BATCH_ROWS = 65536
"""Rows per batch of the table as held: each batch has its own dictionaries (see _compact)."""
READ_BLOCK_BYTES = 1 << 19
"""The CSV reader's block: small, since it reads up to 32 blocks ahead of the one in use."""
_REPORTS = slice(8, 8 + len(REPORT_COLUMNS))
_MEASUREMENTS = slice(_REPORTS.stop, _REPORTS.stop + len(MEASUREMENT_COLUMNS))

RowValues = tuple  # tuple[str | None, ...] in COLUMNS order
"""One table row as cleaned texts (stripped, None when empty), in :data:`COLUMNS` order:
what the batch parent sends to a worker (a tuple pickles faster than a dict)."""


class PickleWarning(UserWarning):
    """Loading a pickle runs code from the file."""


def normalise_study_id(value: object) -> str:
    """``' 40689238.0 '`` -> ``'40689238'``: the join key of every table."""
    if type(value) is str and value.isdigit():  # already normal (all of MIMIC's)
        return value
    text = str(value).strip()
    if text.endswith(".0") and text[:-2].isdigit():
        text = text[:-2]
    return text


class Code(NamedTuple):
    """A coded concept: Code Value, Coding Scheme Designator, Code Meaning."""

    value: str
    scheme: str
    meaning: str


class StudyMetadata(NamedTuple):
    """What a source (a table row, a header's comments) says about one study, in the units
    DICOM wants: the one shape every source is mapped to, and the builder maps from.

    A NamedTuple (immutable, as a frozen dataclass would be): one is made per record, and a
    frozen dataclass of 15 fields cost five times as much to build."""

    study_id: str
    subject_id: str | None = None
    cart_id: str | None = None
    ecg_time: dt.datetime | None = None
    reports: tuple[str, ...] = ()
    filter_low_hz: float | None = None
    """Low edge of the pass band (DICOM Filter Low Frequency; the high-pass cutoff)."""
    filter_high_hz: float | None = None
    """High edge of the pass band (DICOM Filter High Frequency; the low-pass cutoff)."""
    notch_hz: float | None = None
    measurements: Mapping[str, float] = MappingProxyType({})
    """Measurements present in the row (29999 dropped): intervals in ms, axes in degrees."""
    patient_age: int | None = None
    """Age in whole years as the source gives it (PTB-XL's 300 means 90 or older)."""
    patient_sex: str | None = None
    """``M``, ``F`` or ``O``: DICOM's Patient's Sex."""
    patient_size_m: float | None = None
    patient_weight_kg: float | None = None
    device: str | None = None
    """Model of the recording device (Manufacturer's Model Name)."""
    coded_statements: tuple[Code, ...] = ()
    """Coded interpretation statements (the Challenge's SNOMED CT Dx), before ``reports``,
    which are the statements in free text."""

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> StudyMetadata:
        """Build from one table row (column -> text or None); bad values raise MetadataError."""
        return cls.from_values(tuple(_clean(row.get(name)) for name in COLUMNS))

    @classmethod
    def from_values(cls, values: RowValues) -> StudyMetadata:
        """Build from a row's cleaned texts in :data:`COLUMNS` order."""
        study, subject, cart, raw_time, bandwidth, filtering, low_pass, high_pass = values[:8]
        ecg_time = None
        if raw_time:
            try:
                ecg_time = dt.datetime.fromisoformat(raw_time)
            except ValueError:
                raise MetadataError(f"ecg_time {raw_time!r} is not a date and time") from None
        if bandwidth:
            low, high = _parse_bandwidth(bandwidth)
        else:  # the seed's pickle: names swapped, values right (see GUIDE)
            low, high = _number(low_pass), _number(high_pass)
        measurements = {
            name: value
            for name, value in zip(MEASUREMENT_COLUMNS, map(_number, values[_MEASUREMENTS]),
                                   strict=True)
            if value is not None and value != MISSING_MEASUREMENT
        }
        return cls(
            study_id=normalise_study_id(study or ""),
            subject_id=normalise_study_id(subject) if subject else None,
            cart_id=normalise_study_id(cart) if cart else None,
            ecg_time=ecg_time,
            reports=tuple(filter(None, values[_REPORTS])),
            filter_low_hz=low,
            filter_high_hz=high,
            notch_hz=_parse_notch(filtering),
            measurements=measurements,
        )


def _clean(value: object) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value).strip() or None


@lru_cache(maxsize=1024)
def _parse_bandwidth(text: str) -> tuple[float | None, float | None]:
    """``0.005-150 Hz`` -> (0.005, 150.0); a handful of distinct values in MIMIC."""
    match = _BANDWIDTH_RE.match(text)
    return (float(match.group(1)), float(match.group(2))) if match else (None, None)


@lru_cache(maxsize=1024)
def _parse_notch(text: str | None) -> float | None:
    """``60 Hz notch Baseline filter`` -> 60.0."""
    match = _NOTCH_RE.search(text) if text else None
    return float(match.group(1)) if match else None


@lru_cache(maxsize=8192)
def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


class MetadataTable:
    """Rows of a source's table (machine_measurements, the seed's df_info, PTB-XL's
    ptbxl_database) looked up by the study key; ``source`` says what the columns mean.

    Held as the record batches the table was read in, each cleaned and made compact as it
    arrives (see :func:`_compact`): a column empty throughout a batch costs nothing there,
    and a repetitive one (reports, filters, measurements) is held once per distinct value.
    Batches may therefore differ in their columns' types; lookups take within a batch.
    """

    def __init__(self, batches: Iterable[pa.RecordBatch],
                 source: MetadataSource | None = None) -> None:
        """From the table's batches as read: consecutive ones are cleaned and compacted
        together, :data:`BATCH_ROWS` rows at a time. ``source``: MIMIC-IV-ECG's by default."""
        if source is None:
            from .sources.mimic import MIMIC_IV_ECG as source
        self.source: MetadataSource = source
        self._batches: list[pa.RecordBatch] = []
        self._fields: list[list[int]] = []
        """Per batch: the index in ``source.columns`` of each of its columns."""
        key_parts: list[np.ndarray] | None = []
        n_rows = 0
        for group in _groups(batches, BATCH_ROWS):
            prepared, fields = _prepare(group, source.columns)
            del group  # the texts as read: freed before the next group is read
            if key_parts is not None:
                ints = _integer_keys(prepared.column(0))
                if ints is None:  # some study_id is not a plain number
                    key_parts = None
                else:
                    key_parts.append(ints)
            self._batches.append(prepared)
            self._fields.append(fields)
            n_rows += prepared.num_rows
        self._n_rows = n_rows
        self._batch_starts = np.cumsum([0] + [b.num_rows for b in self._batches])[:-1]
        self._int_keys: np.ndarray | None = None
        self._order: np.ndarray | None = None
        self._dict_keys: dict[str, int] | None = None
        if key_parts is not None:
            self._int_keys, self._order = _sorted_keys(key_parts)
        else:
            self._dict_keys = {}
            for batch, start in zip(self._batches, self._batch_starts.tolist(), strict=True):
                for index, value in enumerate(batch.column(0).to_pylist(), start):
                    key = normalise_study_id(value) if value is not None else ""
                    self._dict_keys.setdefault(key, index)

    @classmethod
    def from_table(cls, table: pa.Table, metadata_format: str | None = None) -> MetadataTable:
        """From a whole Arrow table (any column types; only its source's columns are kept).
        ``metadata_format`` names the source; by default it is told by the columns."""
        from .sources import detect_source

        source = detect_source(table.column_names, metadata_format)
        return cls(table.to_batches(max_chunksize=BATCH_ROWS), source)

    def __len__(self) -> int:
        return self._n_rows

    @property
    def nbytes(self) -> int:
        """Memory held by the table's data (its lookup index aside)."""
        return sum(batch.nbytes for batch in self._batches)

    @classmethod
    def load(cls, path: str | Path, metadata_format: str | None = None) -> MetadataTable:
        """Load CSV (as published), Parquet, or the seed's pickle (with a warning).

        ``metadata_format`` (``mimic``, ``ptbxl``; None or ``auto``: told by the columns)
        names the source whose columns are read.
        """
        from .sources import detect_source, table_columns

        path = Path(path)
        if problem := regular_file_problem(path):  # a FIFO would block the reads below
            raise ConversionError(f"metadata file {problem}: {path}")
        suffix = path.suffix.lower()
        try:
            if suffix in (".pkl", ".pickle"):
                return cls.from_dataframe(_load_pickle(path), metadata_format)
            source = detect_source(table_columns(path) or [], metadata_format,
                                   f"metadata {path.name}")
            with _loading_memory():
                if suffix in (".parquet", ".pq"):
                    return cls(_parquet_batches(path, source.columns), source)
                return cls(_csv_batches(path, source.columns), source)
        except ConversionError:
            raise
        except Exception as exc:  # pyarrow/pandas raise many types for malformed files
            raise ConversionError(
                f"cannot read metadata {path.name}: {type(exc).__name__}: {exc}"
            ) from None

    @classmethod
    def from_dataframe(cls, frame: pd.DataFrame,
                       metadata_format: str | None = None) -> MetadataTable:
        """From a pandas DataFrame such as the seed's ``df_info``."""
        import pyarrow as pa

        frame = frame.reset_index(drop=bool({"study_id", "ecg_id"} & set(frame.columns)))
        converted = {}
        for name in frame.columns:
            column = frame[name]
            values = [None if _is_missing(v) else _as_text(v) for v in column.tolist()]
            converted[str(name)] = pa.array(values, type=pa.string())
        return cls.from_table(pa.table(converted), metadata_format)

    def _row_positions(self, study_ids: Sequence[str]) -> np.ndarray:
        """Row of each study_id in the table (-1 if absent); one binary search for all."""
        keys = [normalise_study_id(s) for s in study_ids]
        if self._int_keys is None:
            assert self._dict_keys is not None
            found = self._dict_keys.get
            return np.fromiter((found(k, -1) for k in keys), dtype=np.int64, count=len(keys))
        if not len(self._int_keys):
            return np.full(len(keys), -1, dtype=np.int64)
        if all(map(str.isdigit, keys)) and max(map(len, keys), default=0) < 19:
            numeric = np.ones(len(keys), dtype=bool)  # all of MIMIC's: no Python per key
            values = np.fromiter(map(int, keys), dtype=np.int64, count=len(keys))
        else:
            numeric = np.array([k.isdigit() and len(k) < 19 for k in keys], dtype=bool)
            values = np.fromiter((int(k) if ok else -1 for k, ok in zip(keys, numeric,
                                                                         strict=True)),
                                 dtype=np.int64, count=len(keys))
        if self._int_keys.dtype == np.int32:  # a key beyond 31 bits is in no row
            numeric &= (values >= 0) & (values < 2**31)
            values = np.where(numeric, values, -1).astype(np.int32)
        positions = np.searchsorted(self._int_keys, values)
        positions[positions == len(self._int_keys)] = 0
        hits = (self._int_keys[positions] == values) & numeric
        return np.where(hits, self._order[positions], -1)

    def get(self, study_id: str) -> StudyMetadata | None:
        """The study's metadata, or None when the table has no row for it."""
        return self.get_many([study_id])[0]

    def get_many(self, study_ids: Sequence[str]) -> list[StudyMetadata | None]:
        """Bulk lookup; see :meth:`raw_rows`."""
        from_values = self.source.from_values
        return [None if raw is None else from_values(raw) for raw in self.raw_rows(study_ids)]

    def raw_rows(self, study_ids: Sequence[str]) -> list[RowValues | None]:
        """Each study's row as :data:`RowValues` (in ``source.columns`` order), or None.

        What the batch parent sends to workers with each chunk: one ``take`` and one
        conversion per column for the whole chunk, rows made by ``zip`` (no Python code per
        cell), while building :class:`StudyMetadata` (``from_values``) is left to the
        workers, which run in parallel.
        """
        import pyarrow as pa

        from .arrays import positions

        row_at = self._row_positions(study_ids)
        result: list[RowValues | None] = [None] * len(row_at)
        wanted_at = np.flatnonzero(row_at >= 0)
        if not len(wanted_at):
            return result
        found = row_at[wanted_at]
        # Take within each record batch: a take across a many-chunked table concatenates
        # the chunks first, which costs the whole table per call.
        batch_of = np.searchsorted(self._batch_starts, found, side="right") - 1
        for batch_index in np.unique(batch_of).tolist():
            selected = batch_of == batch_index
            local = positions(found[selected] - self._batch_starts[batch_index])
            taken = self._batches[batch_index].take(local)
            nothing = [None] * len(local)
            columns = [nothing] * len(self.source.columns)
            for index, column in zip(self._fields[batch_index], taken.columns, strict=True):
                if column.null_count < len(column):
                    if pa.types.is_dictionary(column.type):  # decoded: 10x faster to_pylist
                        column = column.dictionary_decode()
                    columns[index] = column.to_pylist()
            for at, values in zip(wanted_at[selected].tolist(), zip(*columns, strict=True),
                                  strict=True):
                result[at] = values
        return result


@contextmanager
def _loading_memory() -> Iterator[None]:
    """Load with Arrow's jemalloc pool, returning freed pages at once (where available).

    Loading streams the CSV batch by batch; the default allocator keeps the freed batch
    buffers, which for all of MIMIC-IV-ECG costs as much again as the table itself. The
    arrays made here keep their pool; the process default is restored afterwards.
    """
    import pyarrow as pa

    previous = pa.default_memory_pool()
    try:
        pool = pa.jemalloc_memory_pool()
        pa.jemalloc_set_decay_ms(0)
    except (NotImplementedError, AttributeError, pa.ArrowNotImplementedError):
        yield
        return
    pa.set_memory_pool(pool)
    try:
        yield
    finally:
        pa.set_memory_pool(previous)


def _groups(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[list[pa.RecordBatch]]:
    """Consecutive batches in groups of at least ``rows`` rows (the last may hold fewer)."""
    group: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        group.append(batch)
        count += batch.num_rows
        if count >= rows:
            yield group
            group, count = [], 0
    if group:
        yield group


def _prepare(group: list[pa.RecordBatch],
             used: tuple[str, ...]) -> tuple[pa.RecordBatch, list[int]]:
    """A group of batches as one: the ``used`` columns (the key first) it has, cleaned and
    compact, and their indices in ``used``.

    Cleaning (strings, stripped, empty -> null) is done here, once and vectorised, rather
    than per lookup: the batch parent that looks rows up shares the CPU with the workers.
    A column at a time, so only one column's copy is ever made beside the texts as read.
    Columns empty throughout the group are dropped (their rows' values are None).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from .arrays import text_scalar

    arrays, fields = [], []
    names = group[0].schema.names
    empty, null = text_scalar(""), text_scalar(None)
    for index, name in enumerate(used):
        if name not in names:
            continue
        column = pa.concat_arrays([batch.column(name).cast(pa.string()) for batch in group])
        column = pc.utf8_trim_whitespace(column)
        column = pc.if_else(pc.equal(column, empty), null, column)
        if index == 0:  # the study key: kept whole and plain
            arrays.append(column)
        elif column.null_count == len(column):
            continue
        else:
            arrays.append(_compact(column))
        fields.append(index)
    if not fields or fields[0] != 0:
        raise ConversionError(f"metadata table has no {used[0]} column")
    return pa.RecordBatch.from_arrays(arrays, [used[i] for i in fields]), fields


def _compact(column: pa.Array) -> pa.Array:
    """The column as a dictionary of its distinct texts when that is smaller.

    In MIMIC-IV-ECG most columns repeat a small vocabulary (report statements, filter
    settings, measurement values): one byte or two per row instead of four bytes of offset
    plus the text. Unique columns (times) stay plain.
    """
    import pyarrow as pa

    encoded = column.dictionary_encode()
    distinct = len(encoded.dictionary)
    if distinct > 2**15:
        return column
    index_type = pa.int8() if distinct <= 2**7 else pa.int16()
    encoded = encoded.cast(pa.dictionary(index_type, pa.string()))
    return encoded if encoded.nbytes < column.nbytes else column


def _sorted_keys(parts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(sorted keys, table row of each): a binary search of the keys finds a study's row.

    Stable: with duplicate study_ids the first row of the table wins. When the keys fit in
    31 bits (all of MIMIC's) each is packed with its row into one int64 and sorted in
    place, so the index costs 8 bytes a row and its making little more.
    """
    n = sum(len(part) for part in parts)
    small = n < 2**31 and all(
        not len(p) or (int(p.min()) >= 0 and int(p.max()) < 2**31) for p in parts)
    if not small:
        ints = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        order = np.argsort(ints, kind="stable")
        return ints[order], order
    packed = np.empty(n, dtype=np.int64)
    start = 0
    for part in parts:
        packed[start:start + len(part)] = part
        start += len(part)
    parts.clear()
    packed <<= 32
    packed |= np.arange(n, dtype=np.int64)
    packed.sort()
    order = (packed & 0xFFFFFFFF).astype(np.int32)
    packed >>= 32
    return packed.astype(np.int32), order


def _integer_keys(column: pa.ChunkedArray) -> np.ndarray | None:
    """The study_ids as int64 when all are plain numbers (``40689238`` or ``40689238.0``).

    Vectorised: a Python string per row would cost more memory than the table itself.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from .arrays import int64_values

    if column.null_count:
        return None
    if pc.all(pc.match_substring_regex(column, r"^[0-9]{1,18}$")).as_py():
        return int64_values(pc.cast(column, pa.int64()))  # all plain: no cleaned copy needed
    text = pc.replace_substring_regex(column, r"\.0$", "")
    if not pc.all(pc.match_substring_regex(text, r"^[0-9]{1,18}$")).as_py():
        return None
    return int64_values(pc.cast(text, pa.int64()))


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _as_text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _csv_batches(path: Path, columns: tuple[str, ...] = COLUMNS) -> Iterator[pa.RecordBatch]:
    """The CSV's ``columns`` (key first), as strings, streamed: reading the whole file at
    once keeps its buffers alive beside the table (hundreds of MB for MIMIC-IV-ECG)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    with path.open(newline="", encoding="utf-8-sig") as handle:  # a BOM is no part of a name
        names = next(csv.reader(handle), None)
    if not names:
        raise ConversionError(f"metadata {path.name} is empty")
    used = [name for name in names if name in columns]
    if columns[0] not in used:
        raise ConversionError(f"metadata {path.name} has no {columns[0]} column")
    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=READ_BLOCK_BYTES, use_threads=False),
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in used},
            include_columns=used,
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    )
    yield from reader


def _parquet_batches(path: Path,
                     columns: tuple[str, ...] = COLUMNS) -> Iterator[pa.RecordBatch]:
    """The Parquet file's ``columns`` (key first), streamed a batch at a time."""
    import pyarrow.parquet as pq

    source = pq.ParquetFile(path)
    used = [name for name in source.schema_arrow.names if name in columns]
    if columns[0] not in used:
        raise ConversionError(f"metadata {path.name} has no {columns[0]} column")
    yield from source.iter_batches(batch_size=BATCH_ROWS, columns=used)


def _load_pickle(path: Path) -> pd.DataFrame:
    import pandas as pd

    warnings.warn(
        f"loading {path.name}: a pickle runs code from the file when loaded; only use pickles "
        "you made yourself (machine_measurements.csv or Parquet need no preprocessing)",
        PickleWarning,
        stacklevel=3,
    )
    frame = pd.read_pickle(path)
    if not isinstance(frame, pd.DataFrame):
        raise ConversionError(f"{path.name} does not hold a pandas DataFrame")
    return frame
