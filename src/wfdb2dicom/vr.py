"""What the value representations we write text and dates into accept: the one home of it.

Every object must pass dciodvfy (dicom3tools), which judges values by these rules:

* control characters (U+0000-U+001F, U+007F): the text VRs (ST, LT, UT) allow CR, LF, FF and
  ESC; the short string VRs (SH, LO, CS ...) allow ESC only. TAB, NUL, BEL are allowed by
  neither (PS3.5 6.2). A character a VR does not allow becomes a space: it carries no text;
* lengths are counted in bytes of the character set, UTF-8 (ISO_IR 192), not in characters:
  400 x ``心`` is 400 characters but 1,200 bytes, too long for ST's 1,024. Too long is refused
  with its reason, never cut;
* a backslash separates values in every string VR but the single-valued text VRs;
* DA and DT: dciodvfy accepts the years 1000-2999 only (measured on the Debian 2022 build:
  ``00010101``, ``09990101`` and ``30000101`` are "Character invalid for this VR").
"""

from __future__ import annotations

import datetime as dt

from pydicom.valuerep import MAX_VALUE_LEN

from .errors import ConversionError, MetadataError

MAX_BYTES: dict[str, int] = {**MAX_VALUE_LEN, "UT": 2**32 - 2}
"""Most bytes in one value, per VR: pydicom's table (SH 16, LO 64, ST 1024, LT 10240 ...)."""

TEXT_VRS = frozenset({"ST", "LT", "UT"})
"""Free text: single-valued (a backslash is text) and multi-line."""

_CONTROLS = [*range(0x20), 0x7F]
_TEXT_CONTROLS = "\r\n\f\x1b"
_STRING_CONTROLS = "\x1b"
_SPACE_FOR_TEXT = {c: " " for c in _CONTROLS if chr(c) not in _TEXT_CONTROLS}
_SPACE_FOR_STRING = {c: " " for c in _CONTROLS if chr(c) not in _STRING_CONTROLS}

DATE_YEARS = range(1000, 3000)
"""Years of a DA or DT value that dciodvfy accepts."""


def clean_controls(value: str, vr: str) -> str:
    """``value`` with each control character that ``vr`` does not allow replaced by a space.

    ``str.isprintable`` is False for any control character, so clean text costs one scan.
    """
    if value.isprintable():
        return value
    return value.translate(_SPACE_FOR_TEXT if vr in TEXT_VRS else _SPACE_FOR_STRING)


def encoded_length(value: str) -> int:
    """Bytes of ``value`` in the objects' character set (UTF-8)."""
    return len(value) if value.isascii() else len(value.encode("utf-8"))


def checked_text(value: str, vr: str, attribute: str, source: str) -> str:
    """``value`` made fit for one value of ``attribute`` (of ``vr``), or refused.

    Control characters become spaces; a value too long in bytes, or a backslash in a
    multi-valued VR, raises :class:`~wfdb2dicom.errors.MetadataError` naming ``source``.
    """
    limit = MAX_BYTES[vr]
    if value.isalnum() and value.isascii() and len(value) <= limit:
        return value  # MIMIC's ids (per record): no control, no backslash, a byte each
    value = clean_controls(value, vr)
    if (length := encoded_length(value)) > limit:
        raise MetadataError(f"{source} {_shown(value)} is longer than {attribute} ({vr}) "
                            f"allows: {length} bytes in UTF-8, at most {limit}")
    if vr not in TEXT_VRS and "\\" in value:
        raise MetadataError(f"{source} {_shown(value)} contains a backslash, which would split "
                            f"{attribute} into several values")
    return value


def checked_date(moment: dt.date, source: str,
                 error: type[ConversionError] = MetadataError) -> None:
    """Refuse a date whose year DA and DT cannot hold (as dciodvfy reads them)."""
    if moment.year not in DATE_YEARS:
        raise error(f"{source} {moment.isoformat()} is outside the years "
                    f"{DATE_YEARS.start}-{DATE_YEARS.stop - 1} that validators (dciodvfy) accept "
                    "in DICOM dates")


def _shown(value: str, limit: int = 40) -> str:
    """``value`` for a one-line message: quoted, and cut (saying so) when long."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value)} characters)"
