"""``wfdb2dicom to-wfdb``: DICOM ECG waveform objects back to WFDB records.

The reverse path serves two purposes: it lets WFDB tools (and our tests) read any DICOM ECG,
ours or a cart's, and it proves our conversion lossless by round trip. So it is strict about
what "the same signal" means: the stored samples are the DICOM raw samples bit for bit, and
the header's gain and baseline reproduce DICOM's physical values exactly,

    DICOM:  physical = raw * sensitivity * correction + channel_baseline
    WFDB:   physical = (raw - baseline) / gain
    =>      gain = 1 / (sensitivity * correction),  baseline = -channel_baseline * gain.

A channel baseline that is not a whole number of sample units has no exact WFDB form, and
is refused rather than rounded. The ``wfdb`` package writes the files; we never hand-write
the format.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
from pathlib import Path

import numpy as np
import wfdb

from .dicom_ecg import Annotation, DicomEcg, DicomGroup, lead_name, read_dicom_ecg
from .errors import ConversionError
from .signal_classes import wfdb_units

ANNOTATION_EXTENSION = "ann"
"""WFDB annotation file for the object's fiducial points (P onset, QRS offset...)."""

_INT16 = (-32768, 32767)
_INT32 = (-(2**31), 2**31 - 1)
_PADDING_FORMATS = {-128: ("80", (-128, 127)), -32768: ("16", _INT16), _INT32[0]: ("32", _INT32)}
"""WFDB formats by their invalid-sample value."""
_COMMENT_SYMBOL = '"'
"""WFDB's comment annotation: the label travels in the aux note."""


def record_name(dcm_path: Path, group_index: int) -> str:
    """WFDB record name of a multiplex group: ``<stem>`` for the first, ``<stem>_<n>`` after.

    WFDB record names allow only letters, digits, ``-`` and ``_`` (and ``wfdb`` reads a ``.``
    as the start of an extension), so anything else in the stem becomes ``_``.
    """
    stem = re.sub(r"[^-\w]", "_", dcm_path.stem) or "record"
    return stem if group_index == 0 else f"{stem}_{group_index + 1}"


def dicom_to_wfdb(dcm_path: Path, out_dir: Path) -> list[Path]:
    """Write every multiplex group of ``dcm_path`` as a WFDB record in ``out_dir``.

    Returns the record base paths (no suffix), in group order. Everything is decoded and
    checked before the first file is written, so a refused object leaves nothing behind.
    """
    dcm_path = Path(dcm_path)
    out_dir = Path(out_dir)
    ecg = read_dicom_ecg(dcm_path)
    plans = [_plan(ecg, group, dcm_path) for group in ecg.groups]
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for group, plan in zip(ecg.groups, plans, strict=True):
        name = plan["record_name"]
        try:
            wfdb.wrsamp(write_dir=str(out_dir), **plan)
            _write_fiducials(ecg, group, name, out_dir)
        except ConversionError:
            raise
        except Exception as exc:  # wfdb raises bare Exceptions on bad fields
            raise ConversionError(
                f"{dcm_path.name}: WFDB writer refused multiplex group {group.index + 1}: {exc}"
            ) from None
        written.append(out_dir / name)
    return written


def _plan(ecg: DicomEcg, group: DicomGroup, dcm_path: Path) -> dict:
    """Keyword arguments of ``wfdb.wrsamp`` for one group, checked for losslessness."""
    where = f"{dcm_path.name}: multiplex group {group.index + 1}"
    if group.n_samples == 0:
        raise ConversionError(f"{where} has no samples")
    samples = group.samples.astype(np.int64)
    gains, baselines, units = [], [], []
    for number, channel in enumerate(group.channels, start=1):
        scale = channel.sensitivity * channel.correction
        if not np.isfinite(scale) or scale <= 0:
            raise ConversionError(
                f"{where} channel {number}: sensitivity x correction {scale:g} is not positive"
            )
        gain = _gain(scale)
        baseline = -channel.baseline * gain
        if abs(baseline - round(baseline)) > 1e-6 * max(1.0, abs(baseline)):
            raise ConversionError(
                f"{where} channel {number}: channel baseline {channel.baseline:g} is not a whole "
                f"number of sample units, which WFDB cannot hold exactly"
            )
        gains.append(gain)
        baselines.append(int(round(baseline)))
        units.append(wfdb_units(channel.sensitivity_units))
    fmt = _format_for(samples, group.padding_value, where)
    start = _group_start(ecg, group)
    return {
        "record_name": record_name(dcm_path, group.index),
        "fs": group.sampling_frequency,
        "units": units,
        "sig_name": _unique_names(group),
        "d_signal": samples,
        "fmt": [fmt] * len(group.channels),
        "adc_gain": gains,
        "baseline": baselines,
        "comments": _comments(ecg, group, dcm_path),
        "base_time": start.time() if start else None,
        "base_date": start.date() if start else None,
    }


def _format_for(samples: np.ndarray, padding: int | None, where: str) -> str:
    """Format 16 when every sample fits, else 32; the padding value picks its own format.

    WFDB reads the lowest value of a format as "no sample", as DICOM reads the padding value.
    When the object pads, the format whose invalid value *is* the padding value keeps that
    meaning (8-bit formats pad with -128, which is format 80's). Otherwise a DICOM sample with
    a format's invalid value is a real sample, so it pushes us up a format rather than
    silently becoming a gap.
    """
    low, high = int(samples.min()), int(samples.max())
    if padding is not None and padding in _PADDING_FORMATS and low == padding:
        fmt, (fmt_low, fmt_high) = _PADDING_FORMATS[padding]
        if high <= fmt_high:
            return fmt
    for fmt, (fmt_low, fmt_high) in (("16", _INT16), ("32", _INT32)):
        if high <= fmt_high and low > fmt_low:
            return fmt
    raise ConversionError(f"{where}: samples {low}..{high} do not fit WFDB format 32")


def _gain(scale: float) -> float:
    """1/scale, as the shortest decimal that agrees with it to the precision DICOM has.

    A Decimal String sensitivity holds at most 16 characters, so a WFDB gain of 29 comes back
    as 28.99999999999971; the short form gives the header its original gain, and physical
    values differ from DICOM's by a few parts in 1e15 at most.
    """
    exact = 1.0 / scale
    for digits in range(1, 16):
        candidate = float(f"{exact:.{digits}g}")
        if abs(candidate * scale - 1.0) < 1e-13:
            return candidate
    return exact


def _group_start(ecg: DicomEcg, group: DicomGroup) -> dt.datetime | None:
    """Wall-clock start of the group: acquisition time plus the group's time offset.

    WFDB has no time zone, so the local time of the acquisition is kept as it is.
    """
    if ecg.acquisition_datetime is None:
        return None
    start = ecg.acquisition_datetime + dt.timedelta(milliseconds=group.time_offset_ms)
    return start.replace(tzinfo=None)


def _unique_names(group: DicomGroup) -> list[str]:
    """Lead names; WFDB requires them unique and free of control characters."""
    names: list[str] = []
    for number, channel in enumerate(group.channels, start=1):
        name = re.sub(r"[\x00-\x1f\x7f-\x9f]", " ", lead_name(channel)).strip()
        name = " ".join(name.split()) or f"channel {number}"
        candidate, suffix = name, 2
        while candidate in names:
            candidate, suffix = f"{name} ({suffix})", suffix + 1
        names.append(candidate)
    return names


def _refers_to(annotation: Annotation, group: DicomGroup) -> bool:
    """Annotations that name no channel belong to the first group."""
    groups = annotation.multiplex_groups
    return group.index + 1 in groups if groups else group.index == 0


def _comments(ecg: DicomEcg, group: DicomGroup, dcm_path: Path) -> list[str]:
    label = f" ({group.label})" if group.label else ""
    lines = [f"source: {dcm_path.name} multiplex group {group.index + 1} of {len(ecg.groups)}"
             f"{label}"]
    for key, value in (
        ("patient_id", ecg.patient_id),
        ("study_id", ecg.study_id),
        ("acquisition_datetime", ecg.acquisition_datetime and ecg.acquisition_datetime.isoformat()),
        ("station_name", ecg.station_name),
        ("sop_class_uid", ecg.sop_class_uid),
    ):
        if value:
            lines.append(f"{key}: {value}")
    for annotation in ecg.annotations:
        if annotation.sample_positions or not _refers_to(annotation, group):
            continue  # fiducial points go to the annotation file
        kind = "measurement" if annotation.value is not None else "statement"
        lines.append(f"{kind}: {annotation.describe()}")
    return [" ".join(line.split()) for line in lines]


def _write_fiducials(ecg: DicomEcg, group: DicomGroup, name: str, out_dir: Path) -> None:
    """Time-positioned annotations as a WFDB annotation file (DICOM positions are 1-based)."""
    points: list[tuple[int, str]] = []
    for annotation in ecg.annotations:
        if not annotation.sample_positions or not _refers_to(annotation, group):
            continue
        label = annotation.concept or annotation.text or "annotation"
        kind = annotation.temporal_range_type or "POINT"
        for order, position in enumerate(annotation.sample_positions):
            if not 1 <= position <= group.n_samples:
                continue
            note = label
            if kind == "SEGMENT":
                note = f"{label} {'start' if order == 0 else 'end'}"
            points.append((position - 1, " ".join(note.split())))
    if not points:
        return
    points.sort(key=lambda point: point[0])
    wfdb.wrann(
        name,
        ANNOTATION_EXTENSION,
        np.array([p[0] for p in points], dtype=np.int64),
        symbol=[_COMMENT_SYMBOL] * len(points),
        aux_note=[p[1] for p in points],
        fs=group.sampling_frequency,
        write_dir=str(out_dir),
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``to-wfdb``."""
    parser = subparsers.add_parser(
        "to-wfdb",
        help="write DICOM ECG waveform objects as WFDB records",
        description="Write each multiplex group of each DICOM ECG waveform object as a WFDB "
        "record (<stem> for the first group, <stem>_<n> for the others). Samples are "
        "copied bit for bit; gain and baseline reproduce DICOM's physical values; "
        "fiducial points go to a .ann annotation file.",
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE.dcm")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="DIR",
                        help="directory for the records (created if missing)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Convert every file; report each failure on one line; non-zero if any failed."""
    failures = 0
    seen: dict[str, Path] = {}
    for path in args.files:
        try:
            names = [record_name(path, 0)]
            clash = next((seen[n] for n in names if n in seen), None)
            if clash is not None:
                raise ConversionError(
                    f"{path}: record {names[0]} was already written from {clash}"
                )
            for record in dicom_to_wfdb(path, args.output):
                seen[record.name] = path
                print(record)
        except ConversionError as exc:
            failures += 1
            message = str(exc)
            if path.name not in message:
                message = f"{path}: {message}"
            print(f"wfdb2dicom to-wfdb: {message}", file=sys.stderr)
        except Exception as exc:  # a bug; still one line, and the other files still convert
            failures += 1
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())
            print(f"wfdb2dicom to-wfdb: {path}: internal error: {reason}", file=sys.stderr)
    return 1 if failures else 0
