"""Deterministic UIDs: the same study gives the same UIDs on every run and machine."""

from __future__ import annotations

import hashlib
import re
import uuid

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


NAMESPACE = uuid.UUID("6f1f6d36-5d1c-5b0e-9d0c-776664623264")
"""Namespace of this tool's name-based UUIDs (fixed forever: changing it changes every UID)."""


_NAMESPACE_BYTES = NAMESPACE.bytes


def uuid5_int(name: str) -> int:
    """``uuid.uuid5(NAMESPACE, name).int`` without building a UUID object (3 per record).

    RFC 4122 4.3: SHA-1 of namespace + name, first 16 bytes, version 5, variant 10.
    ``tests/test_conformance.py`` proves it equal to the standard library.
    """
    digest = int.from_bytes(hashlib.sha1(_NAMESPACE_BYTES + name.encode("utf-8")).digest()[:16],
                            "big")
    return digest & _UUID_CLEAR | _UUID_SET


_UUID_CLEAR = ~(0xF000 << 64) & ~(0xC000 << 48)
"""Bits of the version and variant fields."""
_UUID_SET = (5 << 76) | (0x8000 << 48)
"""Version 5, variant 10 (RFC 4122)."""


def derive_uid(kind: str, key: str, root: str | None = None) -> str:
    """UID for ``kind`` (study, series, instance) of the study ``key``.

    Without a root: a name-based (SHA-1, version 5) UUID as ``2.25.<integer>`` (PS3.5 B.2).
    With one: pydicom's SHA-512 hash of the name under the root. Note that pydicom's
    ``generate_uid(prefix=None, entropy_srcs=...)`` ignores the entropy and is random,
    hence uuid5 here.
    """
    name = f"wfdb2dicom|{kind}|{key}"
    if root is None:
        return f"2.25.{uuid5_int(name)}"
    return str(generate_uid(prefix=check_uid_root(root) + ".", entropy_srcs=[name]))
