"""Checking objects: the seed's quick integrity check, and dciodvfy when installed."""

from __future__ import annotations

import shutil
import subprocess
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
