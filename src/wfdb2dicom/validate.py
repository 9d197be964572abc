"""Checking objects: the seed's quick integrity check, each IOD's own content constraints,
and dciodvfy when installed.

dicom3tools' dciodvfy (Debian's 2022 build and PyPI's 2026-09 build alike) knows the 12-lead,
General and Ambulatory ECG IODs and Hemodynamic, and answers "Information Object Not found"
for Arterial Pulse, Respiratory, Multi-channel Respiratory and General 32-bit ECG. For those,
:func:`dciodvfy_conformance` runs it on a copy re-labelled as Hemodynamic, which checks the
modules they share (Patient, Study, Series, Equipment, Waveform Identification, Waveform,
Acquisition Context, SOP Common), and :func:`iod_problems` checks what is the IOD's own
(PS3.3 A.34: modality, groups, channels, frequency, sample interpretation, channel sources).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydicom.dataset import Dataset

from .errors import ConversionError

if TYPE_CHECKING:
    from .object_plan import ObjectPlan


class ValidationFailed(ConversionError):
    """An object failed the quick integrity check (batch: ``ValidationFailed: ...``)."""


def quick_check(ds: Dataset) -> None:
    """The seed's integrity check: raise ValidationFailed with the first problem found.

    Waveform Sequence present; channels, samples and frequency > 0; 16-bit ``SS`` or 32-bit
    ``SL`` samples (General 32-bit ECG, Multi-channel Respiratory); Waveform Data length =
    channels x samples x bytes per sample.
    """
    groups = ds.get("WaveformSequence")
    if not groups:
        raise ValidationFailed("no WaveformSequence")
    for number, group in enumerate(groups, start=1):
        quick_check_group(number, group)


def quick_check_group(number: int, group: Dataset) -> None:
    """:func:`quick_check` of one Waveform Sequence item (``number`` counts from 1)."""
    data = group.get("WaveformData")
    _check_group(
        number,
        channels=int(group.get("NumberOfWaveformChannels", 0) or 0),
        samples=int(group.get("NumberOfWaveformSamples", 0) or 0),
        frequency=float(group.get("SamplingFrequency", 0) or 0),
        interpretation=group.get("WaveformSampleInterpretation"),
        bits_allocated=int(group.get("WaveformBitsAllocated", 0) or 0),
        data_length=len(data) if data is not None else 0,
    )


def quick_check_plan(plan: ObjectPlan) -> None:
    """The same check on the values the fast encoder turns into bytes (no re-parse).

    The encoder's output is proven byte-identical to pydicom's encoding of the same plan, so
    checking the plan checks the bytes.
    """
    if not plan.groups:
        raise ValidationFailed("no WaveformSequence")
    for number, (layout, samples) in enumerate(zip(plan.groups, plan.samples, strict=True), 1):
        _check_group(
            number,
            channels=layout.n_channels,
            samples=layout.n_samples,
            frequency=float(layout.sampling_frequency),
            interpretation=layout.interpretation,
            bits_allocated=samples.dtype.itemsize * 8,
            data_length=samples.nbytes,
        )


_BITS_ALLOCATED = {"SS": 16, "SL": 32}


def _check_group(
    number: int, *, channels: int, samples: int, frequency: float, interpretation: str | None,
    bits_allocated: int, data_length: int,
) -> None:
    if channels <= 0 or samples <= 0 or frequency <= 0:
        raise ValidationFailed(
            f"group {number}: channels={channels} samples={samples} frequency={frequency:g}"
        )
    bits = _BITS_ALLOCATED.get(interpretation)  # type: ignore[arg-type]
    if bits is None:
        raise ValidationFailed(f"group {number}: sample interpretation is not SS or SL")
    if bits_allocated != bits:
        raise ValidationFailed(f"group {number}: bits allocated is not {bits} "
                               f"({interpretation})")
    expected = channels * samples * bits // 8
    if data_length != expected:
        raise ValidationFailed(
            f"group {number}: WaveformData has {data_length} bytes, expected {expected}"
        )


@dataclass(frozen=True)
class DciodvfyReport:
    """What dciodvfy said about one file."""

    errors: tuple[str, ...]
    warnings: tuple[str, ...]
    output: str

    @property
    def clean(self) -> bool:
        return not self.errors and not self.warnings


def dciodvfy_path() -> str | None:
    return shutil.which("dciodvfy")


def run_dciodvfy(path: str | Path, *, timeout: float = 120) -> DciodvfyReport:
    """Run dicom3tools' dciodvfy on ``path`` and collect its errors and warnings."""
    exe = dciodvfy_path()
    if exe is None:
        raise ConversionError("dciodvfy is not installed (apt-get install dicom3tools)")
    proc = subprocess.run(
        [exe, "-new", str(path)], capture_output=True, text=True, timeout=timeout,
        errors="replace",
    )
    output = proc.stdout + proc.stderr
    lines = [line.strip() for line in output.splitlines()]
    errors = tuple(line for line in lines if line.startswith("Error"))
    warnings = tuple(line for line in lines if line.startswith("Warning"))
    return DciodvfyReport(errors, warnings, output)


DCIODVFY_KNOWN_SOP_CLASSES = frozenset((
    "1.2.840.10008.5.1.4.1.1.9.1.1",  # 12-lead ECG
    "1.2.840.10008.5.1.4.1.1.9.1.2",  # General ECG
    "1.2.840.10008.5.1.4.1.1.9.1.3",  # Ambulatory ECG
    "1.2.840.10008.5.1.4.1.1.9.2.1",  # Hemodynamic
))
"""The waveform IODs dciodvfy verifies itself; the others it does not know."""

SL_UNDER_HEMODYNAMIC = (
    "/WaveformBitsAllocated(5400,1004)[1]> - Unrecognized enumerated value = <0x20>",
    "/WaveformSampleInterpretation(5400,1006)[1]> - Unrecognized enumerated value = <SL>",
)
"""What dciodvfy says of a 32-bit object re-labelled as Hemodynamic (which allows only 16-bit
SS): the one expected difference, checked against the object's own IOD instead."""


def iod_problems(ds: Dataset) -> list[str]:
    """What breaks the content constraints of the IOD ``ds``'s SOP Class names (empty: none).

    Reads the object as stored, with pydicom: an independent check of what the builder chose
    from the same registry (:mod:`wfdb2dicom.iods`).
    """
    import numpy as np

    from .iods import by_sop_class
    from .signal_classes import SOURCE_CIDS, cid_codes

    iod = by_sop_class(str(ds.get("SOPClassUID", "")))
    if iod is None:
        return [f"SOP Class {ds.get('SOPClassUID')} is not a waveform IOD this tool writes"]
    problems = []
    if ds.get("Modality") != iod.modality:
        problems.append(f"Modality {ds.get('Modality')!r} is not {iod.modality!r} "
                        f"({iod.name})")
    groups = ds.get("WaveformSequence") or []
    if not groups or (iod.max_groups is not None and len(groups) > iod.max_groups):
        problems.append(f"{len(groups)} multiplex groups ({iod.name} allows "
                        f"1-{iod.max_groups or 'any'})")
    allowed_sources = cid_codes()[SOURCE_CIDS[iod.signal_class]]
    for number, group in enumerate(groups, start=1):
        where = f"group {number}"
        fs = float(group.get("SamplingFrequency", 0) or 0)
        if (iod.min_fs is not None and fs < iod.min_fs) or (
                iod.max_fs is not None and fs > iod.max_fs):
            problems.append(f"{where}: sampling frequency {fs:g} Hz outside {iod.name}'s "
                            f"{iod.min_fs or 0:g}-{iod.max_fs or 'any'} Hz")
        n_channels = int(group.get("NumberOfWaveformChannels", 0) or 0)
        n_samples = int(group.get("NumberOfWaveformSamples", 0) or 0)
        if iod.max_channels is not None and n_channels > iod.max_channels:
            problems.append(f"{where}: {n_channels} channels > {iod.max_channels}")
        if iod.max_samples is not None and n_samples > iod.max_samples:
            problems.append(f"{where}: {n_samples} samples per channel > {iod.max_samples}")
        interpretation = group.get("WaveformSampleInterpretation")
        if interpretation not in iod.interpretations:
            problems.append(f"{where}: sample interpretation {interpretation!r} not in "
                            f"{'/'.join(iod.interpretations)}")
            continue
        try:
            _check_group(number, channels=n_channels, samples=n_samples, frequency=fs,
                         interpretation=interpretation,
                         bits_allocated=int(group.get("WaveformBitsAllocated", 0) or 0),
                         data_length=len(group.get("WaveformData") or b""))
        except ValidationFailed as exc:
            problems.append(str(exc))
            continue
        dtype = "<i4" if interpretation == "SL" else "<i2"
        samples = np.frombuffer(group.WaveformData, dtype).reshape(n_samples, n_channels)
        for index, channel in enumerate(group.get("ChannelDefinitionSequence") or []):
            label = channel.get("ChannelLabel", f"channel {index + 1}")
            sources = channel.get("ChannelSourceSequence") or []
            source = (sources[0].get("CodingSchemeDesignator"), sources[0].get("CodeValue")) \
                if sources else None
            if source not in allowed_sources:
                problems.append(f"{where}: {label!r}: channel source {source} is not in CID "
                                f"{SOURCE_CIDS[iod.signal_class]}")
            bits = int(channel.get("WaveformBitsStored", 0) or 0)
            column = samples[:, index]
            if bits < 1 or column.size and (
                    int(column.min()) < -(1 << (bits - 1)) or int(column.max()) >= 1 << (bits - 1)):
                problems.append(f"{where}: {label!r}: Waveform Bits Stored {bits} does not "
                                "cover the stored samples")
    return problems


def dciodvfy_conformance(path: str | Path) -> DciodvfyReport:
    """dciodvfy's verdict on ``path``: directly where it knows the IOD, else on a copy
    re-labelled as Hemodynamic (see the module's docstring), with that copy's one expected
    difference for 32-bit samples taken out."""
    import pydicom

    from .iods import HEMODYNAMIC, by_sop_class

    ds = pydicom.dcmread(path)
    iod = by_sop_class(ds.SOPClassUID)
    if ds.SOPClassUID in DCIODVFY_KNOWN_SOP_CLASSES:
        return run_dciodvfy(path)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = HEMODYNAMIC.sop_class_uid
    with tempfile.TemporaryDirectory(prefix="wfdb2dicom-relabel-") as scratch:
        copy = Path(scratch) / "relabelled-as-hemodynamic.dcm"
        ds.save_as(copy)
        report = run_dciodvfy(copy)
    errors = report.errors
    if iod is not None and "SL" in iod.interpretations:
        errors = tuple(e for e in errors if not e.endswith(SL_UNDER_HEMODYNAMIC))
    return DciodvfyReport(errors, report.warnings,
                          "(checked as a copy re-labelled Hemodynamic)\n" + report.output)
