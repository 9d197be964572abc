"""Command-line options shared by ``convert`` and ``batch``.

Kept free of heavy imports: ``batch`` builds its parser before deciding whether there is any
work, and a resume with nothing to do must not pay for pydicom.
"""

from __future__ import annotations

import argparse
import datetime as dt


def iso_datetime(text: str) -> dt.datetime:
    """argparse type for ``--acquisition-datetime`` (ISO 8601, e.g. 2180-07-23T21:40:00)."""
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO date and time (e.g. 2180-07-23T21:40:00)"
        ) from None


METADATA_FORMATS = ("auto", "mimic", "ptbxl")
"""``--metadata-format`` values: ``auto`` tells the source by the table's columns (the names
of :mod:`wfdb2dicom.sources`; kept here as text so that parsing imports nothing)."""


def add_conversion_options(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The options of the core conversion; returns their group for callers to extend."""
    group = parser.add_argument_group("conversion")
    group.add_argument("--metadata-format", choices=METADATA_FORMATS, default="auto",
                       help="what the metadata table is: MIMIC-IV-ECG's machine_measurements "
                       "(key study_id) or PTB-XL's ptbxl_database.csv (key ecg_id); default: "
                       "told by its columns")
    group.add_argument("--uid-root", metavar="ROOT",
                       help="derive UIDs under this root (default: UUID-derived 2.25.)")
    group.add_argument("--no-annotations", action="store_true",
                       help="signal only: leave out machine measurements and report statements")
    group.add_argument("--acquisition-datetime", type=iso_datetime, metavar="ISO",
                       help="acquisition time to use when neither the header nor the metadata "
                       "give one")
    group.add_argument("--no-checksum", action="store_true",
                       help="convert even when the header checksums do not match the samples")
    group.add_argument("--signal-class", action="append", default=[], metavar="NAME=CLASS",
                       help="treat the signal NAME (as the header writes it) as CLASS: ecg, "
                       "pressure, pulse, resp, or another class to leave it out (repeatable)")
    group.add_argument("--max-duration", type=positive_seconds, metavar="SECONDS",
                       help="split signals longer than this into consecutive objects")
    return group


def positive_seconds(text: str) -> float:
    """argparse type for ``--max-duration``."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value
