"""The 12-lead printout: renders, at scale, for ours and vendors' objects."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from pydicom.data import get_testdata_file

from wfdb2dicom import preview
from wfdb2dicom.convert import convert_record
from wfdb2dicom.dicom_ecg import read_dicom_ecg


@pytest.fixture(scope="module")
def objects(demo_corpus, demo_metadata, shared_data, tmp_path_factory) -> list[Path]:
    out = tmp_path_factory.mktemp("preview")
    ours = convert_record(demo_corpus.root / demo_corpus.good[0], out / "ours.dcm", demo_metadata)
    return [ours, shared_data / "dicom" / "anonymous_ecg.dcm",
            Path(get_testdata_file("waveform_ecg.dcm"))]


def test_png_and_pdf(objects: list[Path], tmp_path: Path) -> None:
    for index, dcm in enumerate(objects):
        png = preview.render_preview(dcm, tmp_path / f"{index}.png")
        image = imread(png)
        height, width = image.shape[:2]
        assert width >= 1200 and height >= 600
        grey = image[..., :3].mean(axis=2)
        assert (grey < 0.2).mean() > 0.002  # traces and text drawn in black
        pdf = preview.render_preview(dcm, tmp_path / f"{index}.pdf")
        assert pdf.read_bytes().startswith(b"%PDF")


def test_scale_is_true_paper(objects: list[Path]) -> None:
    """1 mm is the same length across and down, and 25 mm of paper is 1 s."""
    figure = preview.build_figure(read_dicom_ecg(objects[0]))
    axes = figure.axes[0]
    width_in, height_in = figure.get_size_inches()
    box = axes.get_position()
    x0, x1 = axes.get_xlim()
    y0, y1 = axes.get_ylim()
    mm_per_inch_x = (x1 - x0) / (box.width * width_in)
    mm_per_inch_y = (y1 - y0) / (box.height * height_in)
    assert mm_per_inch_x == pytest.approx(25.4, rel=1e-3)
    assert mm_per_inch_y == pytest.approx(25.4, rel=1e-3)
    assert preview.PAPER_SPEED == 25.0 and preview.PAPER_GAIN == 10.0


def test_unsupported_format_is_refused(objects: list[Path], tmp_path: Path) -> None:
    from wfdb2dicom.errors import ConversionError

    with pytest.raises(ConversionError, match="unsupported preview format"):
        preview.render_preview(objects[0], tmp_path / "x.gif")
    assert not np.any([p.suffix == ".gif" for p in tmp_path.iterdir()])
