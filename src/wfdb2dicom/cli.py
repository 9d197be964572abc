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
from .errors import ConversionError, ExitStatus, Terminated, one_line, raise_on_sigterm

COMMANDS: dict[str, tuple[str, str]] = {
    "convert": ("wfdb2dicom.commands", "convert one WFDB record to a DICOM ECG object"),
    "validate": ("wfdb2dicom.commands",
                 "check DICOM waveform objects (integrity, IOD constraints, dciodvfy when "
                 "installed)"),
    "demo": ("wfdb2dicom.commands",
             "make a small MIMIC-IV-ECG-shaped sample corpus and convert it"),
    "batch": ("wfdb2dicom.batch.cli",
              "convert every record listed in a CSV (the seed's run_convert.py)"),
    "verify": ("wfdb2dicom.verify",
               "prove converted objects equal their WFDB source (samples and physical values)"),
    "to-wfdb": ("wfdb2dicom.to_wfdb", "write DICOM ECG objects (ours or vendors') as WFDB"),
    "preview": ("wfdb2dicom.preview", "draw a DICOM ECG as the standard 12-lead printout"),
    "send": ("wfdb2dicom.send",
             "send a batch run's objects to a PACS (C-STORE) or DICOMweb server (STOW-RS)"),
}
"""Subcommand -> (module whose ``register`` adds it, one-line help), in ``--help`` order.

Only the module of the command being run is imported: the others pull in pydicom, wfdb,
pandas or matplotlib, which would make every ``--help`` take seconds.
"""


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with ``argv``, only the chosen command's module is imported."""
    parser = argparse.ArgumentParser(
        prog="wfdb2dicom",
        description="Convert WFDB ECG records (MIMIC-IV-ECG and others) to DICOM ECG waveform "
        "objects, losslessly and reproducibly.",
        epilog="exit status: 0 ok; 1 some rows or objects failed; 2 nothing started (bad "
        "arguments, a refused input); 3 internal error (a bug); 4 a batch stopped part-way by "
        "an I/O error (run it again to resume); 130 SIGINT; 143 SIGTERM. Each command's "
        "--help says which apply.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    words = [a for a in (argv if argv is not None else sys.argv[1:]) if not a.startswith("-")]
    chosen = words[0] if words and words[0] in COMMANDS else None
    registered: set[str] = set()
    for name, (module, summary) in COMMANDS.items():
        if name in registered:
            continue
        if chosen is not None and COMMANDS[chosen][0] == module:
            before = set(subparsers.choices)
            importlib.import_module(module).register(subparsers)
            registered |= set(subparsers.choices) - before
        else:
            subparsers.add_parser(name, help=summary, description=summary)
            registered.add(name)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a subcommand; its exit status is one of :class:`~wfdb2dicom.errors.ExitStatus`."""
    raise_on_sigterm()
    parser = build_parser(argv if argv is not None else sys.argv[1:])
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except ConversionError as exc:
        print(f"wfdb2dicom {args.command}: {exc}", file=sys.stderr)
        return ExitStatus.NOTHING_STARTED
    except KeyboardInterrupt:
        print(f"wfdb2dicom {args.command}: interrupted", file=sys.stderr)
        return ExitStatus.INTERRUPTED
    except Terminated:
        print(f"wfdb2dicom {args.command}: terminated (SIGTERM)", file=sys.stderr)
        return ExitStatus.TERMINATED
    except Exception as exc:  # a bug, but users still get one line, not a traceback
        if os.environ.get("WFDB2DICOM_DEBUG"):
            raise
        reason = one_line(f"{type(exc).__name__}: {exc}")
        print(f"wfdb2dicom {args.command}: internal error: {reason} (set WFDB2DICOM_DEBUG=1 "
              "for a traceback, and please report it)", file=sys.stderr)
        return ExitStatus.INTERNAL_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
