"""MIMIC-IV-ECG's ``machine_measurements.csv`` (and the seed's df_info pickle of it).

Its mapping is :meth:`StudyMetadata.from_values <wfdb2dicom.metadata.StudyMetadata.from_values>`,
unchanged, so MIMIC-IV-ECG's objects stay byte-identical.
"""

from __future__ import annotations

from ..metadata import COLUMNS, StudyMetadata
from . import MetadataSource

MIMIC_IV_ECG = MetadataSource(
    name="mimic",
    title="MIMIC-IV-ECG machine_measurements.csv",
    key_column="study_id",
    columns=COLUMNS,
    signature=frozenset({"study_id"}),
    from_values=StudyMetadata.from_values,
)
