"""The fast path to bytes: an ObjectPlan encoded without building a pydicom Dataset.

Everything that is the same for every record of a layout (the Waveform Sequence around the
sample bytes: twelve channel definitions with their code sequences) is encoded once by
pydicom and kept as bytes; annotation items, which repeat across records (MIMIC has a few
thousand distinct statements and measurement values), are encoded by pydicom on first sight
and cached. What is left per record, the short text attributes, is written here.

The output is byte-identical to ``ObjectPlan.to_dataset().save_as(...)``;
``tests/test_encoder.py`` proves it on every record the test suite converts.
"""

from __future__ import annotations

import struct
from functools import cache, lru_cache
from operator import itemgetter

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian

from .object_plan import (
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    AnnotationItem,
    GroupLayout,
    ObjectPlan,
    annotation_item,
    check_attribute_layout,
    group_item,
)

PREAMBLE = b"\0" * 128 + b"DICM"
_LONG_LENGTH_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
_ITEM = struct.Struct("<HHI")
_SHORT_HEADER = struct.Struct("<HH2sH")
_LONG_HEADER = struct.Struct("<HH2sHI")
ACQUISITION_CONTEXT_TAG = 0x00400555
WAVEFORM_ANNOTATION_TAG = 0x0040B020
WAVEFORM_SEQUENCE_TAG = 0x54000100


@cache
def _tag_and_vr(keyword: str) -> tuple[int, str]:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return tag, dictionary_VR(tag)


def encode_text_element(tag: int, vr: str, value: str) -> bytes:
    """Explicit VR Little Endian encoding of a single-valued text element, as pydicom does.

    UTF-8 (the object's character set is ISO_IR 192), padded to even length with NUL for UI
    and a space otherwise.
    """
    raw = value.encode("utf-8")
    head, length, padding = _element_head(tag, vr)
    if len(raw) % 2:
        raw += padding
    return head + length.pack(len(raw)) + raw


_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")


@cache
def _element_head(tag: int, vr: str) -> tuple[bytes, struct.Struct, bytes]:
    """(tag and VR bytes [+ reserved], length format, padding byte) of an element."""
    head = struct.pack("<HH2s", tag >> 16, tag & 0xFFFF, vr.encode())
    if vr in _LONG_LENGTH_VRS:
        return head + b"\0\0", _U32, b" "
    return head, _U16, b"\0" if vr == "UI" else b" "


TEXT_ENCODING = ["utf_8"]
"""Python codec of the objects' Specific Character Set, ISO_IR 192."""


def _pydicom_element_bytes(ds: Dataset) -> bytes:
    """Bytes of the elements of ``ds`` (no preamble, no meta) as pydicom writes them.

    Encoded as a nested item of our objects is: in UTF-8, the top-level character set.
    """
    buffer = DicomBytesIO()
    buffer.is_little_endian = True
    buffer.is_implicit_VR = False
    write_dataset(buffer, ds, parent_encoding=TEXT_ENCODING)
    return buffer.getvalue()


def _sequence_bytes(tag: int, items: list[bytes]) -> bytes:
    """A defined-length sequence of already-encoded items (each with its item header)."""
    body = b"".join(items)
    return _LONG_HEADER.pack(tag >> 16, tag & 0xFFFF, b"SQ", 0, len(body)) + body


def _item(content: bytes) -> bytes:
    """A defined-length item (pydicom's layout) around encoded content."""
    return _ITEM.pack(0xFFFE, 0xE000, len(content)) + content


_templates: dict[tuple[int, ...], tuple[tuple[GroupLayout, ...], tuple[bytes, ...]]] = {}


def _waveform_template(groups: tuple[GroupLayout, ...]) -> tuple[bytes, ...]:
    """The template for ``groups``, cached by the identity of the layouts.

    ``builder.group_layout`` hands out one object per layout, so identity finds the
    template without hashing twelve channel definitions per record; the cache keeps the
    layouts alive, so an id cannot be reused for another layout while its entry exists.
    """
    key = tuple(map(id, groups))
    cached = _templates.get(key)
    if cached is None or cached[0] != groups:
        if len(_templates) >= 256:
            _templates.clear()
        cached = _templates[key] = (groups, _make_waveform_template(groups))
    return cached[1]


def _make_waveform_template(groups: tuple[GroupLayout, ...]) -> tuple[bytes, ...]:
    """The Waveform Sequence split around each group's sample bytes.

    Returns ``(before_1, between_1_2, ..., after_n)``: the sample bytes of group i go after
    the i-th piece. Made by letting pydicom encode the sequence with zeroed samples and
    cutting out the samples, which always end their item (Waveform Data has the highest tag).
    """
    import numpy as np

    ds = Dataset()
    ds.WaveformSequence = DicomSequence(
        [group_item(g, np.zeros((g.n_samples, g.n_channels), g.dtype)) for g in groups]
    )
    encoded = _pydicom_element_bytes(ds)
    pieces, start, position = [], 0, 12  # SQ header: tag, VR, reserved, 4-byte length
    for group in groups:
        _, _, item_length = _ITEM.unpack_from(encoded, position)
        item_end = position + 8 + item_length
        data_start = item_end - group.n_samples * group.n_channels * group.dtype.itemsize
        pieces.append(encoded[start:data_start])
        start = position = item_end
    pieces.append(encoded[start:])
    return tuple(pieces)


NUMERIC_VALUE_TAG = 0x0040A30A
UNFORMATTED_TEXT_TAG = 0x00700006


@lru_cache(maxsize=65536)
def _annotation_item_bytes(annotation: AnnotationItem) -> bytes:
    """An item, header included: pydicom's encoding of what is constant, plus the value.

    The value element (Numeric Value, or Unformatted Text Value) has the highest tag of its
    item, so it comes last: everything before it is the same for every item of a concept and
    is encoded once by pydicom; tests prove the result identical to pydicom's whole item.
    """
    if annotation.code is not None:  # a coded statement: few distinct, encoded whole
        return _item(_pydicom_element_bytes(annotation_item(annotation)))
    if annotation.concept is not None:
        prefix = _item_prefix(annotation._replace(numeric_value="0"), NUMERIC_VALUE_TAG, "DS")
        return _item(prefix + encode_text_element(NUMERIC_VALUE_TAG, "DS",
                                                  annotation.numeric_value))
    prefix = _item_prefix(annotation._replace(text="0"), UNFORMATTED_TEXT_TAG, "ST")
    return _item(prefix + encode_text_element(UNFORMATTED_TEXT_TAG, "ST", annotation.text))


@lru_cache(maxsize=256)
def _item_prefix(placeholder: AnnotationItem, value_tag: int, vr: str) -> bytes:
    """pydicom's encoding of ``placeholder`` (value "0") without its last element."""
    encoded = _pydicom_element_bytes(annotation_item(placeholder))
    last = encode_text_element(value_tag, vr, "0")
    if not encoded.endswith(last):  # the value element must be the item's last
        raise AssertionError(f"annotation item does not end with ({value_tag:08X})")
    return encoded[: -len(last)]


@lru_cache(maxsize=16)
def _empty_sequence(tag: int) -> bytes:
    return _LONG_HEADER.pack(tag >> 16, tag & 0xFFFF, b"SQ", 0, 0)


@lru_cache(maxsize=16)
def _file_meta_parts(sop_class_uid: str) -> tuple[bytes, bytes]:
    """The file meta around the SOP Instance UID: (before it, after it)."""
    before = (_LONG_HEADER.pack(0x0002, 0x0001, b"OB", 0, 2) + b"\0\1"
              + encode_text_element(0x00020002, "UI", sop_class_uid))
    after = (encode_text_element(0x00020010, "UI", ExplicitVRLittleEndian)
             + encode_text_element(0x00020012, "UI", IMPLEMENTATION_CLASS_UID)
             + encode_text_element(0x00020013, "SH", IMPLEMENTATION_VERSION_NAME))
    return before, after


def _file_meta_bytes(sop_class_uid: str, sop_instance_uid: str) -> bytes:
    before, after = _file_meta_parts(sop_class_uid)
    body = before + encode_text_element(0x00020003, "UI", sop_instance_uid) + after
    return _SHORT_HEADER.pack(0x0002, 0x0000, b"UL", 4) + struct.pack("<I", len(body)) + body


PER_RECORD_KEYWORDS = frozenset((
    "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "StudyID", "PatientID",
    "StudyTime", "ContentTime", "AcquisitionDateTime",
))
"""Attributes whose values (almost) never repeat: caching them would only churn the cache."""


class _EncodedAttributes(dict):
    """``(keyword, value) -> element bytes``, filled as attributes are first seen.

    A hit is a look-up in C (``map`` over the plan's attributes calls no Python code); a miss
    encodes the element, and keeps it unless its keyword is one of
    :data:`PER_RECORD_KEYWORDS`: values that repeat across records (character set, SOP
    class, empty Type 2 attributes, dates of a busy day) are encoded once.
    """

    MAX = 4096

    def __missing__(self, attribute: tuple[str, str]) -> bytes:
        keyword, value = attribute
        # encode_text_element's body, with the head found by keyword in one cached call:
        # calling it instead cost 21k more instructions per MIMIC record (~9 misses each).
        head, length, padding = _keyword_head(keyword)
        raw = value.encode("utf-8")
        if len(raw) % 2:
            raw += padding
        encoded = head + length.pack(len(raw)) + raw
        if keyword not in PER_RECORD_KEYWORDS:
            if len(self) >= self.MAX:
                self.clear()
            self[attribute] = encoded
        return encoded


_encoded_attributes = _EncodedAttributes()


@cache
def _keyword_head(keyword: str) -> tuple[bytes, struct.Struct, bytes]:
    """:func:`_element_head` by keyword (as :func:`encode_text_element` encodes)."""
    return _element_head(*_tag_and_vr(keyword))


_KEYWORD = itemgetter(0)
"""An attribute's keyword: its keywords taken out in C (a comprehension over ~22
attributes cost ~4% of a MIMIC record's work)."""


def encode_plan(plan: ObjectPlan) -> bytes:
    """The Part 10 file for ``plan``, byte-identical to pydicom's ``save_as``."""
    return b"".join(encode_plan_parts(plan))


def encode_plan_parts(plan: ObjectPlan) -> list[bytes | memoryview]:
    """The file of :func:`encode_plan` in pieces (bytes, or flat byte views of the samples,
    not copied): for a gathered write (``os.writev``), which saves one copy of the samples.

    The plan lists its attributes in tag order, and all of them come before the three
    sequences (Acquisition Context, Waveform Annotation, Waveform), so nothing is sorted;
    that, and their VRs, is checked once per layout of attributes.
    """
    check_attribute_layout(tuple(map(_KEYWORD, plan.attributes)))
    template = _waveform_template(plan.groups)
    parts: list[bytes | memoryview] = [
        PREAMBLE, _file_meta_bytes(plan.sop_class_uid, plan.sop_instance_uid)]
    parts += map(_encoded_attributes.__getitem__, plan.attributes)
    parts.append(_empty_sequence(ACQUISITION_CONTEXT_TAG))
    if plan.annotations:
        items = [_annotation_item_bytes(a) for a in plan.annotations]
        parts.append(_sequence_bytes(WAVEFORM_ANNOTATION_TAG, items))
    for piece, samples, group in zip(template, plan.samples, plan.groups, strict=False):
        parts.append(piece)
        parts.append(memoryview(samples.astype(group.dtype, copy=False)).cast("B")
                     if samples.flags.c_contiguous else samples.astype(group.dtype).tobytes())
    parts.append(template[-1])
    return parts
