"""Metadata sources: the one seam between a dataset's own metadata and the mapping.

A source knows one dataset's table: which column is the study key, which columns it reads,
which columns tell its table apart from the others, and how a row becomes
:class:`~wfdb2dicom.metadata.StudyMetadata`. The builder maps ``StudyMetadata`` to DICOM
once, for every source, so adding a dataset means adding a source here, not touching the
builder. The header's comments are a source too (:mod:`.header`: the PhysioNet/CinC
Challenge's ``#Age:``/``#Sex:``/``#Dx:`` and MIMIC-style ``<age>:``), merged under the
table's values: when both give a value, the table wins.

Kept free of heavy imports: the batch parent resolves the source of a table (its first line)
before it loads anything.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConversionError
from ..metadata import RowValues, StudyMetadata


@dataclass(frozen=True)
class MetadataSource:
    """One dataset's metadata table: its columns and how a row maps to StudyMetadata."""

    name: str
    """What ``--metadata-format`` calls it."""
    title: str
    key_column: str
    """The column joined with the study key (the batch's ``--study_id_col`` values)."""
    columns: tuple[str, ...]
    """The columns read, key first: the order of a row's values (:data:`RowValues`)."""
    signature: frozenset[str]
    """Columns whose presence identifies the source's table (auto-detection)."""
    from_values: Callable[[RowValues], StudyMetadata]
    """A row's cleaned texts (stripped, None when empty) in ``columns`` order -> metadata;
    a bad value raises :class:`~wfdb2dicom.errors.MetadataError`."""
    key_from_record_name: Callable[[str], str] = str
    """The study key of a record converted without one (the record name by default)."""

    def from_row(self, row: dict[str, object]) -> StudyMetadata:
        """From a mapping of column -> value (tests, single rows)."""
        from ..metadata import _clean

        return self.from_values(tuple(_clean(row.get(name)) for name in self.columns))


def _sources() -> dict[str, MetadataSource]:
    from .mimic import MIMIC_IV_ECG
    from .ptbxl import PTB_XL

    return {source.name: source for source in (PTB_XL, MIMIC_IV_ECG)}


def source_names() -> tuple[str, ...]:
    """The names ``--metadata-format`` accepts (``auto`` aside)."""
    return tuple(sorted(_sources()))


def source_named(name: str) -> MetadataSource:
    """The source called ``name`` (see :func:`source_names`)."""
    try:
        return _sources()[name]
    except KeyError:
        raise ConversionError(
            f"unknown metadata format {name!r}; one of: {', '.join(source_names())}"
        ) from None


def detect_source(columns: Collection[str], override: str | None = None,
                  what: str = "metadata table") -> MetadataSource:
    """The source of a table with ``columns``: ``override`` when given (its key column must
    be there), else the first source whose signature the columns hold."""
    names = set(columns)
    if override and override != "auto":
        source = source_named(override)
        if source.key_column not in names:
            raise ConversionError(f"{what} has no {source.key_column} column (the key of "
                                  f"--metadata-format {source.name})")
        return source
    for source in _sources().values():  # most specific signature first
        if source.signature <= names:
            return source
    raise ConversionError(f"{what} has no study_id column (nor ecg_id and scp_codes of "
                          "PTB-XL's ptbxl_database.csv); see --metadata-format")


def table_columns(path: Path) -> list[str] | None:
    """The column names of a CSV or Parquet table; None for a pickle (read to know). A
    file that cannot be read, or a CSV without a first line, is refused with one line."""
    suffix = path.suffix.lower()
    if suffix in (".pkl", ".pickle"):
        return None
    try:
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            return list(pq.ParquetFile(path).schema_arrow.names)
        with path.open(newline="", encoding="utf-8-sig") as handle:  # a BOM is no name
            names = next(csv.reader(handle), None)
    except Exception as exc:  # pyarrow raises many types for a malformed file
        raise ConversionError(
            f"cannot read metadata {path.name}: {type(exc).__name__}: {exc}") from None
    if not names:
        raise ConversionError(f"metadata {path.name} is empty")
    return names


def resolve_format(path: Path, override: str | None = None) -> str:
    """The name of the source of the table at ``path`` (the batch parent's choice, sent to
    the workers). A pickle is the seed's MIMIC df_info unless told otherwise."""
    columns = table_columns(path)
    if columns is None:
        return override if override and override != "auto" else "mimic"
    return detect_source(columns, override, f"metadata {path.name}").name
