"""The fast encoder is byte-identical to pydicom's writer on every record we convert."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from wfdb2dicom.builder import ConversionOptions, plan_object
from wfdb2dicom.convert import convert_to_bytes, encode_dataset
from wfdb2dicom.encoder import encode_plan
from wfdb2dicom.reader import read_record

OPTION_SETS = [
    ConversionOptions(),
    ConversionOptions(annotations=False),
    ConversionOptions(uid_root="1.2.826.0.1.3680043.10.543"),
]


def assert_identical(fast: bytes, reference: bytes, what: str) -> None:
    if fast != reference:
        at = next((i for i, (a, b) in enumerate(zip(fast, reference, strict=False)) if a != b),
                  min(len(fast), len(reference)))
        pytest.fail(f"{what}: fast encoder differs at byte {at} "
                    f"(lengths {len(fast)} vs {len(reference)})")


@pytest.mark.parametrize("options", OPTION_SETS, ids=["default", "no-annotations", "uid-root"])
def test_demo_corpus(demo_corpus, demo_metadata, options) -> None:
    for rel in demo_corpus.good:
        record = read_record(demo_corpus.root / rel)
        plan = plan_object(record, demo_metadata.get(Path(rel).name), options=options)
        assert_identical(encode_plan(plan), encode_dataset(plan.to_dataset()), rel)


def test_convert_to_bytes_uses_equal_fast_path(demo_corpus, demo_metadata) -> None:
    from wfdb2dicom.convert import record_to_dataset

    for rel in demo_corpus.good:
        metadata = demo_metadata.get(Path(rel).name)
        fast = convert_to_bytes(demo_corpus.root / rel, metadata)
        reference = encode_dataset(record_to_dataset(demo_corpus.root / rel, metadata))
        assert_identical(fast, reference, rel)


@pytest.mark.parametrize("name", ["100", "3000003_0003", "s0010_re", "test01_00s"])
def test_real_recordings(physionet_dir: Path, name: str) -> None:
    """Every layout: other formats, IODs, units, baselines, comments with age and sex."""
    options = ConversionOptions(acquisition_datetime=dt.datetime(2001, 2, 3, 4, 5, 6, 789000))
    record = read_record(physionet_dir / name)
    plan = plan_object(record, None, options=options)
    assert_identical(encode_plan(plan), encode_dataset(plan.to_dataset()), name)


def test_non_ascii_text_and_odd_lengths(demo_corpus, demo_metadata) -> None:
    """UTF-8 text (ISO_IR 192) and odd-length values are padded as pydicom pads them."""
    rel = demo_corpus.good[0]
    metadata = demo_metadata.get(Path(rel).name)._replace(
        cart_id="Kärt 7", reports=("Rythme sinusal — normal", "odd", "é\\\\x"))
    plan = plan_object(read_record(demo_corpus.root / rel), metadata)
    assert_identical(encode_plan(plan), encode_dataset(plan.to_dataset()), rel)


def test_plan_lists_attributes_in_tag_order(demo_corpus, demo_metadata, physionet_dir) -> None:
    """The fast encoder relies on it instead of sorting (optional attributes included:
    Station Name from the demo's cart_id, Patient Age and Sex from PhysioNet comments)."""
    from pydicom.datadict import tag_for_keyword

    options = ConversionOptions(acquisition_datetime=dt.datetime(2001, 2, 3))
    records = [(read_record(demo_corpus.root / rel), demo_metadata.get(Path(rel).name))
               for rel in demo_corpus.good[:3]]
    records += [(read_record(physionet_dir / name), None) for name in ("s0010_re", "100")]
    keywords_seen = set()
    for record, metadata in records:
        plan = plan_object(record, metadata, options=options)
        tags = [tag_for_keyword(keyword) for keyword, _ in plan.attributes]
        assert tags == sorted(tags), [keyword for keyword, _ in plan.attributes]
        assert tags[-1] < 0x00400555  # before the sequences the encoder appends
        keywords_seen.update(keyword for keyword, _ in plan.attributes)
    assert {"StationName", "PatientAge"} <= keywords_seen


def test_stage_by_stage_conversion_equals_one_at_a_time(demo_corpus, demo_metadata,
                                                       tmp_path) -> None:
    """``convert_many_to_parts`` gives each record what ``convert_to_bytes`` gives it; a
    record that fails gets its own exception and the others go on; ``before`` names the
    record of every step (the batch's heartbeat)."""
    from wfdb2dicom.convert import convert_many_to_parts
    from wfdb2dicom.errors import RecordError

    good = [demo_corpus.root / rel for rel in demo_corpus.good[:4]]
    jobs = [(path, demo_metadata.get(path.name), None) for path in good]
    jobs.insert(2, (tmp_path / "missing", None, None))
    steps: list[int] = []
    results = convert_many_to_parts(jobs, before=steps.append)
    assert isinstance(results[2], RecordError) and "missing header" in str(results[2])
    for (path, metadata, _), result in zip(jobs, results, strict=True):
        if path.name != "missing":
            assert_identical(b"".join(result.single_parts()), convert_to_bytes(path, metadata),
                             path.name)
    # read, map, check and encode for each good record; only the read for the missing one
    assert steps == [0, 1, 2, 3, 4] + [0, 1, 3, 4] * 3


WHEN = dt.datetime(2000, 1, 1)


def test_encoder_byte_identical_on_every_object(challenge_record: Path, uterine_record: Path,
                                                physionet_dir: Path) -> None:
    """The fast encoder equals pydicom's writer on every IOD, SL samples included."""
    from wfdb2dicom.builder import plan_record
    from wfdb2dicom.reader import read_segments

    records = [challenge_record, uterine_record,
               physionet_dir / "wfdb-python/binformats", physionet_dir / "wfdb-python/mixedsignals",
               physionet_dir / "wfdb-python/multi-segment/041s/041s",
               physionet_dir / "wfdb-python/test_generator_2"]
    seen = set()
    for options in (ConversionOptions(acquisition_datetime=WHEN),
                    ConversionOptions(acquisition_datetime=WHEN, max_duration=7)):
        for record in records:
            for segment in read_segments(record):
                plan = plan_record(segment.record, options=options, segment=segment)
                for obj in plan.objects:
                    assert encode_plan(obj.plan) == encode_dataset(obj.plan.to_dataset()), (
                        record.name, obj.iod_key, obj.part)
                    seen.add((obj.iod_key, obj.plan.groups[0].interpretation))
    assert {"ecg12", "ecg", "ecg32", "hd", "pulse", "resp", "respmulti"} <= {k for k, _ in seen}
    assert ("ecg32", "SL") in seen


def test_attribute_layout_is_checked(demo_corpus, demo_metadata) -> None:
    """The fast encoder refuses attributes it would write wrong: out of tag order, a VR it
    does not write as text, or after the sequences it appends."""
    from wfdb2dicom.object_plan import check_attribute_layout

    rel = demo_corpus.good[0]
    plan = plan_object(read_record(demo_corpus.root / rel), demo_metadata.get(Path(rel).name))
    swapped = (plan.attributes[1], plan.attributes[0], *plan.attributes[2:])
    with pytest.raises(ValueError, match="out of tag order"):
        encode_plan(plan._replace(attributes=swapped))
    with pytest.raises(ValueError, match="VR US"):
        check_attribute_layout(("SpecificCharacterSet", "Rows"))
    with pytest.raises(ValueError, match="after the sequences"):
        check_attribute_layout(("SpecificCharacterSet", "ContentLabel"))
