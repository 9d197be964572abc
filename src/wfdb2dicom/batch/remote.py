"""Records and objects in object storage: ``--wfdb_dir``/``--dcm_dir`` as fsspec URLs.

Only runs given a URL (``s3://``, ``gs://``, ``http(s)://``, ...) come here; ``file://`` is
a local path and takes the local fast path (:class:`~.paths.Layout`), which never imports
fsspec.

* **Reading** (:class:`RemoteLayout`): a worker copies each record's files (its header,
  then the signal files the header names; a multi-segment record's segments too) into a
  staging directory of its own, and the one converter reads that copy as it reads any local
  record: every format, the same bytes out. Staged files are removed after each chunk.
  File names come from the header, which is data: a name with a separator or ``..`` is
  refused (:class:`~.paths.UnsafePath`), so nothing is read from outside ``--wfdb_dir``.
* **Writing**: one ``put`` per object (``pipe_file``): an object store's put is atomic, so
  an object is whole or absent. ``http(s)://`` is read-only.
* **Resume** trusts the ledger (no ``HEAD`` per object: 800,000 requests);
  ``--verify-existing`` re-reads every object.
* **Credentials** come from the provider's own chain (environment, config files, instance
  roles); ``--anon`` reads public buckets without any.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from typing import Any

from ..errors import ConversionError
from .paths import Layout, UnsafePath

READ_ONLY_SCHEMES = ("http", "https")


class StoreError(ConversionError):
    """An object store or web server failed a request (unreachable, denied, throttled)."""

    @classmethod
    def of(cls, action: str, url: str, exc: BaseException) -> StoreError:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        return cls(f"cannot {action} {url}: {type(exc).__name__}: {detail}")


def is_url(location: str | os.PathLike[str]) -> bool:
    """Whether a flag's value names a remote location (``scheme://``, ``file://`` aside)."""
    text = os.fspath(location)
    return "://" in text and not text.startswith("file://")


def local_path(location: str) -> str:
    """``file:///x/y`` -> ``/x/y``; anything else unchanged."""
    return location[len("file://"):] if location.startswith("file://") else location


def filesystem(url: str, anon: bool) -> tuple[Any, str]:
    """The fsspec filesystem of ``url`` and the path within it; a one-line reason when the
    extra that brings it is missing."""
    from .dask_pool import DASK_EXTRA

    try:
        import fsspec
    except ImportError:
        from . import BatchError

        raise BatchError(f"URLs need fsspec: pip install 'wfdb2dicom[{DASK_EXTRA}]'") from None
    scheme = url.split("://", 1)[0]
    options = {"anon": True} if anon and scheme in ("s3", "s3a", "gs", "gcs") else {}
    try:
        return fsspec.core.url_to_fs(url, **options)
    except ImportError as exc:
        from . import BatchError

        raise BatchError(f"{scheme}:// needs {exc.name or 'its fsspec backend'}: "
                         f"pip install 'wfdb2dicom[{DASK_EXTRA}]'") from None


def fetch_to_local(url: str, anon: bool, directory: str) -> str:
    """Copy one object (the input CSV, the metadata table) to ``directory``; its path."""
    fs, path = filesystem(url, anon)
    target = os.path.join(directory, os.path.basename(path.rstrip("/")) or "input")
    try:
        fs.get_file(path, target)
    except Exception as exc:  # botocore, aiohttp and fsspec raise many types
        raise StoreError.of("read", url, exc) from None
    return target


def put_object(url: str, anon: bool, data: bytes) -> None:
    """Write one object with one put (atomic on an object store)."""
    fs, path = filesystem(url, anon)
    try:
        fs.pipe_file(path, data)
    except Exception as exc:
        raise StoreError.of("write", url, exc) from None


def _safe_name(name: str, record: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
        raise UnsafePath(f"{record}: the header names the file {name!r}, which would be read "
                         "outside the record's directory")
    return name


class RemoteLayout(Layout):
    """A :class:`~.paths.Layout` whose ``--wfdb_dir`` and/or ``--dcm_dir`` is a URL."""

    def __init__(self, wfdb_dir: str, dcm_dir: str, *, anon: bool = False) -> None:
        self.remote_input = is_url(wfdb_dir)
        self.remote_output = is_url(dcm_dir)
        self.anon = anon
        self.wfdb_url = wfdb_dir.rstrip("/") if self.remote_input else None
        self.dcm_url = dcm_dir.rstrip("/") if self.remote_output else None
        if self.dcm_url and self.dcm_url.split("://", 1)[0] in READ_ONLY_SCHEMES:
            from . import BatchError

            raise BatchError(f"--dcm_dir {dcm_dir}: http(s) is read-only; write to a "
                             "directory, s3:// or gs://")
        stage = os.path.join(tempfile.gettempdir(), f"wfdb2dicom-stage-{uuid.uuid4().hex}")
        super().__init__(stage if self.remote_input else wfdb_dir,
                         os.devnull if self.remote_output else dcm_dir)
        if self.remote_input:
            self.wfdb_shown = self.wfdb_url
        if self.remote_output:
            self.dcm_shown = self.dcm_url
            self._shown_prefix = self.dcm_url + "/"
        self._fs: dict[str, tuple[Any, str]] = {}
        self._staged: list[str] = []

    def __getstate__(self) -> dict[str, object]:
        state = super().__getstate__()
        state["_fs"], state["_staged"] = {}, []
        return state

    def _filesystem(self, url: str) -> tuple[Any, str]:
        if url not in self._fs:
            self._fs[url] = filesystem(url, self.anon)
        return self._fs[url]

    @property
    def trusts_ledger(self) -> bool:
        """Resume believes the ledger about outputs without a request per object."""
        return self.remote_output

    # -- outputs ------------------------------------------------------------------------

    def output_path(self, rel: str) -> str:
        if self.remote_output:
            return f"{self.dcm_url}/{rel}.dcm"
        return super().output_path(rel)

    def output(self, rel: str) -> str:
        if self.remote_output:
            return self.output_path(rel)  # rel is lexically clean: the key stays below
        return super().output(rel)

    def write(self, rel: str, parts: Sequence[bytes | memoryview], tag: str) -> None:
        """Write record ``rel``'s object: one put (atomic), or temp + rename locally."""
        if not self.remote_output:
            from ..convert import write_atomic

            write_atomic(self.output(rel), parts, tag=tag)
            return
        fs, root = self._filesystem(self.dcm_url)
        try:
            fs.pipe_file(f"{root.rstrip('/')}/{rel}.dcm", b"".join(parts))
        except Exception as exc:
            raise StoreError.of("write", self.output_path(rel), exc) from None

    def read_output(self, rel: str) -> bytes:
        """An existing output's bytes (``--verify-existing``)."""
        if not self.remote_output:
            with open(self.output_path(rel), "rb") as handle:
                return handle.read()
        fs, root = self._filesystem(self.dcm_url)
        return fs.cat_file(f"{root.rstrip('/')}/{rel}.dcm")

    # -- inputs -------------------------------------------------------------------------

    def record_base(self, rel: str) -> str:
        if not self.remote_input:
            return super().record_base(rel)
        from ..header import MultiSegmentHeader, read_any_header

        stage = os.path.join(self.wfdb_root, str(os.getpid()), uuid.uuid4().hex)
        os.makedirs(stage)
        self._staged.append(stage)
        folder, _, name = rel.rpartition("/")
        fs, root = self._filesystem(self.wfdb_url)
        remote_dir = f"{root.rstrip('/')}/{folder}" if folder else root.rstrip("/")
        base = os.path.join(stage, name)

        def get(file_name: str) -> None:
            target = os.path.join(stage, _safe_name(file_name, rel))
            if not os.path.exists(target):
                try:
                    fs.get_file(f"{remote_dir}/{file_name}", target)
                except FileNotFoundError:
                    pass  # the reader reports the missing file as for a local record
                except Exception as exc:
                    raise StoreError.of("read", f"{self.wfdb_url}/{folder}/{file_name}",
                                        exc) from None

        get(f"{name}.hea")
        try:
            header = read_any_header(base + ".hea", self.open_input)
        except Exception:
            return base  # the reader reports it, as for a local record
        if isinstance(header, MultiSegmentHeader):
            for segment, _ in header.segments:
                if segment == "~":
                    continue
                get(f"{segment}.hea")
                try:
                    names = read_any_header(os.path.join(stage, f"{segment}.hea"),
                                            self.open_input).file_names
                except Exception:
                    continue
                for file_name in dict.fromkeys(names):
                    get(file_name)
        else:
            for file_name in dict.fromkeys(header.file_names):
                get(file_name)
        return base

    def release(self) -> None:
        """Remove the records staged so far (called after each chunk)."""
        for stage in self._staged:
            shutil.rmtree(stage, ignore_errors=True)
        self._staged.clear()
