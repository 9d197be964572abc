"""Checks every test applies to an object we write: its IOD's own constraints (PS3.3 A.34),
and dciodvfy, directly where dicom3tools knows the IOD, else on a copy re-labelled as
Hemodynamic. Both are the product's own checks (``wfdb2dicom validate``), so the tests hold
the objects to what users can run; ``tests/test_validate.py`` proves the checks catch
violations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom

from conftest import require_tool
from wfdb2dicom.iods import WaveformIod, by_sop_class
from wfdb2dicom.validate import dciodvfy_conformance, iod_problems


def assert_meets_own_iod(ds: pydicom.Dataset) -> WaveformIod:
    """The object meets the content constraints of the IOD its SOP Class names."""
    problems = iod_problems(ds)
    assert not problems, problems
    iod = by_sop_class(ds.SOPClassUID)
    assert iod is not None
    return iod


def raw_samples(group: pydicom.Dataset) -> np.ndarray:
    """A group's stored samples, (n_samples, n_channels)."""
    dtype = "<i4" if group.WaveformSampleInterpretation == "SL" else "<i2"
    return np.frombuffer(group.WaveformData, dtype).reshape(
        group.NumberOfWaveformSamples, group.NumberOfWaveformChannels)


def assert_dciodvfy_clean(path: Path, tmp_dir: Path | None = None) -> None:
    """Zero errors and warnings from dciodvfy, or from its check of a copy re-labelled as
    Hemodynamic where dicom3tools does not know the IOD."""
    require_tool("dciodvfy")
    report = dciodvfy_conformance(path)
    assert report.clean, (path.name, report.errors + report.warnings)
