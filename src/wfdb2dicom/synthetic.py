"""A small MIMIC-IV-ECG-shaped corpus of synthetic 12-lead ECGs, with deliberate defects.

MIMIC-IV-ECG is credentialed data, so the demo, the test suite and the throughput benchmark
cannot ship it. This module writes a stand-in with the same layout, header dialect, tables and
quirks (aVF before aVL, records without a base date, lead-off runs of WFDB's invalid value,
29999 for missing measurements, statements with backslashes, commas and more than 64
characters) plus one record of each defect a batch run must survive.

It is built for volume, because the throughput benchmark generates 15,000 records: a record
is one small matrix product of a few shared waveforms (beat trains, wander), noise comes from
one pool, and the fmt-16 bytes and header text are written directly (``wfdb.wrsamp`` alone
takes ~70 ms a record; this whole generator ~1 ms, about half of it the file writes).

Everything comes from one ``numpy.random.Generator`` seeded by ``seed``, in a fixed order, so
the same seed and numpy version give byte-identical files (numpy does not promise the same
streams across its versions). Floats are rounded to integers before the bytes are formed.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

FS = 500
"""Sampling frequency of every good record (Hz)."""
N_SAMPLES = 5000
"""Samples per signal of every good record (10 s)."""
GAIN = 200
"""adu per mV, as in MIMIC-IV-ECG."""
INVALID_SAMPLE = -32768
"""WFDB's "no sample" value in fmt 16."""
MISSING_MEASUREMENT = 29999
"""MIMIC's marker for a machine measurement the cart did not make."""

LEADS: tuple[str, ...] = (
    "I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6",
)
"""Lead order of the files: MIMIC's, with aVF before aVL."""

BROKEN_KINDS: tuple[str, ...] = (
    "missing_dat",
    "truncated_dat",
    "corrupt_header",
    "checksum_mismatch",
    "longer_dat",
    "numerics_only",
    "missing_metadata",
)
"""The defects written when ``broken=True``, one record each."""

RECORD_LIST_COLUMNS: tuple[str, ...] = ("subject_id", "study_id", "file_name", "ecg_time", "path")
N_REPORTS = 18
MACHINE_MEASUREMENTS_COLUMNS: tuple[str, ...] = (
    "subject_id", "study_id", "cart_id", "ecg_time",
    *(f"report_{i}" for i in range(N_REPORTS)),
    "bandwidth", "filtering", "rr_interval", "p_onset", "p_end", "qrs_onset", "qrs_end",
    "t_end", "p_axis", "qrs_axis", "t_axis",
)

# Statements the converter must treat with care: a backslash is DICOM's value separator, a
# comma needs CSV quoting, and more than 64 characters overflows an LO element.
STATEMENT_BACKSLASH = "Lateral ST-T changes \\ consider ischemia"
STATEMENT_COMMA = "Ventricular premature complexes, unifocal"
STATEMENT_LONG = (
    "Inferior/lateral ST-T changes may be due to myocardial ischemia or digitalis effect"
)
_EXTRA_STATEMENTS = (
    "Nonspecific T wave abnormalities",
    "Low QRS voltages in limb leads",
    "Possible anterior infarct - age undetermined",
    "Poor R wave progression - probable normal variant",
    "Left ventricular hypertrophy",
    "Incomplete right bundle branch block",
    "Early repolarization",
    STATEMENT_BACKSLASH,
    STATEMENT_COMMA,
    STATEMENT_LONG,
)
_DATA_QUALITY = "--- Warning: Data quality may affect interpretation ---"
_CART_IDS = (6848, 6849, 6851, 6852, 6853, 8426, 8427, 8429, 8430)
_BANDWIDTHS = (("0.005-150 Hz", 0.85), ("0.05-150 Hz", 0.10), ("0.5-40 Hz", 0.05))
_FILTERINGS = (("60 Hz notch Baseline filter", 0.85), ("", 0.08), ("50 Hz notch", 0.07))

# Precordial amplitude profiles V1..V6 (mV): R grows and S shrinks across the chest.
_V_R = np.array([0.25, 0.5, 0.9, 1.3, 1.4, 1.1])
_V_S = np.array([-0.9, -1.4, -1.0, -0.6, -0.35, -0.15])
_V_Q = np.array([0.0, 0.0, 0.0, -0.04, -0.08, -0.08])
_V_P = np.array([0.06, 0.08, 0.1, 0.1, 0.1, 0.08])
_V_T = np.array([0.0, 0.5, 0.55, 0.5, 0.4, 0.3])
# How strongly AF's fibrillatory waves show in I, II, V1..V6 (largest in V1, as in life).
_F_WAVE_WEIGHTS = np.array([0.3, 0.5, 1.0, 0.6, 0.3, 0.2, 0.1, 0.1])

_MS_PER_SAMPLE = 1000.0 / FS
_TIME_S = np.arange(N_SAMPLES) / FS
_DRIFT = (_TIME_S / _TIME_S[-1] - 0.5).astype(np.float32)


class _Draws:
    """Scalar random draws served from batches of one seeded Generator.

    A ``Generator`` call costs ~3 us, and a record draws some fifty scalars: unbatched, that
    was a fifth of the generation time. The same calls in the same order still give the same
    values. Vector draws go to ``rng`` directly.
    """

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self._batch: list[float] = []

    def random(self) -> float:
        """Uniform in [0, 1)."""
        if not self._batch:
            self._batch = self.rng.random(256).tolist()[::-1]
        return self._batch.pop()

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * self.random()

    def integers(self, low: int, high: int) -> int:
        """Uniform integer in [low, high)."""
        return min(low + int((high - low) * self.random()), high - 1)


@dataclass(frozen=True)
class SyntheticCorpus:
    """Where a generated corpus lives and what is in it.

    ``good`` and the keys of ``broken`` are record paths relative to ``root`` without
    extension, as in the ``path`` column of ``record_list.csv``.
    """

    root: Path
    record_list_csv: Path
    machine_measurements_csv: Path
    good: tuple[str, ...]
    broken: dict[str, str]


@dataclass(frozen=True)
class _Study:
    subject_id: int
    study_id: int
    ecg_time: dt.datetime
    has_base_time: bool
    kind: str | None  # None for a good record, else one of BROKEN_KINDS

    @property
    def path(self) -> str:
        s = str(self.subject_id)
        return f"files/p{s[:4]}/p{s}/s{self.study_id}/{self.study_id}"


@dataclass(frozen=True)
class _Ecg:
    """What one synthetic ECG is made of; the measurements row is read off the same values."""

    heart_rate: float
    af: bool
    p_onset: float  # ms from the start of the beat template
    p_end: float
    qrs_onset: float
    qrs_end: float
    t_end: float
    p_axis: float  # degrees
    qrs_axis: float
    t_axis: float
    lead_off: bool
    statements: tuple[str, ...]


def generate_corpus(
    root: Path, n_records: int = 24, *, seed: int = 0, broken: bool = True
) -> SyntheticCorpus:
    """Write ``n_records`` good records (plus one of each broken kind) and both tables.

    ``root`` is created if needed; files already there are overwritten, never deleted.
    """
    if n_records < 0:
        raise ValueError(f"n_records must be >= 0, not {n_records}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    root_str = str(root)
    draws = _Draws(np.random.default_rng(seed))
    kinds = BROKEN_KINDS if broken else ()
    studies = _plan_studies(draws, n_records, kinds)
    pool_size = 12 * N_SAMPLES + min(1 << 20, 12 * N_SAMPLES * len(studies))
    noise_pool = draws.rng.standard_normal(pool_size, dtype=np.float32)
    # The noise level (0.7-2 adu rms) varies slowly along the pool, so records, which take
    # their noise from random offsets, differ in noise for the price of a single addition.
    noise_pool *= (1.35 + 0.65 * np.sin(np.linspace(0.0, 6 * math.pi, pool_size))).astype(
        np.float32
    )
    synthesiser = _Synthesiser(noise_pool)

    # Features every corpus must show however small it is, pinned to particular good records.
    forced: dict[int, set[str]] = {}
    if n_records:
        for i, feature in enumerate(
            ("backslash", "comma", "long", "af", "no_base_time", "lead_off")
        ):
            forced.setdefault(i % n_records, set()).add(feature)

    record_rows: list[list[object]] = []
    measurement_rows: list[list[object]] = []
    good: list[str] = []
    broken_paths: dict[str, str] = {}
    good_index = 0
    for study in studies:
        features: set[str] = set()
        if study.kind is None:
            features = forced.get(good_index, set())
            good_index += 1
            if "no_base_time" in features:
                study = _Study(study.subject_id, study.study_id, study.ecg_time, False, None)
        rel = study.path
        base = os.path.join(root_str, rel)
        _make_study_dir(os.path.dirname(base))
        ecg = _draw_ecg(draws, features, allow_lead_off=study.kind is None)
        if study.kind == "numerics_only":
            _write_numerics(draws, study, base)
        else:
            _write_ecg_record(draws, synthesiser, study, ecg, base)
        record_rows.append(
            [study.subject_id, study.study_id, study.study_id, _iso(study.ecg_time), rel]
        )
        if study.kind != "missing_metadata":
            measurement_rows.append(_measurement_row(draws, study, ecg))
        if study.kind is None:
            good.append(rel)
        else:
            broken_paths[rel] = study.kind

    record_list_csv = root / "record_list.csv"
    machine_measurements_csv = root / "machine_measurements.csv"
    _write_csv(record_list_csv, RECORD_LIST_COLUMNS, record_rows)
    _write_csv(machine_measurements_csv, MACHINE_MEASUREMENTS_COLUMNS, measurement_rows)
    return SyntheticCorpus(
        root, record_list_csv, machine_measurements_csv, tuple(good), broken_paths
    )


def _make_study_dir(path: str) -> None:
    """``os.makedirs(path, exist_ok=True)``, but one system call in the usual case."""
    try:
        os.mkdir(path)
    except FileNotFoundError:
        os.makedirs(path, exist_ok=True)
    except FileExistsError:
        pass


def _plan_studies(draws: _Draws, n_good: int, kinds: tuple[str, ...]) -> list[_Study]:
    """Subjects with 1-4 studies each, dates in the 2180s; broken records spread among them."""
    n_total = n_good + len(kinds)
    study_ids = draws.rng.choice(10_000_000, size=n_total, replace=False) + 40_000_000
    positions = sorted(draws.rng.choice(n_total, size=len(kinds), replace=False).tolist())
    broken_at = dict(zip(positions, kinds, strict=True))
    studies: list[_Study] = []
    subject_id = 10_000_000
    epoch = dt.datetime(2180, 1, 1)
    while len(studies) < n_total:
        subject_id += draws.integers(1, 1500)
        when = epoch + dt.timedelta(
            days=draws.integers(0, 8 * 365), seconds=draws.integers(0, 86_400)
        )
        for _ in range(min(draws.integers(1, 5), n_total - len(studies))):
            i = len(studies)
            has_base_time = bool(draws.random() >= 1 / 6)
            studies.append(
                _Study(subject_id, int(study_ids[i]), when, has_base_time, broken_at.get(i))
            )
            when += dt.timedelta(
                days=draws.integers(0, 200), seconds=draws.integers(600, 86_400)
            )
    return studies


def _draw_ecg(draws: _Draws, features: set[str], allow_lead_off: bool) -> _Ecg:
    """Heart rate, intervals, axes and the statements a cart would print for them."""
    af = "af" in features or draws.random() < 0.1
    heart_rate = draws.uniform(50.0, 110.0)
    rr_ms = 60_000.0 / heart_rate
    p_onset = draws.uniform(30.0, 60.0)
    p_end = p_onset + draws.uniform(80.0, 110.0)
    pr = draws.uniform(120.0, 215.0)
    qrs_onset = p_onset + pr
    qrs_end = qrs_onset + draws.uniform(80.0, 108.0)
    qtc = draws.uniform(380.0, 475.0)
    t_end = qrs_onset + qtc * math.sqrt(rr_ms / 1000.0)
    u = draws.random()
    if u < 0.12:
        qrs_axis = draws.uniform(-75.0, -31.0)
    elif u < 0.16:
        qrs_axis = draws.uniform(95.0, 150.0)
    else:
        qrs_axis = draws.uniform(-20.0, 85.0)
    p_axis = draws.uniform(20.0, 75.0)
    t_axis = min(max(qrs_axis, -10.0), 80.0) + draws.uniform(-20.0, 20.0)
    lead_off = allow_lead_off and ("lead_off" in features or draws.random() < 0.1)

    statements: list[str] = []
    if af:
        statements.append(
            "Atrial fibrillation with rapid ventricular response"
            if heart_rate > 100
            else "Atrial fibrillation"
        )
    elif heart_rate < 60:
        statements.append("Sinus bradycardia")
    elif heart_rate > 100:
        statements.append("Sinus tachycardia")
    else:
        statements.append("Sinus rhythm")
    if not af and pr > 200:
        statements.append("1st degree A-V block")
    if qrs_axis < -30:
        statements.append("Left axis deviation")
    elif qrs_axis > 90:
        statements.append("Right axis deviation")
    if qtc > 460:
        statements.append("Prolonged QT interval")
    for name, statement in (
        ("backslash", STATEMENT_BACKSLASH), ("comma", STATEMENT_COMMA), ("long", STATEMENT_LONG)
    ):
        if name in features:
            statements.append(statement)
    for statement in _EXTRA_STATEMENTS:
        if draws.random() < 0.04 and statement not in statements:
            statements.append(statement)
    if lead_off:
        statements.append(_DATA_QUALITY)
    if len(statements) == 1 and statements[0] == "Sinus rhythm":
        statements.append("Normal ECG")
    else:
        statements.append("Abnormal ECG" if len(statements) > 2 else "Borderline ECG")
    return _Ecg(
        heart_rate, af, p_onset, p_end, qrs_onset, qrs_end, t_end,
        p_axis, qrs_axis, t_axis, lead_off, tuple(statements[:N_REPORTS]),
    )


class _Synthesiser:
    """Draws 12-lead signals into buffers reused from record to record.

    Every lead is a weighted sum of the same few waveforms (trains of P, Q, R, S and T
    gaussians, respiratory wander, drift, AF's f-waves), so a record is one small matrix
    product. The weights of I, II and V1-V6 follow a dipole model (each wave has a frontal
    axis; the precordials follow R-wave progression); III, aVR, aVF and aVL are exact linear
    combinations of I and II, so Einthoven's and Goldberger's relations hold to within the
    per-lead noise, as on a real cart.

    The buffers are the point of the class: a fresh 200 kB array comes from the kernel as
    untouched pages, and faulting them in cost more than all the arithmetic (a matrix product
    into new memory took five times as long as into reused memory).
    """

    def __init__(self, noise_pool: np.ndarray) -> None:
        self._noise_pool = noise_pool
        self._trains = np.zeros((5, N_SAMPLES + 2 * _MAX_TEMPLATE), dtype=np.float32)
        self._basis = np.zeros((_N_BASIS, N_SAMPLES), dtype=np.float32)
        self._basis[7] = _DRIFT
        self._signals = np.empty((12, N_SAMPLES), dtype=np.float32)
        self.samples = np.empty((12, N_SAMPLES), dtype="<i2")
        """The last record's samples, (lead, time); overwritten by the next call."""
        self._frames = np.empty((N_SAMPLES, 12), dtype="<i2")

    def synthesise(self, draws: _Draws, ecg: _Ecg) -> np.ndarray:
        """Fill and return :attr:`samples` (12 x 5000, file lead order) for ``ecg``."""
        # Beat template: 5 gaussians on a window starting at 0 ms, the measurements' origin.
        n_template = int((ecg.t_end + 80.0) / _MS_PER_SAMPLE)
        t_ms = np.arange(n_template) * _MS_PER_SAMPLE
        qrs = ecg.qrs_end - ecg.qrs_onset
        t_wave = ecg.t_end - ecg.qrs_end
        centres = np.array([
            (ecg.p_onset + ecg.p_end) / 2,
            ecg.qrs_onset + 0.12 * qrs,
            ecg.qrs_onset + 0.40 * qrs,
            ecg.qrs_onset + 0.68 * qrs,
            ecg.qrs_end + 0.62 * t_wave,
        ])
        widths = np.array(
            [(ecg.p_end - ecg.p_onset) / 6, qrs / 16, qrs / 11, qrs / 14, 0.16 * t_wave]
        )
        shapes = np.exp(-0.5 * ((t_ms[None, :] - centres[:, None]) / widths[:, None]) ** 2)
        # Far tails would be float32 subnormals, which make every later operation on them
        # (beat placement, the matrix product) an order of magnitude slower; they are far
        # below one adu, so zero them.
        shapes[shapes < 1e-9] = 0.0
        shapes = shapes.astype(np.float32)

        # R peaks: regular with a little jitter in sinus rhythm, irregularly irregular in AF.
        rr_s = 60.0 / ecg.heart_rate
        n_beats = int(N_SAMPLES / FS / (0.6 * rr_s)) + 4
        factors = (
            draws.rng.uniform(0.65, 1.35, n_beats) if ecg.af
            else 1.0 + 0.025 * draws.rng.standard_normal(n_beats)
        )
        beat_s = -draws.uniform(0.0, rr_s) + np.concatenate(([0.0], np.cumsum(rr_s * factors)))
        r_offset = int(round(centres[2] / _MS_PER_SAMPLE))
        starts = np.rint(beat_s * FS).astype(np.int64) - r_offset + n_template

        # Trains are padded by a template on each side, so edge beats need no clipping.
        trains = self._trains[:, : N_SAMPLES + 2 * n_template]
        trains.fill(0.0)
        for start in starts[(starts >= 0) & (starts <= N_SAMPLES + n_template)].tolist():
            trains[:, start : start + n_template] += shapes
        basis = self._basis
        basis[:5] = trains[:, n_template : n_template + N_SAMPLES]
        resp, fib = _oscillation_banks()
        basis[5:7] = resp[draws.integers(0, len(resp))]
        basis[8:10] = fib[draws.integers(0, len(fib))] if ecg.af else 0.0

        # Weights (mV) of each basis waveform in I, II, V1..V6.
        def frontal(axis: float, magnitude: float) -> np.ndarray:
            rad = math.radians(axis)
            return magnitude * np.array([math.cos(rad), math.cos(rad - math.pi / 3)])

        r_limb = frontal(ecg.qrs_axis, draws.uniform(0.8, 1.8))
        r_pos = np.maximum(r_limb, 0.0)
        weights = np.zeros((8, _N_BASIS))
        if not ecg.af:
            weights[:2, 0] = frontal(ecg.p_axis, draws.uniform(0.1, 0.25))
            weights[2:, 0] = _V_P * draws.uniform(0.7, 1.3)
        weights[:2, 1] = -draws.uniform(0.03, 0.12) * r_pos
        weights[:2, 2] = r_limb
        weights[:2, 3] = -draws.uniform(0.1, 0.3) * r_pos
        weights[:2, 4] = frontal(ecg.t_axis, draws.uniform(0.2, 0.5))
        weights[2:, 1] = _V_Q * draws.uniform(0.5, 1.5)
        weights[2:, 2] = _V_R * draws.uniform(0.6, 1.4)
        weights[2:, 3] = _V_S * draws.uniform(0.6, 1.4)
        weights[2:, 4] = _V_T * draws.uniform(0.6, 1.4)
        weights[2, 4] = draws.uniform(-0.15, 0.15)
        weights[:, 5:8] = draws.rng.normal(0.0, 0.04, (8, 3))  # wander: sin, cos, drift
        if ecg.af:
            weights[:, 8:10] = _F_WAVE_WEIGHTS[:, None] * draws.rng.uniform(0.02, 0.06, 2)
        lead_weights = (_LIMB_DERIVATION @ weights * GAIN).astype(np.float32)

        signals = np.matmul(lead_weights, basis, out=self._signals)
        offset = draws.integers(0, self._noise_pool.size - 12 * N_SAMPLES + 1)
        noise = self._noise_pool[offset : offset + 12 * N_SAMPLES].reshape(12, N_SAMPLES)
        signals += noise
        np.rint(signals, out=signals)
        # A few mV is some 1000 adu at most: far inside int16, so the cast needs no clipping.
        samples = self.samples
        np.copyto(samples, signals, casting="unsafe")
        if ecg.lead_off:
            lead = draws.integers(0, 12)
            start = draws.integers(1, N_SAMPLES - 600)
            samples[lead, start : start + draws.integers(50, 600)] = INVALID_SAMPLE
        return samples

    def frames(self) -> np.ndarray:
        """:attr:`samples` frame-interleaved (time, lead): the bytes of a fmt-16 ``.dat``."""
        np.copyto(self._frames, self.samples.T)
        return self._frames


_MAX_TEMPLATE = 512  # samples; the longest template (t_end + 80 ms) is some 440
_N_BASIS = 10  # P, Q, R, S, T trains; wander sin, cos, drift; f-wave sin, cos
# Rows I, II, III, aVR, aVF, aVL, V1..V6 from columns I, II, V1..V6.
_LIMB_DERIVATION = np.zeros((12, 8))
_LIMB_DERIVATION[:6, :2] = [[1, 0], [0, 1], [-1, 1], [-0.5, -0.5], [-0.5, 1], [1, -0.5]]
_LIMB_DERIVATION[6:, 2:] = np.eye(6)


@cache
def _oscillation_banks() -> tuple[np.ndarray, np.ndarray]:
    """Sine/cosine pairs at respiratory (0.12-0.35 Hz) and f-wave (5-7 Hz) frequencies.

    Computed once: a weighted sine plus cosine gives any phase and amplitude, so records
    need no trigonometry of their own (``np.sin`` over 5000 samples costs more than the rest
    of a record's arithmetic).
    """

    def bank(low: float, high: float, count: int) -> np.ndarray:
        angle = 2 * math.pi * np.linspace(low, high, count)[:, None] * _TIME_S[None, :]
        return np.stack([np.sin(angle), np.cos(angle)], axis=1).astype(np.float32)

    return bank(0.12, 0.35, 24), bank(5.0, 7.0, 9)


def wfdb_checksums(samples: np.ndarray) -> list[int]:
    """WFDB checksum of each row: the sum of its samples mod 2**16, as a signed 16-bit value."""
    sums = (samples.sum(axis=1, dtype=np.int64) % 65536).tolist()
    return [s - 65536 if s > 32767 else s for s in sums]


def _header_text(
    study: _Study,
    samples: np.ndarray,
    fs: int | str,
    units: tuple[tuple[str, str, str], ...],
    checksums: list[int],
) -> str:
    """A header in MIMIC's dialect; ``units`` holds (gain, units, description) per signal."""
    name = str(study.study_id)
    record_line = f"{name} {samples.shape[0]} {fs} {samples.shape[1]}"
    if study.has_base_time:
        record_line += f" {study.ecg_time:%H:%M:%S} {study.ecg_time:%d/%m/%Y}"
    lines = [record_line]
    for (gain, unit, description), first, checksum in zip(
        units, samples[:, 0].tolist(), checksums, strict=True
    ):
        lines.append(f"{name}.dat 16 {gain}(0)/{unit} 16 0 {first} {checksum} 0 {description}")
    return "\n".join(lines) + "\n"


_ECG_UNITS = tuple(("200.0", "mV", lead) for lead in LEADS)


def _write_ecg_record(
    draws: _Draws, synthesiser: _Synthesiser, study: _Study, ecg: _Ecg, base: str
) -> None:
    """Write a 12-lead record, broken as ``study.kind`` says (``None``: intact)."""
    samples = synthesiser.synthesise(draws, ecg)
    header = _header_text(study, samples, FS, _ECG_UNITS, wfdb_checksums(samples))
    if study.kind == "corrupt_header":
        first, rest = header.split("\n", 1)
        fields = first.split()
        fields[1] = "twelve"
        header = " ".join(fields) + "\n" + rest
    header_bytes = header.encode("ascii")
    if study.kind == "checksum_mismatch":
        samples[7, 1000:1100] += 37  # V2, after the checksum went into the header
    data = memoryview(synthesiser.frames()).cast("B")
    if study.kind == "truncated_dat":
        data = data[: 12 * 2 * (N_SAMPLES // 2) + 5]  # half the frames, then a partial one
    if study.kind == "longer_dat":  # a frame more than the header declares
        data = memoryview(bytes(data) + bytes(data[: 12 * 2])).cast("B")
    with open(base + ".hea", "wb") as f:
        f.write(header_bytes)
    if study.kind != "missing_dat":
        with open(base + ".dat", "wb") as f:
            f.write(data)


def _write_numerics(draws: _Draws, study: _Study, base: str) -> None:
    """A valid bedside-monitor numerics record (HR in bpm, SpO2 in %, one value a minute,
    as MIMIC's ``...n`` records): no DICOM waveform IOD holds either signal."""
    fs, n = "0.0166666666667", 60
    t = np.arange(n)
    phase = 2 * math.pi * draws.uniform(1.0, 1.6) * t / n
    hr = 72 + 8 * np.sin(phase)  # bpm
    spo2 = 97 + 1.5 * np.sin(phase - 0.6)  # %
    samples = np.rint(np.stack([hr * 10, spo2 * 10])).astype(np.int16)
    units = (("10.0", "bpm", "HR"), ("10.0", "%", "SpO2"))
    header = _header_text(study, samples, fs, units, wfdb_checksums(samples))
    with open(base + ".hea", "wb") as f:
        f.write(header.encode("ascii"))
    with open(base + ".dat", "wb") as f:
        f.write(samples.T.astype("<i2", order="C").tobytes())


def _pick(draws: _Draws, weighted: tuple[tuple[str, float], ...]) -> str:
    u = draws.random()
    for value, weight in weighted:
        if u < weight:
            return value
        u -= weight
    return weighted[-1][0]


def _measurement_row(draws: _Draws, study: _Study, ecg: _Ecg) -> list[object]:
    """The cart's measurements: read off the template, 29999 where a cart would give none."""
    p_missing = ecg.af
    t_missing = draws.random() < 0.05
    p_axis_missing = p_missing or draws.random() < 0.03
    reports = list(ecg.statements) + [""] * (N_REPORTS - len(ecg.statements))
    return [
        study.subject_id,
        study.study_id,
        _CART_IDS[draws.integers(0, len(_CART_IDS))],
        _iso(study.ecg_time),
        *reports,
        _pick(draws, _BANDWIDTHS),
        _pick(draws, _FILTERINGS),
        round(60_000 / ecg.heart_rate),
        MISSING_MEASUREMENT if p_missing else round(ecg.p_onset),
        MISSING_MEASUREMENT if p_missing else round(ecg.p_end),
        round(ecg.qrs_onset),
        round(ecg.qrs_end),
        MISSING_MEASUREMENT if t_missing else round(ecg.t_end),
        MISSING_MEASUREMENT if p_axis_missing else round(ecg.p_axis),
        round(ecg.qrs_axis),
        MISSING_MEASUREMENT if t_missing else round(ecg.t_axis),
    ]


def _iso(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%S")


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[list[object]]) -> None:
    """Write as ``pandas.DataFrame.to_csv(index=False)`` would: minimal quoting, ``\\n`` ends."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)


# --- Other sources' shapes: PTB-XL and the PhysioNet/CinC Challenge 2020-2021 -----------

PTBXL_COLUMNS: tuple[str, ...] = (
    "ecg_id", "patient_id", "age", "sex", "height", "weight", "nurse", "site", "device",
    "recording_date", "report", "scp_codes", "heart_axis", "infarction_stadium1",
    "infarction_stadium2", "validated_by", "second_opinion", "initial_autogenerated_report",
    "validated_by_human", "baseline_drift", "static_noise", "burst_noise",
    "electrodes_problems", "extra_beats", "pacemaker", "strat_fold", "filename_lr",
    "filename_hr",
)
"""ptbxl_database.csv's columns, in its order."""
PTBXL_LEADS: tuple[str, ...] = (
    "I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6",
)
"""PTB-XL's lead names and order (textbook order, augmented leads in capitals)."""
PTBXL_GAIN = 1000
PTBXL_OLDEST = 300
"""PTB-XL's age for a patient over 89 (its de-identification)."""
_PTBXL_DEVICES = ("CS-12   E", "AT-6 C 5.5", "AT-60    3", "CS100    3", "AT-6     6")
_PTBXL_REPORTS = (
    ("sinusrhythmus periphere niederspannung", "{'NORM': 100.0, 'LVOFF': 0.0, 'SR': 0.0}"),
    ("sinus rhythm. normal ecg.", "{'NORM': 100.0, 'SR': 0.0}"),
    ("sinusrhythmus linkstyp qrs(t) abnormal    inferiorer infarkt wahrscheinlich alt",
     "{'IMI': 80.0, 'ABQRS': 0.0, 'SR': 0.0}"),
    ("sinusrytm vänster elaxel, left anterior hemiblock",
     "{'LAFB': 100.0, 'SR': 0.0}"),
    ("vorhofflimmern. unspezifische st-senkung", "{'NDT': 50.0, 'AFIB': 0.0}"),
)
_PTBXL_MIMIC_ORDER = [0, 1, 2, 3, 5, 4, 6, 7, 8, 9, 10, 11]
"""Rows of a synthesised record (MIMIC's order, aVF before aVL) in PTB-XL's order."""


@dataclass(frozen=True)
class SourceCorpus:
    """A generated corpus of another source: its root, its table (None when the metadata is
    in the headers), and its records (paths relative to ``root``, without extension)."""

    root: Path
    table_csv: Path | None
    records: tuple[str, ...]


def generate_ptbxl_corpus(root: Path, n_records: int = 6, *, seed: int = 0) -> SourceCorpus:
    """A PTB-XL-shaped corpus: ``records500/00000/NNNNN_hr`` (500 Hz) and
    ``records100/00000/NNNNN_lr`` (100 Hz, every 5th sample) per ECG, gain 1000/mV, no date
    in the headers, and ``ptbxl_database.csv`` with PTB-XL's columns and quirks (float-styled
    patient_id, 300 for an age over 89, heights and weights mostly empty, devices with runs
    of spaces, scp_codes dict literals, quoted reports with commas).

    ``records`` holds both resolutions, the 500 Hz record first."""
    root = Path(root)
    draws = _Draws(np.random.default_rng(seed))
    synthesiser = _Synthesiser(draws.rng.standard_normal(12 * N_SAMPLES * 2, dtype=np.float32))
    rows, records = [], []
    when = dt.datetime(1984, 11, 9, 9, 17, 34)
    for index in range(n_records):
        ecg_id = index + 1
        ecg = _draw_ecg(draws, {"af"} if index == 4 else set(), allow_lead_off=False)
        high = np.clip(synthesiser.synthesise(draws, ecg).astype(np.int32) * 5, -32767, 32767)
        high = high[_PTBXL_MIMIC_ORDER].astype(np.int16)
        names = {}
        for folder, suffix, fs, samples in (("records500", "hr", FS, high),
                                            ("records100", "lr", FS // 5, high[:, ::5])):
            rel = f"{folder}/{ecg_id // 1000 * 1000:05d}/{ecg_id:05d}_{suffix}"
            _write_plain_record(root / rel, samples, fs, PTBXL_LEADS, PTBXL_GAIN, "", ())
            names[suffix] = rel
            records.append(rel)
        age = PTBXL_OLDEST if index == 2 else draws.integers(18, 89)
        report, scp_codes = _PTBXL_REPORTS[index % len(_PTBXL_REPORTS)]
        rows.append([
            ecg_id, f"{15709 + 37 * index}.0", f"{age}.0", index % 2,
            "" if index % 3 else f"{draws.integers(150, 195)}.0",
            "" if index % 2 else f"{draws.integers(50, 110)}.0",
            "2.0", "0.0", _PTBXL_DEVICES[index % len(_PTBXL_DEVICES)], _iso(when), report,
            scp_codes, "", "", "", "", "False", "True" if index % 2 else "False", "False", "",
            "", "", "", "", "", 1 + index % 10, names["lr"], names["hr"],
        ])
        when += dt.timedelta(days=draws.integers(1, 400), seconds=draws.integers(0, 86_400))
    table = root / "ptbxl_database.csv"
    _write_csv(table, PTBXL_COLUMNS, rows)
    return SourceCorpus(root, table, tuple(records))


CHALLENGE_LEADS: tuple[str, ...] = (
    "I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6",
)
CHALLENGE_COMMENTS: tuple[tuple[str, ...], ...] = (
    ("Age: 74", "Sex: Male", "Dx: 59118001,164889003", "Rx: Unknown", "Hx: Unknown",
     "Sx: Unknown"),
    ("Age: 92", "Sex: Female", "Dx: 426783006", "Rx: Unknown", "Hx: Hypertension",
     "Sx: Chest pain"),
    ("Age: NaN", "Sex: Unknown", "Dx: 164861001,270492004", "Rx: Unknown", "Hx: Unknown",
     "Sx: Unknown"),
)
"""Header comments as the Challenge writes them: SNOMED CT Dx (164861001 is not among the
scored diagnoses), ``Unknown`` for what is not known, ``NaN`` for an unknown age."""


def generate_challenge_corpus(root: Path, n_records: int = 3, *,
                              seed: int = 0) -> SourceCorpus:
    """A PhysioNet/CinC Challenge 2020-2021-shaped corpus (Georgia's naming: ``E00001``):
    12 leads at 500 Hz, gain 1000/mV, the metadata in the headers' comments (cycling through
    :data:`CHALLENGE_COMMENTS`). The record lines end as the Challenge's do, with a date in
    no WFDB form (``05-Feb-2020 11:39:16``), which is no acquisition time: converting needs
    ``--acquisition-datetime``."""
    root = Path(root)
    draws = _Draws(np.random.default_rng(seed))
    synthesiser = _Synthesiser(draws.rng.standard_normal(12 * N_SAMPLES * 2, dtype=np.float32))
    records = []
    when = dt.datetime(2020, 5, 5, 14, 50, 55)
    for index in range(n_records):
        ecg = _draw_ecg(draws, set(), allow_lead_off=False)
        samples = np.clip(synthesiser.synthesise(draws, ecg).astype(np.int32) * 5, -32767,
                          32767)[_PTBXL_MIMIC_ORDER].astype(np.int16)
        rel = f"E{index + 1:05d}"
        _write_plain_record(root / rel, samples, FS, CHALLENGE_LEADS, PTBXL_GAIN,
                            f" {when.day:02d}-{_MONTHS[when.month - 1]}-{when.year} "
                            f"{when:%H:%M:%S}",
                            CHALLENGE_COMMENTS[index % len(CHALLENGE_COMMENTS)])
        records.append(rel)
        when += dt.timedelta(days=draws.integers(1, 60), seconds=draws.integers(0, 86_400))
    return SourceCorpus(root, None, tuple(records))


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _write_plain_record(base: Path, samples: np.ndarray, fs: int, leads: tuple[str, ...],
                        gain: int, time_text: str, comments: tuple[str, ...]) -> None:
    """A fmt-16 record (``samples``: leads x time) with a header in PTB-XL's dialect."""
    base.parent.mkdir(parents=True, exist_ok=True)
    name = base.name
    lines = [f"{name} {samples.shape[0]} {fs} {samples.shape[1]}{time_text}"]
    for lead, first, checksum in zip(leads, samples[:, 0].tolist(), wfdb_checksums(samples),
                                     strict=True):
        lines.append(f"{name}.dat 16 {gain}.0(0)/mV 16 0 {first} {checksum} 0 {lead}")
    lines += [f"#{comment}" for comment in comments]
    base.with_suffix(".hea").write_text("\n".join(lines) + "\n", encoding="ascii")
    base.with_suffix(".dat").write_bytes(np.ascontiguousarray(samples.T, "<i2").tobytes())
