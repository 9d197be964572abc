"""wfdb2dicom: lossless, standards-conformant WFDB -> DICOM ECG waveform conversion."""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "ConversionOptions": "builder",
    "MetadataTable": "metadata",
    "StudyMetadata": "metadata",
    "convert_record": "convert",
    "convert_to_bytes": "convert",
    "record_to_dataset": "convert",
    "wfdb_to_dicom_ecg_phase1": "convert",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import the public API on first use: ``import wfdb2dicom.batch`` must not pay for
    pydicom when a resumed run has nothing to do."""
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
