"""The durable record of what a run has done: SQLite (standard library), one file per output.

Why a ledger and not the output CSV: rewriting a CSV at every checkpoint costs the whole run
each time (quadratic), and a kill mid-write loses it. The ledger is written with one
``executemany`` and one commit per checkpoint, so a checkpoint costs what it saves; SQLite's
commit is atomic, so a kill at any moment leaves the last checkpoint intact.

What it holds:

* ``results``: one row per output file (the normalised record path), with the study_id that
  owns it, whether it converted, and the error. Resume trusts ``ok`` rows whose file exists.
* ``log``: the text of every chunk appended to the error log, and in ``meta`` the log's size
  at the last commit, so the error log can be brought back to exactly what was committed
  (see :meth:`wfdb2dicom.batch.report.ErrorLog.reconcile`).
* ``meta``: also the run ``state`` (``running`` until a run ends normally), which tells the
  next run whether a kill may have left temporary files behind.

The connection takes SQLite's exclusive lock for the whole run, so two runs writing the same
output refuse to overlap instead of corrupting each other's results.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from . import BatchError

SCHEMA_VERSION = "1"
LEDGER_SUFFIX = ".ledger.sqlite"

Entry = tuple[str, str, int, "str | None"]
"""``(record_path, study_id, ok, error)``: one ``results`` row."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    path TEXT PRIMARY KEY,
    study_id TEXT NOT NULL,
    ok INTEGER NOT NULL,
    error TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log (
    seq INTEGER PRIMARY KEY,
    log_path TEXT NOT NULL,
    text TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def ledger_path(output_csv: str | os.PathLike[str]) -> Path:
    """``{output_csv}.ledger.sqlite``: next to the output, found again by the same command."""
    return Path(f"{os.fspath(output_csv)}{LEDGER_SUFFIX}")


def open_locked(path: str | os.PathLike[str], schema: str, version: str,
                same: str) -> tuple[sqlite3.Connection, bool]:
    """A SQLite file with ``schema``, locked for this process until closed; whether it
    existed. ``same`` says what a second run shares with the one that holds the lock.

    Autocommit mode (each write is its own ``BEGIN``/``COMMIT``), WAL with ``synchronous =
    NORMAL`` (a commit survives a kill; a power cut may lose the last one, never corrupt),
    and SQLite's exclusive lock, taken now, so two runs refuse to overlap.
    """
    path = Path(path)
    existed = path.exists()
    try:
        db = sqlite3.connect(path, timeout=0, isolation_level=None)
    except sqlite3.Error as exc:
        raise BatchError(f"cannot open ledger {path}: {exc}") from None
    try:
        db.execute("PRAGMA locking_mode=EXCLUSIVE")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("BEGIN IMMEDIATE")  # takes the lock now, and keeps it until close
        db.executescript(schema)  # executescript commits first; the lock stays (EXCLUSIVE)
        db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (version,))
        found = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()[0]
    except sqlite3.OperationalError as exc:
        db.close()
        if "locked" in str(exc) or "busy" in str(exc):
            raise BatchError(
                f"another run is using {path} ({same}); let it finish or stop it"
            ) from None
        raise BatchError(f"cannot use ledger {path}: {exc}") from None
    except sqlite3.DatabaseError as exc:
        db.close()
        raise BatchError(
            f"ledger {path} is damaged ({exc}); delete it to start the run over"
        ) from None
    if found != version:
        db.close()
        raise BatchError(f"ledger {path} has schema {found}, this version writes "
                         f"{version}; delete it to start the run over")
    return db, existed


def _commit(db: sqlite3.Connection, path: Path, write: Callable[[], None]) -> None:
    """Run ``write`` as one transaction; a SQLite failure becomes a one-line BatchError."""
    try:
        db.execute("BEGIN")
        write()
        db.execute("COMMIT")
    except BaseException as exc:
        if db.in_transaction:
            db.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):  # disk full, I/O error: say so on one line
            raise BatchError(f"cannot write ledger {path}: {exc}") from None
        raise


class Ledger:
    """An open ledger, locked for this run. Use :meth:`open` as a context manager."""

    def __init__(self, path: Path, db: sqlite3.Connection, existed: bool) -> None:
        self.path = path
        self.existed = existed
        """False when this run created the ledger (a first run, or a seed output to adopt)."""
        self._db = db

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Ledger:
        db, existed = open_locked(path, _SCHEMA, SCHEMA_VERSION, "same --output_csv")
        return cls(Path(path), db, existed)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reads -------------------------------------------------------------------------

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    @property
    def state(self) -> str | None:
        """``running`` if the last run did not end normally (killed, crashed, interrupted)."""
        return self._meta("state")

    def iter_done(self, batch: int = 65536) -> Iterator[list[tuple[str, str]]]:
        """``(record_path, study_id)`` of every converted file, in batches (bounded memory)."""
        cursor = self._db.execute("SELECT path, study_id FROM results WHERE ok=1")
        while rows := cursor.fetchmany(batch):
            yield rows

    def errors_of(self, paths: list[str]) -> dict[str, str]:
        """The recorded error of each of ``paths`` that failed (the output CSV's source:
        errors are not kept in memory, a run with 800,000 failures would hold them all)."""
        found: dict[str, str] = {}
        for start in range(0, len(paths), 500):  # under SQLite's limit on parameters
            part = paths[start:start + 500]
            query = ("SELECT path, error FROM results WHERE ok=0 AND path IN "
                     f"({','.join('?' * len(part))})")
            found.update(self._db.execute(query, part).fetchall())
        return found

    def log_state(self, log_path: str) -> tuple[int | None, str]:
        """The error log's committed size (None if never written) and the text committed."""
        size = self._meta(f"log_size:{log_path}")
        rows = self._db.execute("SELECT text FROM log WHERE log_path=? ORDER BY seq", (log_path,))
        return (int(size) if size is not None else None), "".join(r[0] for r in rows)

    # -- writes (each is one transaction) ------------------------------------------------

    def commit(
        self,
        entries: Iterable[Entry],
        *,
        log_path: str | None = None,
        log_text: str = "",
        log_size: int | None = None,
        state: str | None = None,
    ) -> None:
        """One checkpoint: results, the log text appended since the last one, its new size."""
        db = self._db

        def write() -> None:
            db.executemany(
                "INSERT OR REPLACE INTO results (path, study_id, ok, error) VALUES (?, ?, ?, ?)",
                entries,
            )
            if log_path is not None:
                if log_text:
                    db.execute("INSERT INTO log (log_path, text) VALUES (?, ?)",
                               (log_path, log_text))
                if log_size is not None:
                    db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                               (f"log_size:{log_path}", str(log_size)))
            if state is not None:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('state', ?)", (state,))

        _commit(db, self.path, write)

    def set_meta(self, key: str, value: str) -> None:
        """Record a fact about the run (e.g. its ``wfdb_dir``, for ``wfdb2dicom verify``)."""
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def set_log_size(self, log_path: str, size: int) -> None:
        self.commit((), log_path=log_path, log_size=size)


def recorded_meta(output_csv: str | os.PathLike[str], key: str) -> str | None:
    """A fact a finished run recorded in its ledger, read without locking it; None if absent."""
    path = ledger_path(output_csv)
    if not path.is_file():
        return None
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=1)
        try:
            row = db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        return None
    return row[0] if row else None


VERIFIED_SUFFIX = ".verified.sqlite"
VERIFIED_SCHEMA_VERSION = "1"

_VERIFIED_SCHEMA = """
CREATE TABLE IF NOT EXISTS verified (
    dcm_path TEXT PRIMARY KEY,
    record_path TEXT NOT NULL,
    ok INTEGER NOT NULL,
    problem TEXT,
    object_stat TEXT NOT NULL,
    source_stat TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

Verified = tuple[str, str, int, "str | None", str, str]
"""``(dcm_path, record_path, ok, problem, object_stat, source_stat)``: one ``verified`` row;
the stats as :class:`~wfdb2dicom.verification.Signature` holds them."""


def verified_path(output_csv: str | os.PathLike[str]) -> Path:
    """``{output_csv}.verified.sqlite``: what ``wfdb2dicom verify`` has proven of a run."""
    return Path(f"{os.fspath(output_csv)}{VERIFIED_SUFFIX}")


class VerifyLedger:
    """What verify proved, per object, with the sizes and times of the object and its
    source files when they were read: the batch ledger's design (locked, one transaction
    per checkpoint), so a killed verify resumes, and a re-run re-reads only what changed."""

    def __init__(self, path: Path, db: sqlite3.Connection) -> None:
        self.path = path
        self._db = db

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> VerifyLedger:
        db, _ = open_locked(path, _VERIFIED_SCHEMA, VERIFIED_SCHEMA_VERSION,
                            "a verify of the same --output_csv")
        return cls(Path(path), db)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> VerifyLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def passed(self, dcm_paths: list[str]) -> dict[str, tuple[str, str, str]]:
        """``dcm_path -> (record_path, object_stat, source_stat)`` of each of ``dcm_paths``
        that passed when last verified."""
        found: dict[str, tuple[str, str, str]] = {}
        for start in range(0, len(dcm_paths), 500):  # under SQLite's limit on parameters
            part = dcm_paths[start:start + 500]
            query = ("SELECT dcm_path, record_path, object_stat, source_stat FROM verified "
                     f"WHERE ok=1 AND dcm_path IN ({','.join('?' * len(part))})")
            for dcm_path, *facts in self._db.execute(query, part):
                found[dcm_path] = tuple(facts)  # type: ignore[assignment]
        return found

    def commit(self, rows: Iterable[Verified]) -> None:
        """One checkpoint: these verdicts, in one transaction."""
        def write() -> None:
            self._db.executemany(
                "INSERT OR REPLACE INTO verified VALUES (?, ?, ?, ?, ?, ?)", rows)

        _commit(self._db, self.path, write)
