"""The seed's ``run_convert.py`` command line, as ``run_convert.py`` and ``wfdb2dicom batch``.

Flags, defaults and meanings are the seed's (``run_convert.md``); the options of the core
conversion and ``--verify-existing`` are added. ``register`` plugs the subcommand into
``wfdb2dicom.cli``; ``main`` is what ``run_convert.py`` calls.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..cli_options import add_conversion_options
from ..errors import ConversionError, ExitStatus, Terminated, one_line, raise_on_sigterm
from . import RunStopped

BLAS_THREADS_ENV = "OPENBLAS_NUM_THREADS"
"""numpy's OpenBLAS threads; a batch runs with one unless the environment says otherwise."""

DESCRIPTION = (
    "Convert every WFDB record listed in a CSV (MIMIC-IV-ECG's record_list.csv works as is) "
    "to a DICOM ECG file, in parallel, with a hard timeout per study. Safe to kill at any "
    "moment: run the same command again and it resumes where it stopped."
)

EPILOG = """\
outputs:
  DCM_DIR/<path>.dcm        the DICOM file of a record that makes one object (<path>
                            without .hea/.dat); a record of several objects (IODs, segments,
                            parts): DCM_DIR/<path>_s0001_p001_ecg.dcm etc.
  OUTPUT_CSV                every input column, in order, plus dcm_path (the row's first
                            object) and dcm_error: one row per input row, in input order
                            (written once, at the end)
  OUTPUT_CSV.objects.csv    the manifest: one line per object (row, study_id, record_path,
                            dcm_path, sop_class_uid, modality, segment, part, start,
                            channels, left_out)
  ERROR_LOG                 default OUTPUT_CSV.errors.log: a "=== RUN <time> | todo=N ==="
                            line per run, then study_id<TAB>path<TAB>error per failed row
  OUTPUT_CSV.ledger.sqlite  progress, committed every --checkpoint rows; resume reads it

errors (dcm_error): Timeout>{N}s, Missing df_info row for study_id, ValidationFailed: ...,
  WorkerCrash: ..., UnsafePath: ..., DuplicateOutput: ..., DuplicateStudy: ...,
  {ExceptionType}: {message}, and InternalError: {ExceptionType}: {message} for a bug
  (counted apart in the summary; please report it). At most 500 characters each.

resume: rows converted by an earlier run whose file exists are skipped; failed and unfinished
  rows are done again. --overwrite redoes everything; --verify-existing re-checks the files.
  A row the ledger records as done has a durable file (synced before the commit).
  One run per OUTPUT_CSV at a time (a second one refuses); runs with different OUTPUT_CSVs
  may share DCM_DIR.

exit status:
  0    the run completed: every row converted or was already done; run_convert.py:
       the run completed, whatever rows failed (the seed's contract)
  1    wfdb2dicom batch only: the run completed but some rows failed (see dcm_error
       in OUTPUT_CSV and ERROR_LOG)
  2    nothing started: bad arguments, unusable inputs, an output that is an input,
       a damaged ledger, or another run on the same OUTPUT_CSV
  3    internal error (a bug: please report it)
  4    stopped part-way by an I/O error on the file named (disk full, read-only):
       what was done is kept; run the same command again to resume
  130  interrupted (SIGINT, Ctrl-C) / 143 terminated (SIGTERM): run the same command
       again to resume
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The seed's flags (underscored, as it spells them) plus ours."""
    seed = parser.add_argument_group("the seed's arguments")
    seed.add_argument("--input_csv", required=True, type=location,
                      help="CSV listing the records: study_id and path columns (path relative "
                      "to --wfdb_dir, with or without .hea/.dat)")
    seed.add_argument("--output_csv", required=True, type=Path,
                      help="the input's rows with dcm_path and dcm_error added")
    seed.add_argument("--wfdb_dir", required=True, type=location,
                      help="root the paths are relative to (for MIMIC-IV-ECG, the directory "
                      "holding record_list.csv and files/)")
    seed.add_argument("--dcm_dir", required=True, type=location,
                      help="output root: DCM_DIR/<path>.dcm")
    seed.add_argument("--df_info_pkl", "--metadata", dest="df_info_pkl", type=location,
                      metavar="TABLE",
                      help="study metadata: MIMIC's machine_measurements.csv or PTB-XL's "
                      "ptbxl_database.csv as published, the same as Parquet, or the seed's "
                      "pickle (warned: loading a pickle runs code). Optional: without it "
                      "objects carry only what the WFDB header says")
    seed.add_argument("--study_id_col", default="study_id",
                      help="study_id column of the input (default %(default)s)")
    seed.add_argument("--path_col", default="path",
                      help="record path column of the input (default %(default)s)")
    seed.add_argument("--dcm_path_col", default="dcm_path",
                      help="output column for the DICOM path (default %(default)s)")
    seed.add_argument("--error_col", default="dcm_error",
                      help="output column for the error (default %(default)s)")
    seed.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                      help="worker processes (default: CPU count, %(default)s here)")
    seed.add_argument("--timeout", type=float, default=60,
                      help="hard timeout per study in seconds, for any one step of it (a "
                           "read, the encoding, a write) (default %(default)g)")
    seed.add_argument("--checkpoint", type=int, default=2000,
                      help="commit progress every N completed rows, 0 = only at the end "
                      "(default %(default)s)")
    seed.add_argument("--overwrite", action="store_true",
                      help="convert every row again, even those already done")
    seed.add_argument("--error_log", type=Path,
                      help="error log (default OUTPUT_CSV.errors.log)")
    conv = add_conversion_options(parser)
    conv.add_argument("--verify-existing", action="store_true",
                      help="on resume, re-read each done file and redo those failing the "
                      "quick check (slower: every file is read)")
    conv.add_argument("--no-progress", action="store_true", help="no progress bar")
    conv.add_argument("--no-sync", action="store_true",
                      help="do not sync converted files before the ledger records them "
                      "(faster on slow disks; after a power cut, rows recorded as done may "
                      "have lost their files: run with --verify-existing then)")
    scale = parser.add_argument_group("scale out (needs: pip install 'wfdb2dicom[dask]')")
    scale.add_argument("--scheduler", metavar="ADDRESS",
                       help="run the chunks on a Dask cluster: 'local' starts a LocalCluster "
                       "of --workers processes; tcp://HOST:8786 uses a running scheduler. "
                       "The plan, ledger, error log and output CSV stay in this process. "
                       "Default: this machine's worker processes, without Dask")
    scale.add_argument("--anon", action="store_true",
                       help="read s3:// and gs:// URLs without credentials (public buckets); "
                       "otherwise credentials come from the provider's usual chain")
    parser.add_argument("--start-method", choices=("fork", "spawn", "forkserver"),
                        help=argparse.SUPPRESS)  # tests; also $WFDB2DICOM_START_METHOD


def config_from_args(args: argparse.Namespace):
    from .engine import BatchConfig
    from .work import OptionValues

    return BatchConfig(
        input_csv=args.input_csv,
        output_csv=args.output_csv,
        wfdb_dir=args.wfdb_dir,
        dcm_dir=args.dcm_dir,
        metadata=args.df_info_pkl,
        metadata_format=args.metadata_format,
        study_id_col=args.study_id_col,
        path_col=args.path_col,
        dcm_path_col=args.dcm_path_col,
        error_col=args.error_col,
        workers=args.workers,
        timeout=args.timeout,
        checkpoint=args.checkpoint,
        overwrite=args.overwrite,
        verify_existing=args.verify_existing,
        error_log=args.error_log,
        options=OptionValues(
            uid_root=args.uid_root,
            annotations=not args.no_annotations,
            acquisition_datetime=args.acquisition_datetime,
            verify_checksums=not args.no_checksum,
            signal_classes=tuple(args.signal_class),
            max_duration=args.max_duration,
        ),
        start_method=args.start_method,
        progress=False if args.no_progress else None,
        sync=not args.no_sync,
        scheduler=args.scheduler,
        anon=args.anon,
    )


def location(text: str) -> Path | str:
    """A path flag's value: a ``Path``, or a URL kept as text (``s3://``, ``gs://``,
    ``http(s)://``; ``file://x`` is the path ``x``). Needs the ``dask`` extra."""
    if text.startswith("file://"):
        return Path(text[len("file://"):])
    return text if "://" in text else Path(text)


def run_from_args(args: argparse.Namespace, *, prog: str = "wfdb2dicom batch",
                  rows_failed: int = ExitStatus.ROWS_FAILED) -> int:
    """The subcommand's handler: run, and map outcomes to the documented exit status
    (:class:`~wfdb2dicom.errors.ExitStatus`). ``rows_failed``: the status of a run that
    completed with failed rows (``run_convert.py``: 0, the seed's contract)."""
    # Nothing here multiplies matrices, yet numpy's OpenBLAS starts a thread per core that
    # spins ~0.1 s of CPU at import, in this process and in the fork server: CPU the workers
    # need. Set before numpy is imported (by the engine); inherited by the fork server.
    os.environ.setdefault(BLAS_THREADS_ENV, "1")
    raise_on_sigterm()
    resume = "run the same command again to resume"
    try:
        from .engine import run_batch

        summary = run_batch(config_from_args(args))
        return int(rows_failed if summary.failed else ExitStatus.OK)
    except RunStopped as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return ExitStatus.STOPPED_BY_IO_ERROR
    except (ConversionError, OSError) as exc:
        print(f"{prog}: {one_line(str(exc))}", file=sys.stderr)
        return ExitStatus.NOTHING_STARTED
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; {resume}", file=sys.stderr)
        return ExitStatus.INTERRUPTED
    except Terminated:
        print(f"{prog}: terminated (SIGTERM); {resume}", file=sys.stderr)
        return ExitStatus.TERMINATED


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return parser


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``wfdb2dicom batch``."""
    parser = subparsers.add_parser(
        "batch", help="convert every record listed in a CSV (the seed's run_convert.py)",
        description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(handler=run_from_args)


def main(argv: list[str] | None = None) -> int:
    """``python run_convert.py ...``: the seed's entry point."""
    prog = "run_convert.py"
    args = build_parser(prog).parse_args(argv)
    return run_from_args(args, prog=prog, rows_failed=ExitStatus.OK)
