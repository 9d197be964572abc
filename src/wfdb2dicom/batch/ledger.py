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

Two runs on the same output never overlap: a run first takes an ``flock`` on
``{ledger}.lock`` (without waiting), and only the run holding it creates or opens the ledger,
which it then keeps under SQLite's exclusive lock until it ends. Two runs started at the same
moment: exactly one proceeds, the other refuses with one line and touches nothing (SQLite's
own locking alone let both refuse, leaving an empty ledger).

Durability: commits use ``synchronous=FULL`` (the WAL is synced at every commit), and the
engine syncs the files a commit records before it commits (see ``engine.Run.checkpoint``),
so a row the ledger calls done has a file that survives a power cut.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from json.encoder import encode_basestring as encode_json_string
from pathlib import Path
from typing import TypeVar

from . import BatchError, RunStopped
from .runcsv import CHANNEL_SEPARATOR

try:
    import fcntl
except ImportError:  # Windows: SQLite's exclusive lock alone guards the ledger
    fcntl = None  # type: ignore[assignment]

SCHEMA_VERSION = "2"
SCHEMA_CHANGE = ("schema 2 lists the DICOM objects of each record, which resume and the run's "
                 "manifest read")
"""Why an older ledger cannot be read, for the one-line refusal."""
LEDGER_SUFFIX = ".ledger.sqlite"
LOCK_SUFFIX = ".lock"
"""``{ledger}.lock``: the file whose ``flock`` says a run owns this output (never deleted:
deleting a lock file lets a third run lock a new file while the second holds the old)."""

BUSY_SECONDS = 10.0
"""How long to wait for a reader of the ledger (``wfdb2dicom verify``) once the lock is ours."""

COLUMNS = {
    "results": ["path", "study_id", "ok", "error", "files", "objects"],
    "log": ["seq", "log_path", "text"],
    "meta": ["key", "value"],
}
"""Each table's columns, checked at open: a damaged ledger is refused in one line."""

Entry = tuple[str, str, int, "str | None", "str | None", "str | None"]
"""``(record_path, study_id, ok, error, files, objects)``: one ``results`` row.

``files``: the names of the record's objects beside ``<record_path>``, one a line, in time
order (ECG first); None for a record that made the one file ``<record_path>.dcm`` (all of
MIMIC-IV-ECG), so resume reads no list for them. ``objects``: what the manifest says of
each object (:func:`encode_objects`); None for a failure."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    path TEXT PRIMARY KEY,
    study_id TEXT NOT NULL,
    ok INTEGER NOT NULL,
    error TEXT,
    files TEXT,
    objects TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log (
    seq INTEGER PRIMARY KEY,
    log_path TEXT NOT NULL,
    text TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


ObjectEntry = tuple[str, str, str, int, int, str, str]
"""``(file name, sop_class_uid, modality, segment, part, start, channels)`` of one object,
as the manifest writes them (channels joined by ``|``)."""


def encode_objects(objects: list[ObjectEntry], left_out: str) -> str:
    """The ``objects`` value: JSON ``[left_out, object, object...]`` (small, exact, and one
    ``json.dumps`` per record in the worker)."""
    return json.dumps([left_out, *objects], ensure_ascii=False, separators=(",", ":"))


def encode_single_object(name: str, sop_class_uid: str, modality: str, start: str,
                         channels: tuple[str, ...]) -> str:
    """:func:`encode_objects` of a record's one object (segment 1, part 1, nothing left out:
    all of MIMIC-IV-ECG) from JSON text cached per kind of object, where one ``json.dumps``
    per record cost ~1% of a MIMIC record's work. ``start`` is an ISO date-time (nothing in
    it JSON escapes). Tests prove it equal to :func:`encode_objects`."""
    middle, tail = _single_object_json(sop_class_uid, modality, channels)
    return f'["",[{encode_json_string(name)}{middle}{start}{tail}'


@lru_cache(maxsize=256)
def _single_object_json(sop_class_uid: str, modality: str, channels: tuple[str, ...]
                        ) -> tuple[str, str]:
    """The JSON of a one-object ``objects`` value between the file name and the start, and
    after the start."""
    text = encode_objects(
        [("", sop_class_uid, modality, 1, 1, "\0", CHANNEL_SEPARATOR.join(channels))], "")
    middle, _, tail = text[len('["",[""'):].partition('\\u0000')
    return middle, tail


def decode_objects(text: str) -> tuple[list[ObjectEntry], str]:
    """``(objects, left_out)`` of an ``objects`` value."""
    left_out, *objects = json.loads(text)
    return [tuple(obj) for obj in objects], left_out  # type: ignore[misc]


def describe_file(path: str) -> str:
    """The ``objects`` value of a record's one file, read from its header: for the rows a
    run adopts from an earlier output CSV (the seed's), which recorded nothing of them."""
    import pydicom
    import pydicom.valuerep

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=[
            "SOPClassUID", "Modality", "AcquisitionDateTime", "WaveformSequence"])
        labels = [str(getattr(channel, "ChannelLabel", ""))
                  for group in ds.get("WaveformSequence", [])
                  for channel in group.get("ChannelDefinitionSequence", [])]
        start = pydicom.valuerep.DT(ds.AcquisitionDateTime).isoformat()
        entry = (os.path.basename(path), str(ds.get("SOPClassUID", "")),
                 str(ds.get("Modality", "")), 1, 1, start, "|".join(labels))
    except Exception:  # unreadable: described as far as known
        entry = (os.path.basename(path), "", "", 1, 1, "", "")
    return encode_objects([entry], "")


def ledger_path(output_csv: str | os.PathLike[str]) -> Path:
    """``{output_csv}.ledger.sqlite``: next to the output, found again by the same command."""
    return Path(f"{os.fspath(output_csv)}{LEDGER_SUFFIX}")


def ledger_files(output_csv: str | os.PathLike[str]) -> list[Path]:
    """Every file the ledger of ``output_csv`` may write (the database, its WAL and journal,
    its lock file): a run refuses inputs that are one of them."""
    base = ledger_path(output_csv)
    return [base, *(Path(f"{base}{suffix}") for suffix in ("-wal", "-shm", "-journal",
                                                            LOCK_SUFFIX))]


def _damaged(path: Path, exc: BaseException) -> BatchError:
    return BatchError(f"ledger {path} is damaged ({exc}); delete it to start the run over")


def _take_lock(path: Path) -> int | None:
    """``flock`` ``{path}.lock`` without waiting; its descriptor, held for the run."""
    if fcntl is None:
        return None
    lock = f"{path}{LOCK_SUFFIX}"
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise BatchError(f"cannot create {lock}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise BatchError(
            f"another run is using {path} (same --output_csv); let it finish or stop it"
        ) from None
    return fd


_Held = TypeVar("_Held", bound="_LockedDatabase")


class _LockedDatabase:
    """An SQLite file held for one run: its ``{path}.lock`` flock and SQLite's exclusive
    lock, both released by :meth:`close`. The batch's ledger and verify's are both one."""

    def __init__(self, path: Path, db: sqlite3.Connection, lock_fd: int | None) -> None:
        self.path = path
        self._db = db
        self._lock_fd = lock_fd

    def close(self) -> None:
        try:
            self._db.close()
        finally:
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = None

    def __enter__(self: _Held) -> _Held:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_locked_database(path: Path, schema: str, version: str, columns: dict[str, list[str]],
                         change: str = "") -> tuple[sqlite3.Connection, bool, int | None]:
    """:func:`open_database` after taking ``{path}.lock`` (:func:`_take_lock`); the lock's
    descriptor is returned with the connection, and released if the file is refused."""
    lock_fd = _take_lock(path)
    try:
        db, existed = open_database(path, lock_fd, schema, version, columns, change)
    except BaseException:
        if lock_fd is not None:
            os.close(lock_fd)
        raise
    return db, existed, lock_fd


def open_database(path: Path, lock_fd: int | None, schema: str, version: str,
                  columns: dict[str, list[str]],
                  change: str = "") -> tuple[sqlite3.Connection, bool]:
    """The SQLite file at ``path`` with ``schema`` (its tables' ``columns`` checked), under
    SQLite's exclusive lock until closed, once :func:`_take_lock` gave ``lock_fd``; whether
    it held anything.

    A file of another schema ``version`` is refused as such, saying ``change`` (what the
    current version keeps that the older did not), before its tables are checked: an older
    ledger is not a damaged one."""
    existed = path.exists() and path.stat().st_size > 0  # an empty file holds nothing
    try:
        db = sqlite3.connect(path, timeout=BUSY_SECONDS if lock_fd is not None else 0,
                             isolation_level=None)
    except sqlite3.Error as exc:
        raise BatchError(f"cannot open ledger {path}: {exc}") from None
    try:
        db.execute("PRAGMA locking_mode=EXCLUSIVE")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # the WAL synced at every commit
        db.execute("BEGIN IMMEDIATE")  # takes the lock now, and keeps it until close
        db.executescript(schema)  # executescript commits first; the lock stays (EXCLUSIVE)
        db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (version,))
        found_version = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()[0]
        for table, names in columns.items() if found_version == version else ():
            found = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
            if found != names:
                raise sqlite3.DatabaseError(
                    f"table {table} has columns {', '.join(found) or 'none'}")
    except sqlite3.OperationalError as exc:
        db.close()
        if "locked" in str(exc) or "busy" in str(exc):
            raise BatchError(
                f"another run is using {path} (same --output_csv); let it finish or stop it"
            ) from None
        raise BatchError(f"cannot use ledger {path}: {exc}") from None
    except sqlite3.DatabaseError as exc:
        db.close()
        raise _damaged(path, exc) from None
    if found_version != version:
        db.close()
        raise BatchError(
            f"ledger {path} was written by another version of wfdb2dicom (schema "
            f"{found_version}; this one reads schema {version} only"
            + (f": {change}" if change else "") + f"): delete {path} to start the run over")
    return db, existed


def _transaction(db: sqlite3.Connection, path: Path, write: Callable[[], None]) -> None:
    """``write`` as one transaction; SQLite's failures as one line (disk full, I/O error,
    read-only: :class:`RunStopped`; a damaged file: :class:`BatchError`)."""
    try:
        db.execute("BEGIN")
        write()
        db.execute("COMMIT")
    except BaseException as exc:
        if db.in_transaction:
            db.execute("ROLLBACK")
        if isinstance(exc, sqlite3.OperationalError):
            raise RunStopped(path, exc) from None
        if isinstance(exc, sqlite3.DatabaseError):
            raise _damaged(path, exc) from None
        raise


class Ledger(_LockedDatabase):
    """An open ledger, locked for this run. Use :meth:`open` as a context manager."""

    def __init__(self, path: Path, db: sqlite3.Connection, existed: bool,
                 lock_fd: int | None = None) -> None:
        super().__init__(path, db, lock_fd)
        self.existed = existed
        """False when this run created the ledger (a first run, or a seed output to adopt)."""

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Ledger:
        path = Path(path)
        db, existed, lock_fd = open_locked_database(path, _SCHEMA, SCHEMA_VERSION, COLUMNS,
                                                    SCHEMA_CHANGE)
        return cls(path, db, existed, lock_fd)

    # -- reads -------------------------------------------------------------------------

    def _read(self, query: str, parameters: Iterable = ()) -> sqlite3.Cursor:
        """Run a read; a damaged file or table is refused in one line, not a traceback."""
        try:
            return self._db.execute(query, tuple(parameters))
        except sqlite3.DatabaseError as exc:
            raise _damaged(self.path, exc) from None

    def _meta(self, key: str) -> str | None:
        row = self._read("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    @property
    def state(self) -> str | None:
        """``running`` if the last run did not end normally (killed, crashed, interrupted)."""
        return self._meta("state")

    def iter_done(self, batch: int = 65536) -> Iterator[list[tuple[str, str, str | None]]]:
        """``(record_path, study_id, files)`` of every converted record, in batches (bounded
        memory)."""
        cursor = self._read("SELECT path, study_id, files FROM results WHERE ok=1")
        while True:
            try:
                rows = cursor.fetchmany(batch)
            except sqlite3.DatabaseError as exc:
                raise _damaged(self.path, exc) from None
            if not rows:
                return
            yield rows

    def errors_of(self, paths: list[str]) -> dict[str, str]:
        """The recorded error of each of ``paths`` that failed (the output CSV's source:
        errors are not kept in memory, a run with 800,000 failures would hold them all)."""
        found: dict[str, str] = {}
        for start in range(0, len(paths), 500):  # under SQLite's limit on parameters
            part = paths[start:start + 500]
            query = ("SELECT path, error FROM results WHERE ok=0 AND path IN "
                     f"({','.join('?' * len(part))})")
            try:
                found.update(self._read(query, part).fetchall())
            except sqlite3.DatabaseError as exc:
                raise _damaged(self.path, exc) from None
        return found

    def objects_of(self, paths: list[str]) -> dict[str, tuple[str | None, str]]:
        """``record_path -> (files, objects)`` of each of ``paths`` converted (the manifest's
        source, read a block at a time like :meth:`errors_of`)."""
        found: dict[str, tuple[str | None, str]] = {}
        for start in range(0, len(paths), 500):
            part = paths[start:start + 500]
            query = ("SELECT path, files, objects FROM results WHERE ok=1 AND path IN "
                     f"({','.join('?' * len(part))})")
            try:
                for path, files, objects in self._read(query, part):
                    found[path] = (files, objects)
            except sqlite3.DatabaseError as exc:
                raise _damaged(self.path, exc) from None
        return found

    def log_state(self, log_path: str) -> tuple[int | None, str]:
        """The error log's committed size (None if never written) and the text committed."""
        size = self._meta(f"log_size:{log_path}")
        try:
            rows = self._read("SELECT text FROM log WHERE log_path=? ORDER BY seq",
                              (log_path,)).fetchall()
            return (int(size) if size is not None else None), "".join(r[0] for r in rows)
        except (sqlite3.DatabaseError, ValueError, TypeError) as exc:
            raise _damaged(self.path, exc) from None

    # -- writes (each is one transaction) ------------------------------------------------

    def commit(
        self,
        entries: Iterable[Entry],
        *,
        log_path: str | None = None,
        log_text: str = "",
        log_size: int | None = None,
        state: str | None = None,
        meta: dict[str, str] | None = None,
    ) -> None:
        """One checkpoint: results, the log text appended since the last one, its new size."""
        db = self._db

        def write() -> None:
            db.executemany(
                "INSERT OR REPLACE INTO results (path, study_id, ok, error, files, objects) "
                "VALUES (?, ?, ?, ?, ?, ?)",
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
            if meta:
                db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", meta.items())

        _transaction(db, self.path, write)

    def set_meta(self, key: str, value: str) -> None:
        """Record a fact about the run (e.g. its ``wfdb_dir``, for ``wfdb2dicom verify``)."""
        self.commit((), meta={key: value})

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

VERIFIED_COLUMNS = {
    "verified": ["dcm_path", "record_path", "ok", "problem", "object_stat", "source_stat"],
    "meta": ["key", "value"],
}

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
``record_path`` is :attr:`~wfdb2dicom.verify.VerifyTask.claim` (the record, a part's
place in it, and on a row's first object a digest of what the row accounts for), the stats
as :class:`~wfdb2dicom.verification.Signature` holds them."""


def verified_path(output_csv: str | os.PathLike[str]) -> Path:
    """``{output_csv}.verified.sqlite``: what ``wfdb2dicom verify`` has proven of a run."""
    return Path(f"{os.fspath(output_csv)}{VERIFIED_SUFFIX}")


class VerifyLedger(_LockedDatabase):
    """What verify proved, per object, with the sizes and times of the object and its
    source files when they were read: the batch ledger's design (its lock file, SQLite's
    exclusive lock, one transaction per checkpoint), so a killed verify resumes, and a re-run
    re-reads only what changed."""

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> VerifyLedger:
        path = Path(path)
        db, _, lock_fd = open_locked_database(path, _VERIFIED_SCHEMA, VERIFIED_SCHEMA_VERSION,
                                              VERIFIED_COLUMNS)
        return cls(path, db, lock_fd)

    def passed(self, dcm_paths: list[str]) -> dict[str, tuple[str, str, str]]:
        """``dcm_path -> (record_path, object_stat, source_stat)`` of each of ``dcm_paths``
        that passed when last verified."""
        found: dict[str, tuple[str, str, str]] = {}
        for start in range(0, len(dcm_paths), 500):  # under SQLite's limit on parameters
            part = dcm_paths[start:start + 500]
            query = ("SELECT dcm_path, record_path, object_stat, source_stat FROM verified "
                     f"WHERE ok=1 AND dcm_path IN ({','.join('?' * len(part))})")
            try:
                for dcm_path, *facts in self._db.execute(query, part):
                    found[dcm_path] = tuple(facts)  # type: ignore[assignment]
            except sqlite3.DatabaseError as exc:
                raise _damaged(self.path, exc) from None
        return found

    def commit(self, rows: Iterable[Verified]) -> None:
        """One checkpoint: these verdicts, in one transaction."""
        def write() -> None:
            self._db.executemany(
                "INSERT OR REPLACE INTO verified VALUES (?, ?, ?, ?, ?, ?)", rows)

        _transaction(self._db, self.path, write)
