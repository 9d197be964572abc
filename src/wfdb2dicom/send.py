"""Deliver the objects of a batch run to a DICOM node (C-STORE) or a DICOMweb server (STOW-RS).

A batch run's output CSV lists every converted object (``dcm_path`` set, ``dcm_error`` empty).
``send`` pushes them to one destination, in batches, and keeps a small SQLite ledger next to the
CSV of what the destination confirmed, so that a killed or failed send is resumed by running
the same command again: only what is not yet confirmed goes out. The ledger is committed after
every batch, so a kill loses at most one batch of bookkeeping (those objects are simply sent
again, which DICOM storage tolerates).

Failures come in two kinds, and are handled differently:

* *transient* (connection refused or reset, association rejected-transient or aborted,
  timeouts, HTTP 408/429/5xx): the batch is retried with bounded exponential backoff; when
  the retries are spent the destination is considered unreachable and the run stops, every
  object not sent being reported;
* *per object* (file missing or unreadable, no presentation context accepted for its SOP
  class, C-STORE failure status, STOW-RS failure for that instance): reported as one line
  ``study_id<TAB>dcm_path<TAB>reason`` in the error log, in the style of the batch run, and
  the run goes on.

A refusal that neither a retry nor a later batch can change (association rejected-permanent,
no presentation context accepted at all, a DICOMweb server refusing our credentials) stops
the run at once, every object not sent being reported with it.

Credentials never appear on the command line (process lists and shell histories are not
private): a DICOMweb URL with ``user:password@`` is refused; user/password or a bearer token
come from the environment or a netrc file.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import netrc
import os
import re
import sqlite3
import stat
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol
from urllib.parse import unquote, urlsplit

from .errors import ConversionError
from .iods import IODS

if TYPE_CHECKING:
    import requests.auth
    from pynetdicom.association import Association
    from pynetdicom.pdu_primitives import A_ASSOCIATE

WAVEFORM_STORAGE_SOP_CLASSES: tuple[str, ...] = tuple(iod.sop_class_uid for iod in IODS)
"""SOP classes proposed for C-STORE, each in every syntax of ``NETWORK_TRANSFER_SYNTAXES``:
every IOD the converter writes (:data:`~wfdb2dicom.iods.IODS`: the ECG family, General
32-bit ECG, Hemodynamic, Arterial Pulse, Respiratory, Multi-channel Respiratory), so every
object of a run has a context."""

EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
NETWORK_TRANSFER_SYNTAXES: tuple[str, ...] = (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN)
"""Proposed for each SOP class, one presentation context each, in order of preference.

Explicit VR Little Endian is what we write, so the file goes as stored. Implicit VR Little
Endian is DICOM's default transfer syntax, the one every node must accept (PS3.5 10.1): a
PACS configured to accept nothing else would otherwise receive nothing. One context per
syntax (not one context offering both) lets the peer accept both and us choose Explicit,
instead of the peer choosing for us.
"""
DEFAULT_AET = "WFDB2DICOM"
DEFAULT_BATCH_SIZE = 50
DEFAULT_RETRIES = 3
DEFAULT_TIMEOUT = 30.0
MAX_BACKOFF = 30.0

ENV_USER = "WFDB2DICOM_DICOMWEB_USER"
ENV_PASSWORD = "WFDB2DICOM_DICOMWEB_PASSWORD"
ENV_TOKEN = "WFDB2DICOM_DICOMWEB_TOKEN"

LEDGER_SCHEMA_VERSION = 1

_LOOKUP_CHUNK = 500  # SQLite host parameters per IN (...) query, well under every build's limit


# --------------------------------------------------------------------------------------------
# destination


@dataclass(frozen=True)
class Destination:
    """Where objects go. ``url`` is canonical and credential-free: the ledger key."""

    url: str
    scheme: str  # "dicom", "http" or "https"
    host: str
    port: int | None
    called_aet: str = ""

    @property
    def is_dicom(self) -> bool:
        return self.scheme == "dicom"


def _check_aet(value: str, what: str) -> str:
    """An AE title: 1-16 characters of the default repertoire, no backslash (PS3.5 6.2)."""
    if not value.strip() or len(value) > 16 or "\\" in value:
        raise ConversionError(f"{what} {value!r} is not a valid AE title (1-16 characters)")
    if any(not (" " <= ch <= "~") for ch in value):
        raise ConversionError(f"{what} {value!r} has characters not allowed in an AE title")
    return value


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def parse_destination(text: str) -> Destination:
    """Parse ``dicom://AET@HOST:PORT`` or ``http(s)://HOST[:PORT]/path``; refuse anything else."""
    usage = "use dicom://AET@HOST:PORT or http(s)://HOST[:PORT]/dicom-web"
    parts = urlsplit(text.strip())
    scheme = parts.scheme.lower()
    if scheme not in ("dicom", "http", "https"):
        raise ConversionError(f"unsupported destination {text!r}: {usage}")
    try:
        port = parts.port
    except ValueError as exc:
        raise ConversionError(f"bad port in destination {text!r}: {exc}") from None
    host = (parts.hostname or "").lower()
    if not host:
        raise ConversionError(f"destination {text!r} has no host: {usage}")
    if parts.query or parts.fragment:
        raise ConversionError(f"destination {text!r} must not have a query or fragment")

    if scheme == "dicom":
        if parts.password is not None:
            raise ConversionError(f"destination {text!r}: a DICOM destination takes no password")
        if not parts.username:
            raise ConversionError(f"destination {text!r} names no called AE title: {usage}")
        if port is None:
            raise ConversionError(f"destination {text!r} names no port: {usage}")
        if parts.path not in ("", "/"):
            raise ConversionError(f"destination {text!r}: a DICOM destination has no path")
        aet = _check_aet(unquote(parts.username), "called AE title")
        return Destination(f"dicom://{aet}@{_url_host(host)}:{port}", scheme, host, port, aet)

    if "@" in parts.netloc:
        raise ConversionError(
            f"credentials in the destination URL are refused (they would be visible in process "
            f"lists and shell history): set {ENV_USER} and {ENV_PASSWORD}, or {ENV_TOKEN}, in "
            f"the environment, or use a netrc file (--netrc)"
        )
    default_port = 80 if scheme == "http" else 443
    netloc = _url_host(host) + (f":{port}" if port not in (None, default_port) else "")
    return Destination(f"{scheme}://{netloc}{parts.path.rstrip('/')}", scheme, host, port)


# --------------------------------------------------------------------------------------------
# credentials (DICOMweb)


def dicomweb_auth(
    host: str, netrc_file: Path | None = None, environ: Mapping[str, str] | None = None
) -> requests.auth.AuthBase:
    """The ``requests`` auth for ``host``: environment first, then the netrc file.

    Always returns an auth object (possibly a no-op) so that ``requests`` does not consult
    ``~/.netrc`` on its own behind our back when ``--netrc`` names another file.
    """
    import requests.auth

    class _BearerAuth(requests.auth.AuthBase):
        def __init__(self, token: str) -> None:
            self._token = token

        def __call__(self, r):
            r.headers["Authorization"] = f"Bearer {self._token}"
            return r

    class _NoAuth(requests.auth.AuthBase):
        def __call__(self, r):
            return r

    env = os.environ if environ is None else environ
    token, user, password = env.get(ENV_TOKEN), env.get(ENV_USER), env.get(ENV_PASSWORD)
    if token and (user or password):
        raise ConversionError(f"set either {ENV_TOKEN} or {ENV_USER}/{ENV_PASSWORD}, not both")
    if token:
        return _BearerAuth(token)
    if user or password:
        if not (user and password is not None):
            raise ConversionError(f"set both {ENV_USER} and {ENV_PASSWORD} (or neither)")
        return requests.auth.HTTPBasicAuth(user, password)

    try:
        entry = netrc.netrc(os.fspath(netrc_file) if netrc_file else None).authenticators(host)
    except FileNotFoundError:
        if netrc_file is not None:
            raise ConversionError(f"netrc file not found: {netrc_file}") from None
        return _NoAuth()
    except netrc.NetrcParseError as exc:
        raise ConversionError(f"cannot use netrc file {exc.filename}: {exc.msg}") from None
    except OSError as exc:
        raise ConversionError(f"cannot read netrc file: {exc.strerror}") from None
    if entry is None:
        return _NoAuth()
    login, _account, secret = entry
    return requests.auth.HTTPBasicAuth(login or "", secret or "")


# --------------------------------------------------------------------------------------------
# the run's CSV


@dataclass(slots=True)
class _Item:
    """One converted object of the run (paths as plain strings: a run may list 800k)."""

    study_id: str
    dcm_path: str  # as written in the CSV: what the error log shows
    path: str  # absolute
    size: int = -1
    mtime_ns: int = -1
    problem: str | None = None  # a reason found while planning (file missing, not a file)


def _read_run(
    csv_path: Path, study_id_col: str, dcm_path_col: str, error_col: str
) -> tuple[list[_Item], int]:
    """Every object of the run (first occurrence of each file: every line of its manifest,
    else each converted row's object) and the number of rows not converted, read by the one
    reader of a run's CSV (:class:`~wfdb2dicom.batch.runcsv.RunCsv`: relative ``dcm_path``
    values are taken relative to the CSV's folder)."""
    from .batch.runcsv import RunCsv

    run = RunCsv(csv_path, study_id_col=study_id_col, path_col=None,
                 dcm_path_col=dcm_path_col, error_col=error_col)
    not_converted = sum(not row.converted for row in run.rows())
    items: list[_Item] = []
    seen: set[str] = set()
    for obj in run.iter_objects():
        if obj.file in seen:
            continue
        seen.add(obj.file)
        items.append(_Item(obj.study_id, obj.dcm_path, obj.file))
    return items, not_converted


def _chunks(seq: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


# --------------------------------------------------------------------------------------------
# ledger


class SendLedger:
    """What each destination confirmed, keyed by (destination URL, SOP Instance UID).

    Size and mtime are kept so a re-converted file (same deterministic UID, new bytes) is sent
    again, and the path so a re-run can skip a file with one indexed lookup instead of
    opening it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._db = sqlite3.connect(path, timeout=30)
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, LEDGER_SCHEMA_VERSION):
                raise ConversionError(f"ledger {path} has schema version {version}; "
                                      f"this wfdb2dicom writes version {LEDGER_SCHEMA_VERSION}")
            self._db.executescript(
                """
                CREATE TABLE IF NOT EXISTS sent (
                    destination TEXT NOT NULL,
                    sop_instance_uid TEXT NOT NULL,
                    path TEXT NOT NULL,
                    size INTEGER NOT NULL,
                    mtime_ns INTEGER NOT NULL,
                    sent_at TEXT NOT NULL,
                    PRIMARY KEY (destination, sop_instance_uid)
                );
                CREATE INDEX IF NOT EXISTS sent_by_path ON sent (destination, path);
                """
            )
            self._db.execute(f"PRAGMA user_version = {LEDGER_SCHEMA_VERSION}")
            self._db.commit()
        except sqlite3.Error as exc:
            raise ConversionError(f"cannot use ledger {path}: {exc}") from None

    def by_path(self, destination: str, paths: Sequence[str]) -> dict[str, tuple[int, int]]:
        """``path -> (size, mtime_ns)`` of what was sent from these paths."""
        found: dict[str, tuple[int, int]] = {}
        for chunk in _chunks(paths, _LOOKUP_CHUNK):
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                "SELECT path, size, mtime_ns FROM sent "
                f"WHERE destination = ? AND path IN ({marks})",
                (destination, *chunk),
            )
            found.update((p, (s, m)) for p, s, m in rows)
        return found

    def by_uid(self, destination: str, uid: str) -> tuple[str, int, int] | None:
        """``(path, size, mtime_ns)`` recorded for this SOP Instance UID, if any."""
        return self._db.execute(
            "SELECT path, size, mtime_ns FROM sent WHERE destination = ? AND sop_instance_uid = ?",
            (destination, uid),
        ).fetchone()

    def record(self, destination: str, uid: str, item: _Item) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO sent VALUES (?, ?, ?, ?, ?, ?)",
            (destination, uid, item.path, item.size, item.mtime_ns,
             datetime.now().astimezone().isoformat(timespec="seconds")),
        )

    def count(self, destination: str) -> int:
        return self._db.execute(
            "SELECT COUNT(*) FROM sent WHERE destination = ?", (destination,)
        ).fetchone()[0]

    def commit(self) -> None:
        self._db.commit()

    def close(self) -> None:
        self._db.commit()
        self._db.close()


# --------------------------------------------------------------------------------------------
# reading what we send


@dataclass(slots=True)
class _Ready:
    """An object whose header was read: what the transports need to send it."""

    item: _Item
    uid: str
    sop_class: str
    transfer_syntax: str


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _exc_reason(kind: str, exc: BaseException) -> str:
    detail = _one_line(exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc))
    return f"{kind}: {type(exc).__name__}: {detail}" if detail else f"{kind}: {type(exc).__name__}"


def _read_header(path: str) -> tuple[str, str, str]:
    """``(SOP Instance UID, SOP Class UID, Transfer Syntax UID)`` of a Part 10 file.

    Reads only the file meta and the first elements (``read_partial`` stopping after
    (0008,0018)): ``dcmread(specific_tags=...)`` still walks the whole file, undefined-length
    sequences included, about 30 times slower on our objects; at 800k files that is hours.
    The meta and the dataset must agree, since C-STORE sends the meta's UIDs and the server
    files the object under the dataset's.
    """
    from pydicom.filereader import read_partial

    with open(path, "rb") as handle:
        ds = read_partial(handle, stop_when=lambda tag, vr, length: tag > 0x00080018)
    meta = ds.file_meta
    ts = str(meta.get("TransferSyntaxUID", "") or "")
    if not ts:
        raise ValueError("no file meta information (not a DICOM Part 10 file)")
    uid, sop_class = str(ds.get("SOPInstanceUID", "") or ""), str(ds.get("SOPClassUID", "") or "")
    if not uid or not sop_class:
        raise ValueError("no SOP Instance UID or SOP Class UID")
    if str(meta.get("MediaStorageSOPInstanceUID", "")) != uid:
        raise ValueError("file meta Media Storage SOP Instance UID differs from SOP Instance UID")
    if str(meta.get("MediaStorageSOPClassUID", "")) != sop_class:
        raise ValueError("file meta Media Storage SOP Class UID differs from SOP Class UID")
    return uid, sop_class, ts


def _holds_uid(path: str, uid: str) -> bool:
    """Whether the file at ``path`` is still the object ``uid`` (not moved or re-converted)."""
    try:
        return _read_header(path)[0] == uid
    except Exception:  # noqa: BLE001 - gone or unreadable: not a live duplicate
        return False


# --------------------------------------------------------------------------------------------
# transports


class _TransportError(Exception):
    """A failure of the whole exchange; ``done`` holds the outcomes known before it."""

    def __init__(self, reason: str, done: dict[str, str | None] | None = None) -> None:
        super().__init__(reason)
        self.reason = _one_line(reason)
        self.done: dict[str, str | None] = dict(done or {})


class _Transient(_TransportError):
    """Worth retrying: the destination may answer later."""


class _Fatal(_TransportError):
    """Retrying cannot help and no later batch would fare better (bad AE title, 401...)."""


class _Transport(Protocol):
    def send(self, batch: Sequence[_Ready]) -> dict[str, str | None]:
        """``uid -> None`` (stored) or ``uid -> reason`` for every object of ``batch``."""

    def close(self) -> None: ...


class _CaptureErrors(logging.Handler):
    """pynetdicom reports why a TCP connect failed only in its log; keep that line."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _unread_rejection(assoc: Association) -> A_ASSOCIATE | None:
    """The peer's A-ASSOCIATE rejection that pynetdicom received but its ACSE never read,
    or None.

    pynetdicom 3.0's requestor checks that its socket is connected only once the transport
    is ready, in the calling thread, while its reactor thread goes on: a peer that rejects
    and closes at once (Orthanc, for a called AE title it does not know) can be done by
    then. pynetdicom then says "aborted", and the rejection waits unread in the DUL's queue.
    Under load it happened, and a permanent rejection was retried as a transient abort.
    """
    from pynetdicom.pdu_primitives import A_ASSOCIATE

    if not assoc.is_aborted:
        return None
    pending = assoc.dul.receive_pdu(wait=False)
    if isinstance(pending, A_ASSOCIATE) and pending.result in (0x01, 0x02):
        return pending
    return None


class _CStoreTransport:
    """C-STORE over one association, reused across batches and re-opened when lost.

    Each object goes in the first syntax of ``NETWORK_TRANSFER_SYNTAXES`` that the peer
    accepted for its SOP class. In Explicit VR Little Endian, the file's own syntax, it is sent
    as stored (pynetdicom's ``STORE_SEND_CHUNKED_DATASET``): no decoding and re-encoding, so
    the bytes on the wire are the file's bytes after its meta group. When the peer accepted
    only Implicit VR Little Endian, the file is read with pydicom and pynetdicom encodes it in
    that syntax (pydicom's ``write_dataset``): only the element headers change (no VR, 4-byte
    lengths); every value keeps its bytes, Waveform Data included (OW, little endian in both
    syntaxes). The tests check it against DCMTK's ``storescp +xi``.
    """

    def __init__(self, destination: Destination, calling_aet: str, timeout: float) -> None:
        from pynetdicom import AE

        self._dest = destination
        self._where = f"{destination.called_aet}@{destination.host}:{destination.port}"
        self._timeout = timeout
        self._ae = AE(ae_title=calling_aet)
        for sop_class in WAVEFORM_STORAGE_SOP_CLASSES:
            for syntax in NETWORK_TRANSFER_SYNTAXES:
                self._ae.add_requested_context(sop_class, syntax)
        self._ae.acse_timeout = timeout
        self._ae.dimse_timeout = timeout
        self._ae.network_timeout = timeout
        self._ae.connection_timeout = timeout
        self._assoc = None
        self._agreed = _Agreement({}, {})

    def _association(self):
        from pydicom.uid import UID

        if self._assoc is not None and self._assoc.is_established:
            return self._assoc
        where = self._where
        capture = _CaptureErrors()
        logger = logging.getLogger("pynetdicom")
        logger.addHandler(capture)
        try:
            assoc = self._ae.associate(
                self._dest.host, self._dest.port, ae_title=self._dest.called_aet
            )
        finally:
            logger.removeHandler(capture)
        answer = assoc.acceptor.primitive
        if assoc.is_established:
            self._assoc = assoc
            self._agreed = _Agreement.of(assoc)
            return assoc
        rejection = answer if assoc.is_rejected else _unread_rejection(assoc)
        if rejection is not None:
            reason = (f"association rejected by {where} ({rejection.result_str}: "
                      f"{rejection.reason_str})")
            if rejection.result == 0x01:  # rejected-permanent: it will be refused again
                raise _Fatal(f"Rejected: {reason}")
            raise _Transient(f"Unreachable: {reason}")
        if answer is not None and answer.result == 0x00 and not assoc.accepted_contexts:
            # The peer accepted the association but none of its contexts, so pynetdicom
            # aborted it. The same proposal will get the same answer: not worth a retry.
            by_answer: dict[str, list[str]] = {}
            for sop_class, why in _Agreement.of(assoc).refused.items():
                by_answer.setdefault(why, []).append(UID(sop_class).name)
            raise _Fatal(f"Rejected: no presentation context accepted by {where} for "
                         + "; ".join(f"{', '.join(names)} ({why})"
                                     for why, names in by_answer.items()))
        tcp = [m.split(":", 1)[1].strip() for m in capture.messages if "TCP Initialisation" in m]
        detail = tcp[-1] if tcp else f"aborted, or no answer within {self._timeout:g}s"
        raise _Transient(f"Unreachable: no association with {where} ({detail})")

    def send(self, batch: Sequence[_Ready]) -> dict[str, str | None]:
        from pydicom import Dataset, dcmread
        from pydicom.uid import UID
        from pynetdicom import _config
        from pynetdicom.status import STATUS_SUCCESS, STATUS_WARNING, code_to_category
        from pynetdicom.status import STORAGE_SERVICE_CLASS_STATUS as STORE_STATUS

        done: dict[str, str | None] = {}
        previous = _config.STORE_SEND_CHUNKED_DATASET
        _config.STORE_SEND_CHUNKED_DATASET = True
        try:
            for ready in batch:
                if ready.sop_class not in WAVEFORM_STORAGE_SOP_CLASSES:
                    done[ready.uid] = (f"Unsupported: {UID(ready.sop_class).name} is not a "
                                       f"waveform storage class we write")
                    continue
                if ready.transfer_syntax != EXPLICIT_VR_LITTLE_ENDIAN:
                    done[ready.uid] = (f"Unsupported: {UID(ready.transfer_syntax).name} (C-STORE "
                                       f"sends files in Explicit VR Little Endian only)")
                    continue
                try:
                    assoc = self._association()
                except _TransportError as exc:
                    exc.done.update(done)
                    raise
                syntax = self._agreed.syntax.get(ready.sop_class)
                if syntax is None:
                    done[ready.uid] = (
                        f"Rejected: no presentation context accepted for "
                        f"{UID(ready.sop_class).name} by {self._where} "
                        f"({self._agreed.refused[ready.sop_class]})"
                    )
                    continue
                target: str | Dataset = ready.item.path
                if syntax != ready.transfer_syntax:  # pynetdicom encodes it in `syntax`
                    try:
                        target = dcmread(ready.item.path)
                    except Exception as exc:  # noqa: BLE001 - any reader failure is this object's
                        done[ready.uid] = _exc_reason("Unreadable", exc)
                        continue
                try:
                    status = assoc.send_c_store(target)
                except RuntimeError:  # the association went away between the check and here
                    raise _Transient(f"Unreachable: association with {self._dest.url} lost",
                                     done) from None
                except (OSError, ValueError, AttributeError) as exc:
                    done[ready.uid] = _exc_reason("Unreadable", exc)
                    continue
                if "Status" not in status:
                    raise _Transient(
                        f"Unreachable: association with {self._dest.url} lost during C-STORE "
                        f"(aborted, or no answer within {self._timeout:g}s)",
                        done,
                    )
                code = int(status.Status)
                if code_to_category(code) in (STATUS_SUCCESS, STATUS_WARNING):
                    done[ready.uid] = None
                else:
                    meaning = STORE_STATUS.get(code, ("", "unknown status"))[1]
                    comment = str(status.get("ErrorComment", "") or "")
                    done[ready.uid] = _one_line(
                        f"Rejected: C-STORE status 0x{code:04X} ({meaning})"
                        + (f": {comment}" if comment else "")
                    )
        finally:
            _config.STORE_SEND_CHUNKED_DATASET = previous
        return done

    def close(self) -> None:
        if self._assoc is not None and self._assoc.is_established:
            self._assoc.release()
        self._assoc = None


@dataclass(frozen=True)
class _Agreement:
    """The outcome of presentation context negotiation, per ECG SOP class.

    ``syntax``: the transfer syntax to send the class in, the first of
    ``NETWORK_TRANSFER_SYNTAXES`` the peer accepted. ``refused``: for a class with no context
    accepted, the peer's answer (PS3.8 9.3.3.2: abstract syntax or transfer syntaxes not
    supported, user or provider rejection), per proposed syntax when the answers differ.
    """

    syntax: dict[str, str]
    refused: dict[str, str]

    @classmethod
    def of(cls, assoc) -> _Agreement:
        from pydicom.uid import UID

        accepted: dict[str, set[str]] = {c: set() for c in WAVEFORM_STORAGE_SOP_CLASSES}
        for cx in assoc.accepted_contexts:
            accepted.setdefault(cx.abstract_syntax, set()).add(cx.transfer_syntax[0])
        # a rejected context's transfer syntax field is not significant: take what we proposed
        proposed = {cx.context_id: cx.transfer_syntax[0]
                    for cx in assoc.requestor.requested_contexts}
        answers: dict[str, dict[str, str]] = {c: {} for c in WAVEFORM_STORAGE_SOP_CLASSES}
        for cx in assoc.rejected_contexts:
            answers.setdefault(cx.abstract_syntax, {})[proposed.get(cx.context_id, "")] = (
                cx.status.lower()
            )
        syntax: dict[str, str] = {}
        refused: dict[str, str] = {}
        for sop_class in WAVEFORM_STORAGE_SOP_CLASSES:
            chosen = [ts for ts in NETWORK_TRANSFER_SYNTAXES if ts in accepted[sop_class]]
            if chosen:
                syntax[sop_class] = chosen[0]
                continue
            why = answers[sop_class]
            if len(set(why.values())) == 1:
                refused[sop_class] = next(iter(why.values()))
            else:
                refused[sop_class] = ", ".join(f"{UID(ts).name}: {why.get(ts, 'no answer')}"
                                               for ts in NETWORK_TRANSFER_SYNTAXES)
        return cls(syntax, refused)


STOW_FAILURE_REASONS: dict[int, str] = {
    0x0110: "Processing failure",
    0x0122: "SOP Class not supported",
    0x0124: "Not authorized",
    0xA700: "Out of resources",
    0xA900: "Data Set does not match SOP Class",
    0xC000: "Cannot understand",
    0xC122: "Referenced Transfer Syntax not supported",
}
"""Failure Reason (0008,1197) values of PS3.18 Table I.2-1 (STOW-RS)."""


class _StowTransport:
    """STOW-RS of each batch as one multipart request with dicomweb-client.

    The client's own retry is switched off: one bounded retry policy, ours, covers both
    protocols. ``store_instances`` re-encodes the datasets it is given; for a dataset just read
    with pydicom that is byte-identical to the file (the tests check it against Orthanc).
    """

    def __init__(self, destination: Destination, auth, timeout: float) -> None:
        import requests
        from dicomweb_client import DICOMwebClient

        from . import __version__

        session = requests.Session()
        session.auth = auth
        session.headers["User-Agent"] = f"wfdb2dicom/{__version__}"
        self._dest = destination
        self._last_status = 0
        self._client = DICOMwebClient(
            destination.url, session=session, timeout=timeout, callback=self._remember
        )
        self._client.set_http_retry_params(retry=False)
        self._session = session

    def _remember(self, response, *args, **kwargs):
        self._last_status = response.status_code
        return response

    def send(self, batch: Sequence[_Ready]) -> dict[str, str | None]:
        import requests
        from pydicom import dcmread

        done: dict[str, str | None] = {}
        datasets, uids = [], []
        for ready in batch:
            try:
                datasets.append(dcmread(ready.item.path))
                uids.append(ready.uid)
            except Exception as exc:  # noqa: BLE001 - any reader failure is this object's
                done[ready.uid] = _exc_reason("Unreadable", exc)
        if not datasets:
            return done
        self._last_status = 0
        try:
            response = self._client.store_instances(datasets)
        except requests.HTTPError as exc:
            response = self._http_error(exc, uids, done)
            if response is None:
                return done
        except requests.exceptions.SSLError as exc:
            raise _Fatal(f"TLS: {self._dest.url}: {_short_request_error(exc)}", done) from None
        except (requests.ConnectionError, requests.Timeout,
                requests.exceptions.ChunkedEncodingError) as exc:
            raise _Transient(
                f"Unreachable: {self._dest.url} ({_short_request_error(exc)})", done
            ) from None
        except (KeyError, ValueError) as exc:  # a 2xx answer dicomweb-client could not parse
            if self._last_status == 0:  # no request went out: pydicom could not encode
                done.update(dict.fromkeys(uids, _exc_reason("Unreadable", exc)))
                return done
            if self._last_status == 200:  # 200 means every instance was stored (PS3.18 10.5.3)
                response = None
            else:
                reason = f"Rejected: unreadable STOW-RS response (HTTP {self._last_status}: {exc})"
                done.update(dict.fromkeys(uids, _one_line(reason)))
                return done
        done.update(_stow_outcomes(response, uids))
        return done

    def _http_error(self, exc, uids: list[str], done: dict[str, str | None]):
        """Raise for errors of the request as a whole; else per-instance outcomes' dataset."""
        from pydicom import Dataset

        response = exc.response
        status = response.status_code if response is not None else 0
        reason = f"HTTP {status} {getattr(response, 'reason', '') or ''}".strip()
        if status in (408, 429) or status >= 500:
            raise _Transient(f"HTTPError: {reason} from {self._dest.url}", done)
        parsed = None
        try:  # Orthanc answers 400 with per-instance results and no Content-Type
            parsed = Dataset.from_json(response.json())
        except Exception:  # noqa: BLE001 - no per-instance answer: handled below
            parsed = None
        if parsed is not None and (
            "FailedSOPSequence" in parsed or "ReferencedSOPSequence" in parsed
        ):
            return parsed
        if status in (401, 403, 404, 405, 407):
            hint = ""
            if status in (401, 407):
                hint = f" (credentials: {ENV_USER}/{ENV_PASSWORD}, {ENV_TOKEN} or netrc)"
            raise _Fatal(f"HTTPError: {reason} from {self._dest.url}{hint}", done)
        done.update(dict.fromkeys(uids, f"Rejected: {reason}"))
        return None

    def close(self) -> None:
        self._session.close()


def _short_request_error(exc: BaseException) -> str:
    """The root cause of a ``requests`` error (``[Errno 111] Connection refused``), not the
    urllib3 pool and object addresses that wrap it."""
    text = str(exc)
    found = re.search(r"\[Errno -?\d+\][^'\")]*", text)
    if found:
        return found.group(0).strip()
    if "timed out" in text.lower():
        return "timed out"
    return type(exc).__name__


def _stow_outcomes(response, uids: Sequence[str]) -> dict[str, str | None]:
    """Per-instance outcome of a STOW-RS answer (PS3.18 10.5.3): Failed SOP Sequence items
    failed; Referenced SOP Sequence items were stored (warnings included); an answer without
    either (some servers send none with 200) means all stored."""
    if response is None or (
        "FailedSOPSequence" not in response and "ReferencedSOPSequence" not in response
    ):
        return dict.fromkeys(uids)
    failed: dict[str, str] = {}
    for item in response.get("FailedSOPSequence") or []:
        code = item.get("FailureReason")
        if code is None:
            failed[str(item.get("ReferencedSOPInstanceUID", ""))] = "Rejected: STOW-RS failure"
        else:
            meaning = STOW_FAILURE_REASONS.get(int(code), "failure")
            failed[str(item.get("ReferencedSOPInstanceUID", ""))] = (
                f"Rejected: STOW-RS failure reason 0x{int(code):04X} ({meaning})"
            )
    stored = {str(item.get("ReferencedSOPInstanceUID", ""))
              for item in response.get("ReferencedSOPSequence") or []}
    outcomes: dict[str, str | None] = {}
    for uid in uids:
        if uid in failed:
            outcomes[uid] = failed[uid]
        elif uid in stored:
            outcomes[uid] = None
        else:
            outcomes[uid] = "Rejected: not acknowledged in the STOW-RS response"
    return outcomes


# --------------------------------------------------------------------------------------------
# the run


@dataclass
class SendSummary:
    """What a send did. ``ok`` when every converted object is at the destination."""

    destination: str
    converted: int = 0
    not_converted: int = 0
    todo: int = 0
    sent: int = 0
    already_sent: int = 0
    failures: Counter[str] = field(default_factory=Counter)  # reason kind -> objects
    error_log: Path | None = None
    ledger: Path | None = None

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def report(self) -> str:
        """A few lines for people: counts, failure kinds, and where to look."""
        skipped = f" ({self.not_converted} row(s) not converted, skipped)"
        lines = [
            f"send to {self.destination}: {self.converted} converted object(s)"
            + (skipped if self.not_converted else ""),
            f"  sent now:            {self.sent}",
            f"  already sent before: {self.already_sent}",
            f"  failed:              {self.failed}",
        ]
        lines += [f"    {kind}: {n}" for kind, n in sorted(self.failures.items())]
        if self.failed and self.error_log is not None:
            lines.append(f"  failures listed in {self.error_log}")
        return "\n".join(lines)


class _Run:
    """One send: planning, batches with retries, bookkeeping (ledger, log, bar, summary)."""

    def __init__(self, destination: Destination, ledger: SendLedger, log: IO[str],
                 summary: SendSummary, retries: int, retry_delay: float, bar) -> None:
        self.dest = destination
        self.ledger = ledger
        self.log = log
        self.summary = summary
        self.retries = retries
        self.retry_delay = retry_delay
        self.bar = bar

    def plan(self, items: Sequence[_Item]) -> list[_Item]:
        """What still needs sending: skips files the ledger has with the same size and mtime
        (a stat, not a read) and files gone since they were sent."""
        todo: list[_Item] = []
        for chunk in _chunks(items, _LOOKUP_CHUNK):
            known = self.ledger.by_path(self.dest.url, [i.path for i in chunk])
            for item in chunk:
                try:
                    st = os.stat(item.path)
                except FileNotFoundError:
                    if item.path in known:  # delivered, then removed locally: still delivered
                        self.summary.already_sent += 1
                        continue
                    item.problem = "FileMissing: no such file"
                except OSError as exc:
                    item.problem = _exc_reason("Unreadable", exc)
                else:
                    if not stat.S_ISREG(st.st_mode):
                        item.problem = "Unreadable: not a regular file"
                    item.size, item.mtime_ns = st.st_size, st.st_mtime_ns
                    if known.get(item.path) == (item.size, item.mtime_ns):
                        self.summary.already_sent += 1
                        continue
                todo.append(item)
        return todo

    def fail(self, item: _Item, reason: str) -> None:
        reason = _one_line(reason)
        self.summary.failures[reason.split(":", 1)[0]] += 1
        self.log.write(f"{_one_line(item.study_id)}\t{_one_line(item.dcm_path)}\t{reason}\n")
        self.bar.update(1)

    def succeed(self, ready: _Ready) -> None:
        self.ledger.record(self.dest.url, ready.uid, ready.item)
        self.summary.sent += 1
        self.bar.update(1)

    def inspect(self, batch: Sequence[_Item]) -> list[_Ready]:
        """Read headers; settle what needs no sending (problems, moved files, duplicates)."""
        ready: list[_Ready] = []
        in_batch: dict[str, str] = {}
        for item in batch:
            if item.problem:
                self.fail(item, item.problem)
                continue
            try:
                uid, sop_class, ts = _read_header(item.path)
            except Exception as exc:  # noqa: BLE001 - any reader failure is this object's
                self.fail(item, _exc_reason("Unreadable", exc))
                continue
            if uid in in_batch:
                self.fail(item, f"DuplicateUID: same SOP Instance UID as {in_batch[uid]}")
                continue
            previous = self.ledger.by_uid(self.dest.url, uid)
            if previous is not None and previous[0] != item.path:
                other, size, mtime_ns = previous
                if _holds_uid(other, uid):
                    self.fail(item, f"DuplicateUID: same SOP Instance UID as {other}, already sent")
                    continue
                if (size, mtime_ns) == (item.size, item.mtime_ns):
                    self.ledger.record(self.dest.url, uid, item)  # moved since it was sent
                    self.summary.already_sent += 1
                    self.bar.update(1)
                    continue
            in_batch[uid] = item.dcm_path
            ready.append(_Ready(item, uid, sop_class, ts))
        return ready

    def deliver(self, transport: _Transport, ready: Sequence[_Ready]) -> str | None:
        """Send with retries; the reason the run must stop, or None to go on."""
        pending = list(ready)
        attempt = 0
        while pending:
            attempt += 1
            try:
                outcomes = transport.send(pending)
            except _TransportError as exc:
                self._settle(pending, exc.done)
                pending = [r for r in pending if r.uid not in exc.done]
                if exc.done and isinstance(exc, _Transient):
                    attempt = 1  # progress (a dropped association): the budget is for a stall
                if isinstance(exc, _Fatal) or attempt > self.retries:
                    stop = exc.reason
                    if isinstance(exc, _Transient):
                        stop += f" (gave up after {attempt} attempt{'s' * (attempt > 1)})"
                    for r in pending:
                        self.fail(r.item, stop)
                    return stop
                time.sleep(min(MAX_BACKOFF, self.retry_delay * 2 ** (attempt - 1)))
                continue
            self._settle(pending, outcomes)
            missing = [r for r in pending if r.uid not in outcomes]
            for r in missing:  # a transport must answer for every object; be safe regardless
                self.fail(r.item, "Rejected: no outcome reported")
            pending = []
        return None

    def _settle(self, ready: Sequence[_Ready], outcomes: Mapping[str, str | None]) -> None:
        for r in ready:
            if r.uid not in outcomes:
                continue
            reason = outcomes[r.uid]
            if reason is None:
                self.succeed(r)
            else:
                self.fail(r.item, reason)


def send_run(
    output_csv: Path,
    destination: str,
    *,
    calling_aet: str = DEFAULT_AET,
    batch_size: int = DEFAULT_BATCH_SIZE,
    retries: int = DEFAULT_RETRIES,
    retry_delay: float = 1.0,
    timeout: float = DEFAULT_TIMEOUT,
    netrc_file: Path | None = None,
    error_log: Path | None = None,
    ledger_path: Path | None = None,
    study_id_col: str = "study_id",
    dcm_path_col: str = "dcm_path",
    error_col: str = "dcm_error",
    progress: bool | None = None,
    environ: Mapping[str, str] | None = None,
) -> SendSummary:
    """Send every converted object of a batch run that ``destination`` has not confirmed yet.

    ``destination`` is ``dicom://AET@HOST:PORT`` (C-STORE, calling AE ``calling_aet``) or
    ``http(s)://HOST[:PORT]/path`` (STOW-RS to that DICOMweb root). Transient failures are
    retried ``retries`` times with backoff ``retry_delay * 2**n`` seconds (at most
    ``MAX_BACKOFF``); every network wait is bounded by ``timeout``. ``progress=None`` shows
    a bar only on a terminal. Raises ``ConversionError`` for bad input (CSV, URL, options,
    credentials); failures of objects are in the summary and the error log.
    """
    from tqdm import tqdm

    output_csv = Path(output_csv)
    dest = parse_destination(destination)
    _check_aet(calling_aet, "calling AE title")
    if batch_size < 1:
        raise ConversionError(f"batch size must be at least 1, not {batch_size}")
    if retries < 0:
        raise ConversionError(f"retries must be 0 or more, not {retries}")
    if not timeout > 0:
        raise ConversionError(f"timeout must be positive, not {timeout}")
    auth = None if dest.is_dicom else dicomweb_auth(dest.host, netrc_file, environ)

    items, not_converted = _read_run(output_csv, study_id_col, dcm_path_col, error_col)
    error_log = Path(error_log) if error_log else Path(f"{output_csv}.send-errors.log")
    ledger_path = Path(ledger_path) if ledger_path else Path(f"{output_csv}.sent.sqlite")
    summary = SendSummary(dest.url, converted=len(items), not_converted=not_converted,
                          error_log=error_log, ledger=ledger_path)

    try:
        log = open(error_log, "a", encoding="utf-8")  # closed by the with below
    except OSError as exc:
        raise ConversionError(f"cannot write error log {error_log}: {exc.strerror}") from None
    ledger = SendLedger(ledger_path)
    transport: _Transport | None = None
    try:
        with log, contextlib.ExitStack() as stack:
            bar = stack.enter_context(
                tqdm(total=0, unit="obj", desc="send", file=sys.stderr, dynamic_ncols=True,
                     disable=None if progress is None else not progress)
            )
            run = _Run(dest, ledger, log, summary, retries, retry_delay, bar)
            todo = run.plan(items)
            summary.todo = len(todo)
            bar.reset(total=len(todo))
            stamp = datetime.now().astimezone().isoformat(timespec="seconds")
            log.write(f"=== SEND {stamp} | todo={len(todo)} ===\n")
            log.flush()
            if todo:
                transport = (_CStoreTransport(dest, calling_aet, timeout) if dest.is_dicom
                             else _StowTransport(dest, auth, timeout))
            stop: str | None = None
            for batch in _chunks(todo, batch_size):
                if stop is not None:
                    for item in batch:
                        run.fail(item, item.problem or stop)
                    continue
                ready = run.inspect(batch)
                if ready:
                    stop = run.deliver(transport, ready)
                ledger.commit()
                log.flush()
    finally:
        if transport is not None:
            with contextlib.suppress(Exception):
                transport.close()
        ledger.close()
    return summary


# --------------------------------------------------------------------------------------------
# command line


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {value}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``send``."""
    parser = subparsers.add_parser(
        "send",
        help="send a batch run's DICOM objects to a PACS (C-STORE) or DICOMweb server (STOW-RS)",
        description="Send every converted object of a batch run (rows of the output CSV with "
        "dcm_path set and no dcm_error) to a DICOM node by C-STORE or a DICOMweb server by "
        "STOW-RS, in batches, retrying transient failures with backoff. A ledger next to the "
        "CSV records what the destination confirmed, so running the same command again sends "
        "only the rest.",
        epilog="Credentials (DICOMweb) never go on the command line: set "
        f"{ENV_USER} and {ENV_PASSWORD}, or {ENV_TOKEN}, in the environment, or give them in "
        "a netrc file (--netrc, default ~/.netrc). Failures are listed one per line "
        "(study_id, dcm_path, reason) in the error log. Exit status: 0 when every converted "
        "object is at the destination (sent now or by an earlier run), 1 when any is not, "
        "2 for bad input (CSV, URL, options).",
    )
    parser.add_argument("--output_csv", "--output-csv", required=True, type=Path,
                        help="the batch run's output CSV (with dcm_path and dcm_error)")
    parser.add_argument("--to", required=True, metavar="URL",
                        help="dicom://AET@HOST:PORT (C-STORE) or "
                        "http(s)://HOST[:PORT]/dicom-web (STOW-RS)")
    parser.add_argument("--aet", default=DEFAULT_AET,
                        help=f"our calling AE title for C-STORE (default {DEFAULT_AET})")
    parser.add_argument("--batch-size", "--batch_size", type=_positive_int,
                        default=DEFAULT_BATCH_SIZE,
                        help=f"objects per batch; the ledger is committed after each "
                        f"(default {DEFAULT_BATCH_SIZE})")
    parser.add_argument("--retries", type=_non_negative_int, default=DEFAULT_RETRIES,
                        help=f"retries of a batch after a transient failure, with exponential "
                        f"backoff (default {DEFAULT_RETRIES})")
    parser.add_argument("--timeout", type=_positive_float, default=DEFAULT_TIMEOUT,
                        help=f"seconds to wait for a connection or an answer "
                        f"(default {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--netrc", type=Path, default=None, metavar="FILE",
                        help="netrc file with DICOMweb credentials (default ~/.netrc)")
    parser.add_argument("--error_log", "--error-log", type=Path, default=None,
                        help="failures, appended (default {output_csv}.send-errors.log)")
    parser.add_argument("--ledger", type=Path, default=None,
                        help="SQLite record of what was sent (default {output_csv}.sent.sqlite)")
    parser.add_argument("--study_id_col", default="study_id", help="default study_id")
    parser.add_argument("--dcm_path_col", default="dcm_path", help="default dcm_path")
    parser.add_argument("--error_col", default="dcm_error", help="default dcm_error")
    parser.add_argument("--no-progress", dest="progress", action="store_const", const=False,
                        default=None, help="no progress bar (default: shown on a terminal)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """The ``send`` subcommand: 0 when everything is at the destination, else 1."""
    summary = send_run(
        args.output_csv,
        args.to,
        calling_aet=args.aet,
        batch_size=args.batch_size,
        retries=args.retries,
        timeout=args.timeout,
        netrc_file=args.netrc,
        error_log=args.error_log,
        ledger_path=args.ledger,
        study_id_col=args.study_id_col,
        dcm_path_col=args.dcm_path_col,
        error_col=args.error_col,
        progress=args.progress,
    )
    print(summary.report())
    return 0 if summary.ok else 1


__all__ = [
    "Destination",
    "WAVEFORM_STORAGE_SOP_CLASSES",
    "SendLedger",
    "SendSummary",
    "dicomweb_auth",
    "parse_destination",
    "register",
    "run",
    "send_run",
]
