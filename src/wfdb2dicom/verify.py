"""Prove converted objects lossless: ``wfdb2dicom verify``.

Both sides are read by independent, well-kept readers: the WFDB source by ``wfdb.rdrecord``
(not our reader), the DICOM object by ``pydicom.waveforms.multiplex_array`` (not our
encoder). Each channel is matched by label; its stored samples must be equal bit for bit, its
physical values equal within float tolerance, and the object must pass the quick integrity
check.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ConversionError

PHYSICAL_RTOL = 1e-9
"""Relative tolerance of physical values: DS text keeps ~15 significant digits."""


@dataclass(frozen=True)
class Verdict:
    """The outcome for one object: ``problem`` is None when it passed."""

    study_id: str
    dcm_path: str
    problem: str | None


def verify_object(record_path: str | Path, dcm_path: str | Path) -> str | None:
    """None when ``dcm_path`` holds ``record_path``'s samples exactly; else the first problem."""
    import pydicom
    import wfdb
    from pydicom.waveforms import multiplex_array

    from .reader import record_base
    from .validate import quick_check

    try:
        ds = pydicom.dcmread(dcm_path)
        quick_check(ds)
    except ConversionError as exc:
        return f"ValidationFailed: {exc}"
    except Exception as exc:  # unreadable or not DICOM
        return f"Unreadable: {type(exc).__name__}: {' '.join(str(exc).split())}"
    base = str(record_base(record_path))
    try:
        header = wfdb.rdheader(base)
        multi_rate = len(set(header.samps_per_frame)) > 1
        digital = wfdb.rdrecord(base, physical=False, smooth_frames=not multi_rate)
        physical = wfdb.rdrecord(base, physical=True, smooth_frames=not multi_rate)
    except Exception as exc:
        return f"SourceUnreadable: {type(exc).__name__}: {' '.join(str(exc).split())}"
    if multi_rate:
        d_columns, p_columns = list(digital.e_d_signal), list(physical.e_p_signal)
    else:
        d_columns = [digital.d_signal[:, i] for i in range(digital.n_sig)]
        p_columns = [physical.p_signal[:, i] for i in range(physical.n_sig)]
    unused = list(range(digital.n_sig))
    for group_index, group in enumerate(ds.WaveformSequence):
        raw = multiplex_array(ds, group_index, as_raw=True)
        scaled = multiplex_array(ds, group_index, as_raw=False)
        for channel_index, channel in enumerate(group.ChannelDefinitionSequence):
            label = str(channel.get("ChannelLabel", ""))
            match = next((i for i in unused if digital.sig_name[i] == label), None)
            if match is None:
                return f"channel {label!r} of group {group_index + 1} is not in the record"
            unused.remove(match)
            if not np.array_equal(raw[:, channel_index], d_columns[match]):
                diff = int(np.sum(raw[:, channel_index] != d_columns[match])) if (
                    len(raw) == len(d_columns[match])) else -1
                return (f"samples of {label!r} differ from the WFDB record"
                        + (f" ({diff} samples)" if diff >= 0 else " (lengths differ)"))
            expected = p_columns[match]
            valid = ~np.isnan(expected)
            scale = float(np.nanmax(np.abs(expected))) if valid.any() else 0.0
            if not np.allclose(scaled[valid, channel_index], expected[valid],
                               rtol=PHYSICAL_RTOL, atol=PHYSICAL_RTOL * max(scale, 1e-12)):
                return f"physical values of {label!r} differ from the WFDB record"
    if unused:
        missing = ", ".join(repr(digital.sig_name[i]) for i in unused)
        return f"signals {missing} of the record are not in the object"
    return None


def _verify_row(task: tuple[str, str, str]) -> Verdict:
    study_id, record_path, dcm_path = task
    try:
        problem = verify_object(record_path, dcm_path)
    except Exception as exc:  # a verification must report, never crash the run
        problem = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    return Verdict(study_id, dcm_path, problem)


def read_run(
    output_csv: Path, wfdb_dir: Path, *, study_id_col: str = "study_id", path_col: str = "path",
    dcm_path_col: str = "dcm_path", error_col: str = "dcm_error",
) -> list[tuple[str, str, str]]:
    """(study_id, record path, object path) of every object of a batch run (read by the one
    reader of a run's CSV, :class:`~wfdb2dicom.batch.runcsv.RunCsv`)."""
    from .batch.runcsv import RunCsv

    run = RunCsv(output_csv, study_id_col=study_id_col, path_col=path_col,
                 dcm_path_col=dcm_path_col, error_col=error_col)
    tasks = []
    for obj in run.iter_objects():
        record = Path(obj.record_path)
        if record.suffix in (".hea", ".dat"):
            record = record.with_suffix("")
        tasks.append((obj.study_id, str(wfdb_dir / record), obj.file))
    return tasks


def verify_run(tasks: list[tuple[str, str, str]], workers: int = 1,
               progress: bool = True) -> list[Verdict]:
    """Verify every task, in parallel; verdicts in input order."""
    from tqdm import tqdm

    bar = tqdm(total=len(tasks), unit="obj", disable=not progress, file=sys.stderr)
    verdicts = []
    if workers <= 1:
        for task in tasks:
            verdicts.append(_verify_row(task))
            bar.update()
    else:
        with ProcessPoolExecutor(workers) as pool:
            for verdict in pool.map(_verify_row, tasks, chunksize=16):
                verdicts.append(verdict)
                bar.update()
    bar.close()
    return verdicts


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "verify",
        help="prove converted objects equal their WFDB source (samples and physical values)",
        description="Decode each converted object with pydicom and compare it with its WFDB "
        "source read by the wfdb package: stored samples bit for bit, physical values within "
        "float tolerance, plus the integrity check. Either one record and its object "
        "(verify RECORD FILE.dcm) or every converted row of a batch run (verify --output_csv "
        "RUN.csv; the run's --wfdb_dir is read from its ledger unless given). Exit 0 when "
        "everything passes, 1 on any failure.",
    )
    parser.add_argument("record", nargs="?", help="WFDB record path (without extension)")
    parser.add_argument("dcm", nargs="?", help="the DICOM object made from it")
    parser.add_argument("--output_csv", type=Path, help="a batch run's output CSV")
    parser.add_argument("--wfdb_dir", type=Path,
                        help="the run's record root (default: what the batch run recorded)")
    parser.add_argument("--study_id_col", default="study_id")
    parser.add_argument("--path_col", default="path")
    parser.add_argument("--dcm_path_col", default="dcm_path")
    parser.add_argument("--error_col", default="dcm_error")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--report", type=Path, help="also write every verdict to this CSV")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.output_csv:
        if args.record or args.dcm:
            raise ConversionError("give either RECORD FILE.dcm or --output_csv, not both")
        wfdb_dir = args.wfdb_dir
        if wfdb_dir is None:
            from .batch.ledger import recorded_meta

            recorded = recorded_meta(args.output_csv, "wfdb_dir")
            if recorded is None:
                raise ConversionError(
                    "no --wfdb_dir given and none recorded for this run (its ledger is "
                    "missing): give --wfdb_dir, the run's record root"
                )
            wfdb_dir = Path(recorded)
        tasks = read_run(args.output_csv, wfdb_dir, study_id_col=args.study_id_col,
                         path_col=args.path_col, dcm_path_col=args.dcm_path_col,
                         error_col=args.error_col)
        verdicts = verify_run(tasks, args.workers)
    elif args.record and args.dcm:
        verdicts = [_verify_row((Path(args.record).name, args.record, args.dcm))]
    else:
        raise ConversionError("give RECORD FILE.dcm, or --output_csv RUN.csv --wfdb_dir DIR")
    failures = [v for v in verdicts if v.problem]
    for verdict in failures:
        print(f"FAIL {verdict.study_id}\t{verdict.dcm_path}\t{verdict.problem}")
    if args.report:
        with args.report.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["study_id", "dcm_path", "result"])
            for v in verdicts:
                writer.writerow([v.study_id, v.dcm_path, v.problem or "PASS"])
    print(f"verified {len(verdicts)} objects: {len(verdicts) - len(failures)} passed, "
          f"{len(failures)} failed")
    return 1 if failures else 0
