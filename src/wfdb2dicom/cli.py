"""The ``wfdb2dicom`` command: a thin dispatcher over the library.

Each subcommand lives with the code it drives and exposes ``register(subparsers)``, which
adds its parser and sets ``handler`` to a function ``(args) -> exit status``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from . import __version__
from .errors import ConversionError

COMMAND_MODULES = (
    "wfdb2dicom.commands",
    "wfdb2dicom.batch.cli",
    "wfdb2dicom.verify",
    "wfdb2dicom.to_wfdb",
    "wfdb2dicom.preview",
    "wfdb2dicom.send",
)
"""Modules whose ``register`` adds subcommands, in the order ``--help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wfdb2dicom",
        description="Convert WFDB ECG records (MIMIC-IV-ECG and others) to DICOM ECG waveform "
        "objects, losslessly and reproducibly.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except ConversionError as exc:
        print(f"wfdb2dicom {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"wfdb2dicom {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, but users still get one line, not a traceback
        if os.environ.get("WFDB2DICOM_DEBUG"):
            raise
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        print(f"wfdb2dicom {args.command}: internal error: {reason} (set WFDB2DICOM_DEBUG=1 "
              "for a traceback, and please report it)", file=sys.stderr)
        return 3


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
