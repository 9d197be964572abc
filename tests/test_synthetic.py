"""The synthetic corpus is what the demo, the suite and the benchmark convert: prove it is a
faithful MIMIC-IV-ECG stand-in (layout, header dialect, tables), that its defects are real,
and that the same seed gives the same bytes. Everything is read back with independent tools
(``wfdb``, ``csv``, ``pandas``, raw bytes), never with the generator's own helpers."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import wfdb

from wfdb2dicom.synthetic import (
    BROKEN_KINDS,
    LEADS,
    SyntheticCorpus,
    generate_corpus,
)

EXPECTED_LEADS = ["I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6"]
RECORD_LIST_COLUMNS = ["subject_id", "study_id", "file_name", "ecg_time", "path"]
MEASUREMENT_COLUMNS = (
    ["subject_id", "study_id", "cart_id", "ecg_time"]
    + [f"report_{i}" for i in range(18)]
    + ["bandwidth", "filtering", "rr_interval", "p_onset", "p_end", "qrs_onset", "qrs_end"]
    + ["t_end", "p_axis", "qrs_axis", "t_axis"]
)
PATH_RE = re.compile(r"^files/p(\d{4})/p(\d{8})/s(\d{8})/(\d{8})$")
RECORD_LINE_RE = re.compile(
    r"^(\d{8}) 12 500 5000(?: (\d\d:\d\d:\d\d) (\d\d/\d\d/\d{4}))?$"
)
SIGNAL_LINE_RE = re.compile(r"^(\d{8})\.dat 16 200\.0\(0\)/mV 16 0 (-?\d+) (-?\d+) 0 (\S+)$")
FRAME_BYTES = 12 * 2
N = 5000


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> SyntheticCorpus:
    return generate_corpus(tmp_path_factory.mktemp("synthetic") / "mimic", 24, seed=0)


def read_dat(corpus: SyntheticCorpus, rel: str) -> np.ndarray:
    """The .dat as (lead, time), straight from the bytes."""
    raw = (corpus.root / f"{rel}.dat").read_bytes()
    return np.frombuffer(raw, dtype="<i2").reshape(-1, 12).T


def wfdb_checksum(row: np.ndarray) -> int:
    """WFDB's definition, in plain Python integers."""
    total = sum(int(v) for v in row) % 65536
    return total - 65536 if total > 32767 else total


def csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# --- layout ------------------------------------------------------------------------------


def test_corpus_paths_and_counts(corpus: SyntheticCorpus) -> None:
    assert corpus.record_list_csv == corpus.root / "record_list.csv"
    assert corpus.machine_measurements_csv == corpus.root / "machine_measurements.csv"
    assert len(corpus.good) == 24
    assert set(corpus.broken.values()) == set(BROKEN_KINDS)
    assert len(corpus.broken) == len(BROKEN_KINDS)
    assert not set(corpus.good) & set(corpus.broken)
    assert tuple(LEADS) == tuple(EXPECTED_LEADS)


def test_mimic_directory_layout(corpus: SyntheticCorpus) -> None:
    studies_per_subject: dict[str, int] = {}
    for rel in [*corpus.good, *corpus.broken]:
        match = PATH_RE.match(rel)
        assert match, rel
        prefix, subject, study, name = match.groups()
        assert subject.startswith(prefix)
        assert name == study
        assert (corpus.root / f"{rel}.hea").is_file()
        studies_per_subject[subject] = studies_per_subject.get(subject, 0) + 1
    for rel in corpus.good:
        assert (corpus.root / f"{rel}.dat").is_file()
    assert max(studies_per_subject.values()) > 1, "some subjects must have several studies"
    assert max(studies_per_subject.values()) <= 4


# --- good records: headers and samples -----------------------------------------------------


def test_good_records_read_by_wfdb_equal_the_bytes(corpus: SyntheticCorpus) -> None:
    for rel in corpus.good:
        record = wfdb.rdrecord(str(corpus.root / rel), physical=False)
        assert record.fs == 500
        assert record.sig_len == N
        assert record.n_sig == 12
        assert record.sig_name == EXPECTED_LEADS
        assert record.fmt == ["16"] * 12
        assert record.adc_gain == [200.0] * 12
        assert record.baseline == [0] * 12
        assert record.units == ["mV"] * 12
        samples = record.d_signal.T
        assert samples.shape == (12, N)
        assert np.issubdtype(samples.dtype, np.integer)
        np.testing.assert_array_equal(samples, read_dat(corpus, rel))


def test_header_dialect_checksums_and_initial_values(corpus: SyntheticCorpus) -> None:
    for rel in corpus.good:
        lines = (corpus.root / f"{rel}.hea").read_text(encoding="ascii").splitlines()
        assert len(lines) == 13, rel
        record_match = RECORD_LINE_RE.match(lines[0])
        assert record_match, lines[0]
        assert record_match.group(1) == rel.rsplit("/", 1)[1]
        samples = read_dat(corpus, rel)
        for lead, (line, row) in enumerate(zip(lines[1:], samples, strict=True)):
            match = SIGNAL_LINE_RE.match(line)
            assert match, line
            name, initial, checksum, description = match.groups()
            assert name == record_match.group(1)
            assert description == EXPECTED_LEADS[lead]
            assert int(initial) == int(row[0])
            assert int(checksum) == wfdb_checksum(row), f"{rel} lead {description}"


def test_about_one_in_six_records_has_no_base_time(corpus: SyntheticCorpus) -> None:
    ecg_time = {row["path"]: row["ecg_time"] for row in csv_rows(corpus.record_list_csv)}
    without = 0
    for rel in corpus.good:
        first = (corpus.root / f"{rel}.hea").read_text(encoding="ascii").splitlines()[0]
        _, base_time, base_date = RECORD_LINE_RE.match(first).groups()
        if base_time is None:
            without += 1
            continue
        day, month, year = base_date.split("/")
        assert ecg_time[rel] == f"{year}-{month}-{day} {base_time}"
    assert 1 <= without <= len(corpus.good) // 2


def test_signals_are_plausible_ecgs(corpus: SyntheticCorpus) -> None:
    for rel in corpus.good:
        samples = read_dat(corpus, rel).astype(np.int64)
        valid = samples != -32768
        assert np.abs(samples[valid]).max() < 1000  # within +-5 mV
        assert (samples[valid].max() - samples[valid].min()) > 200  # has QRS complexes
        both = valid[:6].all(axis=0)
        lead_i, lead_ii, lead_iii, avr, avf, avl = (s[both] for s in samples[:6])
        # Einthoven and Goldberger hold to within the per-lead noise (a few adu).
        for derived, expected in (
            (lead_iii, lead_ii - lead_i),
            (2 * avr, -(lead_i + lead_ii)),
            (2 * avf, 2 * lead_ii - lead_i),
            (2 * avl, 2 * lead_i - lead_ii),
        ):
            error = np.abs(derived - expected)
            assert error.mean() < 8, rel
            assert error.max() < 60, rel


def test_lead_off_runs_of_the_invalid_value(corpus: SyntheticCorpus) -> None:
    with_runs = 0
    for rel in corpus.good:
        invalid = read_dat(corpus, rel) == -32768
        if not invalid.any():
            continue
        with_runs += 1
        leads = np.flatnonzero(invalid.any(axis=1))
        assert len(leads) == 1
        positions = np.flatnonzero(invalid[leads[0]])
        assert positions[-1] - positions[0] + 1 == len(positions), "one contiguous run"
        # wfdb keeps the value in digital samples and makes it NaN in physical ones.
        physical = wfdb.rdrecord(str(corpus.root / rel)).p_signal
        assert np.isnan(physical[positions, leads[0]]).all()
    assert with_runs >= 1


# --- tables --------------------------------------------------------------------------------


def test_csv_columns_exactly(corpus: SyntheticCorpus) -> None:
    with open(corpus.record_list_csv, newline="") as f:
        assert next(csv.reader(f)) == RECORD_LIST_COLUMNS
    with open(corpus.machine_measurements_csv, newline="") as f:
        assert next(csv.reader(f)) == MEASUREMENT_COLUMNS
    assert list(pd.read_csv(corpus.record_list_csv).columns) == RECORD_LIST_COLUMNS
    assert list(pd.read_csv(corpus.machine_measurements_csv).columns) == MEASUREMENT_COLUMNS


def test_record_list_rows(corpus: SyntheticCorpus) -> None:
    rows = csv_rows(corpus.record_list_csv)
    assert [row["path"] for row in rows if row["path"] in corpus.good] == list(corpus.good)
    assert {row["path"] for row in rows} == set(corpus.good) | set(corpus.broken)
    for row in rows:
        _, subject, study, _ = PATH_RE.match(row["path"]).groups()
        assert row["subject_id"] == subject
        assert row["study_id"] == study == row["file_name"]
        assert re.fullmatch(r"21[89]\d-\d\d-\d\d \d\d:\d\d:\d\d", row["ecg_time"]), row


def test_machine_measurements_rows(corpus: SyntheticCorpus) -> None:
    listed = {row["study_id"]: row for row in csv_rows(corpus.record_list_csv)}
    rows = csv_rows(corpus.machine_measurements_csv)
    by_study = {row["study_id"]: row for row in rows}
    assert len(by_study) == len(rows)
    missing = {rel.rsplit("/", 1)[1] for rel, kind in corpus.broken.items()
               if kind == "missing_metadata"}
    assert set(by_study) == set(listed) - missing
    for rel in corpus.good:
        row = by_study[rel.rsplit("/", 1)[1]]
        assert row["subject_id"] == listed[row["study_id"]]["subject_id"]
        assert row["ecg_time"] == listed[row["study_id"]]["ecg_time"]
        assert row["cart_id"].isdigit()
        assert row["report_0"]
        reports = [row[f"report_{i}"] for i in range(18)]
        filled = [r for r in reports if r]
        assert reports[: len(filled)] == filled, "statements come first, then empty columns"
        assert row["bandwidth"] in {"0.005-150 Hz", "0.05-150 Hz", "0.5-40 Hz"}
        assert row["filtering"] in {"60 Hz notch Baseline filter", "", "50 Hz notch"}
        values = {k: int(row[k]) for k in MEASUREMENT_COLUMNS[-9:]}
        assert 545 <= values["rr_interval"] <= 1200  # 50-110 bpm
        assert values["qrs_onset"] < values["qrs_end"]
        if values["t_end"] != 29999:
            assert values["qrs_end"] < values["t_end"] < values["rr_interval"] + 300
        if values["p_onset"] != 29999:
            assert values["p_onset"] < values["p_end"] < values["qrs_onset"]
        for axis in ("p_axis", "qrs_axis", "t_axis"):
            assert values[axis] == 29999 or -180 <= values[axis] <= 180


def test_statements_the_converter_must_escape(corpus: SyntheticCorpus) -> None:
    frame = pd.read_csv(corpus.machine_measurements_csv, dtype=str, keep_default_na=False)
    statements = set(frame[[f"report_{i}" for i in range(18)]].to_numpy().ravel()) - {""}
    assert any("\\" in s for s in statements)
    assert any("," in s for s in statements)
    assert any(len(s) > 64 for s in statements)
    assert {"Normal ECG", "Abnormal ECG", "Borderline ECG"} & statements
    # MIMIC's "missing" marker appears (AF records have no P wave to measure).
    assert (frame[MEASUREMENT_COLUMNS[-9:]] == "29999").to_numpy().any()


def test_csv_is_quoted_as_pandas_writes_it(corpus: SyntheticCorpus) -> None:
    for path in (corpus.record_list_csv, corpus.machine_measurements_csv):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        assert frame.to_csv(index=False) == path.read_text(encoding="utf-8")


# --- broken records ------------------------------------------------------------------------


def broken_path(corpus: SyntheticCorpus, kind: str) -> Path:
    (rel,) = [rel for rel, k in corpus.broken.items() if k == kind]
    return corpus.root / rel


def test_missing_dat(corpus: SyntheticCorpus) -> None:
    path = broken_path(corpus, "missing_dat")
    assert path.with_suffix(".hea").is_file()
    assert not path.with_suffix(".dat").exists()
    wfdb.rdheader(str(path))  # the header itself is fine
    with pytest.raises(FileNotFoundError):
        wfdb.rdrecord(str(path))


def test_truncated_dat(corpus: SyntheticCorpus) -> None:
    path = broken_path(corpus, "truncated_dat")
    header = wfdb.rdheader(str(path))
    size = path.with_suffix(".dat").stat().st_size
    assert size < header.sig_len * FRAME_BYTES
    assert size % FRAME_BYTES != 0, "ends inside a frame"
    with pytest.raises(Exception):  # noqa: B017 - wfdb's error type is not part of its API
        wfdb.rdrecord(str(path))


def test_corrupt_header(corpus: SyntheticCorpus) -> None:
    path = broken_path(corpus, "corrupt_header")
    assert path.with_suffix(".dat").is_file()
    with pytest.raises(Exception):  # noqa: B017 - wfdb raises its own HeaderSyntaxError
        wfdb.rdheader(str(path))


def test_checksum_mismatch(corpus: SyntheticCorpus) -> None:
    path = broken_path(corpus, "checksum_mismatch")
    record = wfdb.rdrecord(str(path), physical=False)
    computed = [wfdb_checksum(row) for row in record.d_signal.T]
    mismatched = [i for i, (a, b) in enumerate(zip(computed, record.checksum, strict=True))
                  if a != b]
    assert mismatched == [EXPECTED_LEADS.index("V2")]
    assert path.with_suffix(".dat").stat().st_size == N * FRAME_BYTES


def test_longer_dat(corpus: SyntheticCorpus) -> None:
    """One frame more than the header declares: the samples before it are intact."""
    path = broken_path(corpus, "longer_dat")
    assert path.with_suffix(".dat").stat().st_size == (N + 1) * FRAME_BYTES
    record = wfdb.rdrecord(str(path), physical=False)
    assert record.d_signal.shape == (N, 12)


def test_numerics_only(corpus: SyntheticCorpus) -> None:
    path = broken_path(corpus, "numerics_only")
    record = wfdb.rdrecord(str(path), physical=False)
    assert record.sig_name == ["HR", "SpO2"]
    assert record.units == ["bpm", "%"]
    assert abs(record.fs - 1 / 60) < 1e-9
    for row, checksum in zip(record.d_signal.T, record.checksum, strict=True):
        assert wfdb_checksum(row) == checksum


def test_missing_metadata_record_is_otherwise_sound(corpus: SyntheticCorpus) -> None:
    path = broken_path(corpus, "missing_metadata")
    record = wfdb.rdrecord(str(path), physical=False)
    assert record.sig_name == EXPECTED_LEADS
    for row, checksum in zip(record.d_signal.T, record.checksum, strict=True):
        assert wfdb_checksum(row) == checksum
    studies = {row["study_id"] for row in csv_rows(corpus.machine_measurements_csv)}
    assert path.name not in studies
    assert path.name in {row["study_id"] for row in csv_rows(corpus.record_list_csv)}


# --- options and determinism ---------------------------------------------------------------


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    first = generate_corpus(tmp_path / "a", 10, seed=7)
    second = generate_corpus(tmp_path / "b", 10, seed=7)
    assert first.good == second.good
    assert first.broken == second.broken
    a, b = snapshot(first.root), snapshot(second.root)
    assert len(a) == 2 * 10 + 2 * len(BROKEN_KINDS) - 1 + 2  # one .dat is missing; 2 CSVs
    assert a == b


def test_different_seed_different_corpus(tmp_path: Path) -> None:
    first = generate_corpus(tmp_path / "a", 4, seed=1, broken=False)
    second = generate_corpus(tmp_path / "b", 4, seed=2, broken=False)
    assert first.good != second.good


def test_without_broken_records(tmp_path: Path) -> None:
    corpus = generate_corpus(tmp_path / "clean", 5, broken=False)
    assert corpus.broken == {}
    assert [row["path"] for row in csv_rows(corpus.record_list_csv)] == list(corpus.good)
    assert len(csv_rows(corpus.machine_measurements_csv)) == 5


def test_single_record_carries_every_required_feature(tmp_path: Path) -> None:
    corpus = generate_corpus(tmp_path / "one", 1, broken=False)
    (rel,) = corpus.good
    record = wfdb.rdrecord(str(corpus.root / rel), physical=False)
    assert record.base_time is None  # pinned: no base date/time
    assert (record.d_signal == -32768).any()  # pinned: a lead-off run
    (row,) = csv_rows(corpus.machine_measurements_csv)
    reports = [row[f"report_{i}"] for i in range(18)]
    assert any("\\" in r for r in reports) and any("," in r for r in reports)
    assert any(len(r) > 64 for r in reports)
    assert row["p_onset"] == "29999"  # pinned: atrial fibrillation


def test_rejects_negative_count(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        generate_corpus(tmp_path, -1)
