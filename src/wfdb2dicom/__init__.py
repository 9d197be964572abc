"""wfdb2dicom: lossless, standards-conformant WFDB -> DICOM ECG waveform conversion."""

from __future__ import annotations

__version__ = "0.1.0"
