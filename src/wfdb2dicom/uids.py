"""Deterministic UIDs: the same study gives the same UIDs on every run and machine."""

from __future__ import annotations

import re

from pydicom.uid import generate_uid

from .errors import ConversionError

_ROOT_RE = re.compile(r"^(0|[1-9]\d*)(\.(0|[1-9]\d*))*$")
MAX_ROOT_LENGTH = 40
"""Leaves at least 23 digits of hash under the 64-character UID limit."""


def check_uid_root(root: str) -> str:
    """Validate a user's ``--uid-root`` and return it without a trailing dot."""
    root = root.strip().rstrip(".")
    if not _ROOT_RE.match(root):
        raise ConversionError(
            f"--uid-root {root!r} is not a UID root (digits and dots, e.g. 1.2.3)"
        )
    if len(root) > MAX_ROOT_LENGTH:
        raise ConversionError(f"--uid-root is {len(root)} characters; at most {MAX_ROOT_LENGTH}")
    return root


def derive_uid(kind: str, key: str, root: str | None = None) -> str:
    """UID for ``kind`` (study, series, instance) of the study ``key``.

    Without a root this is a name-based UID under ``2.25.``; with one, a hash under it
    (pydicom's ``generate_uid`` with fixed entropy sources, in both cases).
    """
    prefix = None if root is None else check_uid_root(root) + "."
    return generate_uid(prefix=prefix, entropy_srcs=["wfdb2dicom", kind, key])
