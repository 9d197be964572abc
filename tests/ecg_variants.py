"""Real DICOM ECGs re-encoded the ways other writers encode them, for the reader tests.

Built from the Mortara recording's own samples (``shared/data/dicom/anonymous_ecg.dcm``), so
the signal stays real while lead order, rate, coding, units and baseline vary.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.waveforms import multiplex_array

from wfdb2dicom.dicom_ecg import lead_name, read_dicom_ecg

STANDARD_ORDER = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
MIMIC_ORDER = ["I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6"]
MDC_NUMBERS = {"I": 1, "II": 2, "III": 61, "aVR": 62, "aVL": 63, "aVF": 64,
               "V1": 3, "V2": 4, "V3": 5, "V4": 6, "V5": 7, "V6": 8}


def derived_object(
    source: Path, out: Path, *, order: list[str], decimate: int = 1, mdc: bool = False,
    millivolts: bool = False, baseline_mv: float = 0.0, labels: list[str] | None = None,
) -> Path:
    """A variant of a real object: other lead order, rate, coding, units, baseline.

    Built from the Mortara recording's own samples, so the signal stays real while the
    encoding takes the forms other writers use.
    """
    ds = pydicom.dcmread(source)
    group = ds.WaveformSequence[0]
    raw = multiplex_array(ds, 0, as_raw=True)
    by_name = {lead_name(c): i for i, c in enumerate(read_dicom_ecg(ds).groups[0].channels)}
    columns = [by_name[name] for name in order]
    samples = np.ascontiguousarray(raw[::decimate, columns])
    definitions = [group.ChannelDefinitionSequence[i] for i in columns]
    for name, item in zip(order, definitions, strict=True):
        if mdc:
            code = item.ChannelSourceSequence[0]
            code.CodeValue, code.CodingSchemeDesignator = f"2:{MDC_NUMBERS[name]}", "MDC"
            del code.CodingSchemeVersion
        if millivolts:
            item.ChannelSensitivity = "0.00125"
            units = item.ChannelSensitivityUnitsSequence[0]
            units.CodeValue, units.CodeMeaning = "mV", "millivolt"
        item.ChannelBaseline = f"{baseline_mv:g}"
    if labels is not None:
        for label, item in zip(labels, definitions, strict=True):
            item.ChannelLabel = label
            del item.ChannelSourceSequence
    group.ChannelDefinitionSequence = definitions
    group.NumberOfWaveformChannels = len(columns)
    group.NumberOfWaveformSamples = samples.shape[0]
    group.SamplingFrequency = f"{float(group.SamplingFrequency) / decimate:g}"
    group.WaveformData = samples.astype("<i2").tobytes()
    ds.WaveformSequence = [group]
    del ds.WaveformAnnotationSequence
    ds.save_as(out)
    return out
