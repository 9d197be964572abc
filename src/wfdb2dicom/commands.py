"""Core subcommands: ``convert`` (one record), ``validate`` (check objects), ``demo``."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from .builder import ConversionOptions
from .cli_options import add_conversion_options
from .errors import ConversionError


def conversion_options(args: argparse.Namespace) -> ConversionOptions:
    """ConversionOptions from parsed arguments (validates --uid-root up front)."""
    from .signal_classes import parse_override
    from .uids import check_uid_root

    return ConversionOptions(
        uid_root=check_uid_root(args.uid_root) if args.uid_root else None,
        annotations=not args.no_annotations,
        acquisition_datetime=args.acquisition_datetime,
        patient_id=getattr(args, "patient_id", None),
        verify_checksums=not args.no_checksum,
        signal_classes=tuple(sorted(dict(map(parse_override, args.signal_class)).items())),
        max_duration=args.max_duration,
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    convert = subparsers.add_parser(
        "convert",
        help="convert one WFDB record to DICOM waveform objects",
        description="Convert one WFDB record to DICOM waveform objects: one per IOD (ECG, "
        "hemodynamic, arterial pulse, respiratory), per segment and per part. With -o DIR/ "
        "every object is written in DIR and its path printed, one per line; -o FILE.dcm "
        "works for a record that makes one object. Exit 0 on success; otherwise a one-line "
        "reason on stderr, exit 2, and no output file.",
    )
    convert.add_argument("record", help="record path without extension (a trailing .hea is "
                         "accepted)")
    convert.add_argument("-o", "--output", required=True, metavar="OUT.dcm|DIR/",
                         help="the file of a record that makes one object, or a directory "
                         "(existing, or a path ending in /) for every object")
    convert.add_argument("--metadata", type=Path, metavar="FILE",
                         help="the study's metadata table: MIMIC-IV-ECG's "
                         "machine_measurements.csv or PTB-XL's ptbxl_database.csv as "
                         "published, the same as Parquet, or the seed's pickle")
    convert.add_argument("--study-id", metavar="ID",
                         help="study key to look up and to derive UIDs from (MIMIC's "
                         "study_id, PTB-XL's ecg_id; default: the record name)")
    convert.add_argument("--patient-id", metavar="ID",
                         help="Patient ID when the metadata gives no subject_id (default: the "
                         "record name)")
    add_conversion_options(convert)
    convert.set_defaults(handler=run_convert)

    validate = subparsers.add_parser(
        "validate",
        help="check DICOM waveform objects (integrity, IOD constraints, dciodvfy when "
        "installed)",
        description="Check each file: the quick integrity check, the content constraints of "
        "its IOD (PS3.3 A.34), and dciodvfy (dicom3tools) when it is installed; for the IODs "
        "dciodvfy does not know (Arterial Pulse, Respiratory, Multi-channel Respiratory, "
        "General 32-bit ECG) dciodvfy checks a copy re-labelled as Hemodynamic. Exit 0 when "
        "every file passes with no error or warning, 1 otherwise.",
    )
    validate.add_argument("files", nargs="+", type=Path, metavar="FILE")
    validate.add_argument("--no-dciodvfy", action="store_true", help="skip dciodvfy")
    validate.set_defaults(handler=run_validate)

    demo = subparsers.add_parser(
        "demo",
        help="make a small MIMIC-IV-ECG-shaped sample corpus and convert it",
        description="Write a synthetic MIMIC-IV-ECG-shaped corpus (same folder layout, "
        "record_list.csv, machine_measurements.csv, a few deliberately broken records) into "
        "DIR and convert it with the batch engine. The broken records fail with one-line "
        "reasons; that is the point of them.",
    )
    demo.add_argument("dir", nargs="?", type=Path, default=Path("wfdb2dicom-demo"),
                      help="where to write the corpus and the output (default: "
                      "./wfdb2dicom-demo)")
    demo.add_argument("-n", "--records", type=int, default=24, help="good records (default 24)")
    demo.add_argument("--dataset", choices=("mimic", "ptbxl"), default="mimic",
                      help="the corpus's shape: MIMIC-IV-ECG (default) or PTB-XL (records500/, "
                      "records100/ and ptbxl_database.csv, which is both the input list and "
                      "the metadata)")
    demo.add_argument("--workers", type=int, default=None, help="worker processes (default: CPU "
                      "count)")
    demo.set_defaults(handler=run_demo)


def run_convert(args: argparse.Namespace) -> int:
    from .convert import write_record
    from .fileio import open_regular_file
    from .metadata import MetadataTable

    options = conversion_options(args)
    table = None
    if args.metadata:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            table = MetadataTable.load(args.metadata, args.metadata_format)
        for warning in caught:
            print(f"wfdb2dicom convert: warning: {warning.message}", file=sys.stderr)
    # No timeout guards a single conversion: what is not a regular file (a FIFO would block
    # forever, /dev/zero never ends) is refused as it is opened.
    written = write_record(args.record, args.output, table, study_id=args.study_id,
                           options=options, inputs=[args.metadata] if args.metadata else [],
                           opener=open_regular_file)
    for path in written.paths:
        print(path)
    for signal in written.left_out:
        print(f"wfdb2dicom convert: note: signal {signal.label!r} (segment {signal.segment}) "
              f"left out: {signal.reason}", file=sys.stderr)
    return 0


def run_validate(args: argparse.Namespace) -> int:
    import pydicom

    from .validate import dciodvfy_conformance, dciodvfy_path, iod_problems, quick_check

    use_dciodvfy = not args.no_dciodvfy and dciodvfy_path() is not None
    if not args.no_dciodvfy and not use_dciodvfy:
        print("note: dciodvfy not installed (apt-get install dicom3tools); integrity and IOD "
              "checks only", file=sys.stderr)
    failures = 0
    for path in args.files:
        try:
            ds = pydicom.dcmread(path)
            quick_check(ds)
            problems = iod_problems(ds)
            if problems:
                raise ConversionError(f"{len(problems)} IOD constraint(s) broken; first: "
                                      f"{problems[0]}")
            if use_dciodvfy:
                report = dciodvfy_conformance(path)
                if not report.clean:
                    found = report.errors + report.warnings
                    raise ConversionError(
                        f"dciodvfy: {len(report.errors)} errors, {len(report.warnings)} "
                        f"warnings; first: {found[0]}"
                    )
        except ConversionError as exc:
            failures += 1
            print(f"FAIL {path}: {exc}")
        except Exception as exc:  # unreadable or not DICOM
            failures += 1
            print(f"FAIL {path}: {type(exc).__name__}: {' '.join(str(exc).split())}")
        else:
            print(f"OK   {path}")
    return 1 if failures else 0


def run_demo(args: argparse.Namespace) -> int:
    from .batch.engine import BatchConfig, run_batch
    from .synthetic import generate_corpus

    root = args.dir
    if args.dataset == "ptbxl":
        return _run_ptbxl_demo(root, args)
    corpus = generate_corpus(root / "mimic-iv-ecg", args.records)
    print(f"wrote {len(corpus.good)} records and {len(corpus.broken)} broken ones under "
          f"{corpus.root}")
    config = BatchConfig(
        input_csv=corpus.record_list_csv,
        output_csv=root / "record_list.with_dcm.csv",
        wfdb_dir=corpus.root,
        dcm_dir=root / "dicom",
        metadata=corpus.machine_measurements_csv,
        **({"workers": args.workers} if args.workers else {}),
    )
    summary = run_batch(config)
    expected_failures = len(corpus.broken)
    print(f"demo: {summary.failed} of {summary.rows} rows failed; {expected_failures} records "
          "were made broken on purpose (their one-line reasons are in the error log)")
    return 0 if summary.failed == expected_failures else 1


def _run_ptbxl_demo(root: Path, args: argparse.Namespace) -> int:
    """The PTB-XL demo: its own table is the batch's input list and its metadata."""
    from .batch.engine import BatchConfig, run_batch
    from .synthetic import generate_ptbxl_corpus

    corpus = generate_ptbxl_corpus(root / "ptb-xl", args.records)
    assert corpus.table_csv is not None
    print(f"wrote {len(corpus.records)} records ({args.records} ECGs at 500 and 100 Hz) "
          f"under {corpus.root}")
    summary = run_batch(BatchConfig(
        input_csv=corpus.table_csv,
        output_csv=root / "ptbxl_database.with_dcm.csv",
        wfdb_dir=corpus.root,
        dcm_dir=root / "dicom",
        metadata=corpus.table_csv,
        study_id_col="ecg_id",
        path_col="filename_hr",
        **({"workers": args.workers} if args.workers else {}),
    ))
    print(f"demo: {summary.failed} of {summary.rows} rows failed")
    return 0 if summary.failed == 0 else 1
