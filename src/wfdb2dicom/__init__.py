"""wfdb2dicom: lossless, standards-conformant WFDB -> DICOM ECG waveform conversion."""

from __future__ import annotations

__version__ = "0.1.0"


from .builder import ConversionOptions  # noqa: E402
from .convert import (  # noqa: E402
    convert_record,
    convert_to_bytes,
    record_to_dataset,
    wfdb_to_dicom_ecg_phase1,
)
from .metadata import MetadataTable, StudyMetadata  # noqa: E402

__all__ = [
    "ConversionOptions",
    "MetadataTable",
    "StudyMetadata",
    "convert_record",
    "convert_to_bytes",
    "record_to_dataset",
    "wfdb_to_dicom_ecg_phase1",
]
