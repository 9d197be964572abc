"""A run of several-object records written as the batch writes one: the output CSV (one row
per record, ``dcm_path`` its first object) and the manifest ``{output_csv}.objects.csv``
(one line per object), from ``convert -o DIR/``'s objects, for verify and send to read."""

from __future__ import annotations

import csv
import datetime as dt
import re
from pathlib import Path

import pydicom
from pydicom.valuerep import DT

from wfdb2dicom.batch.runcsv import CHANNEL_SEPARATOR, MANIFEST_COLUMNS, manifest_path
from wfdb2dicom.builder import ConversionOptions
from wfdb2dicom.convert import write_record

WHEN = dt.datetime(2000, 1, 1)


def write_multi_object_run(records: list[tuple[Path, float | None]], out: Path) -> Path:
    """Convert each ``(record, max_duration)`` into ``out`` and write their run CSV and
    manifest; returns the CSV."""
    rows, lines = [], []
    for number, (base, max_duration) in enumerate(records, start=1):
        options = ConversionOptions(acquisition_datetime=WHEN, max_duration=max_duration)
        written = write_record(base, f"{out}/dcm/{base.name}/", options=options)
        rows.append({"study_id": base.name, "path": str(base), "dcm_path": str(written.paths[0]),
                     "dcm_error": ""})
        for path in written.paths:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            where = re.search(r"_s(\d{4})_p(\d{3})_", path.name)
            segment, part = (int(where[1]), int(where[2])) if where else (1, 1)
            labels = [c.ChannelLabel for g in ds.WaveformSequence
                      for c in g.ChannelDefinitionSequence]
            start = DT(ds.AcquisitionDateTime)
            lines.append([number, base.name, str(base), str(path), ds.SOPClassUID, ds.Modality,
                          segment, part, dt.datetime(*start.timetuple()[:6],
                                                     start.microsecond).isoformat(),
                          CHANNEL_SEPARATOR.join(labels), ""])
    output_csv = out / "run.csv"
    with output_csv.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with manifest_path(output_csv).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(MANIFEST_COLUMNS)
        writer.writerows(lines)
    return output_csv
