"""A real batch run whose records make several objects each: the shared PhysioNet records
(General 32-bit ECG with SL samples, HD, pulse, respiration, multi-segment records) and the
ICU fixture, cut into two-minute parts, for verify and send to read through its manifest."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

RECORDS = {  # path under the run's --wfdb_dir -> the shared record it copies
    "fmt/binformats": "wfdb-python/binformats",
    "mixed/mixedsignals": "wfdb-python/mixedsignals",
    "ms/041s/041s": "wfdb-python/multi-segment/041s/041s",
    "ms/s25047/s25047-2704-05-04-10-44":
        "wfdb-python/multi-segment/s25047/s25047-2704-05-04-10-44",
}
MAX_DURATION = "120"
"""Seconds: the ICU record's 5 minutes become 3 parts per IOD, long segments several."""


def batch_run(physionet_dir: Path, challenge_record: Path, work: Path) -> Path:
    """Copy the records under ``work/wfdb``, convert them with ``wfdb2dicom batch``; returns
    the run's output CSV (its manifest beside it)."""
    root = work / "wfdb"
    for rel, source in {**RECORDS, "icu/a103l": None}.items():
        found = challenge_record if source is None else physionet_dir / source
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        for path in found.parent.glob(f"{found.name}*"):
            shutil.copy(path, target.parent / path.name)
        if source and "multi-segment" in source:
            shutil.copytree(found.parent, target.parent, dirs_exist_ok=True)
    listing = work / "in.csv"
    listing.write_text("study_id,path\n" + "".join(
        f"{Path(rel).name},{rel}\n" for rel in [*RECORDS, "icu/a103l"]))
    output_csv = work / "out.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "wfdb2dicom.cli", "batch", "--input_csv", str(listing),
         "--output_csv", str(output_csv), "--wfdb_dir", str(root), "--dcm_dir",
         str(work / "dcm"), "--workers", "2", "--no-progress", "--acquisition-datetime",
         "2000-01-01T00:00:00", "--max-duration", MAX_DURATION],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return output_csv
