"""The 12-lead printout: renders, at scale, for ours and vendors' objects."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from matplotlib.image import imread
from matplotlib.lines import Line2D
from pydicom.data import get_testdata_file
from pydicom.waveforms import multiplex_array

from ecg_variants import derived_object
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


# --- geometry, layout and scale, checked on the drawing itself -------------------------------

def traces(figure) -> dict[str, Line2D]:
    return {line.get_gid()[len("trace:"):]: line for line in figure.axes[0].lines
            if (line.get_gid() or "").startswith("trace:")}


def test_a_millimetre_is_square_in_pixels(mortara: Path) -> None:
    figure = preview.build_figure(read_dicom_ecg(mortara))
    axes = figure.axes[0]
    assert axes.get_gid() == "ecg-grid" and axes.get_aspect() == 1.0
    figure.canvas.draw()
    (x0, y0), (x1, y1) = axes.transData.transform([(0, 0), (1, 1)])
    assert x1 - x0 == pytest.approx(y1 - y0, rel=1e-6)
    assert x1 - x0 == pytest.approx(preview.DPI / 25.4, rel=1e-6)


def test_paper_has_1_mm_and_5_mm_lines(mortara: Path) -> None:
    axes = preview.build_figure(read_dicom_ecg(mortara)).axes[0]
    spacing = {}
    for collection in axes.collections:
        verticals = sorted({seg[0][0] for seg in collection.get_segments()
                            if seg[0][0] == seg[1][0]})
        horizontals = sorted({seg[0][1] for seg in collection.get_segments()
                              if seg[0][1] == seg[1][1]})
        spacing[collection.get_gid()] = (set(np.round(np.diff(verticals), 9)),
                                        set(np.round(np.diff(horizontals), 9)))
    assert spacing["paper:1mm"] == ({1.0}, {1.0})
    assert spacing["paper:5mm"] == ({5.0}, {5.0})


def test_standard_layout_and_25_mm_per_second(mortara: Path) -> None:
    figure = preview.build_figure(read_dicom_ecg(mortara))
    drawn = traces(figure)
    fs = 1000.0
    for row in preview.TWELVE_LEAD_ROWS:
        for column, lead in enumerate(row):
            start = column * 2.5
            line = drawn[f"{lead}:{start:g}-{start + 2.5:g}"]
            x = line.get_xdata()
            assert len(x) == 2500
            assert x[0] == pytest.approx(preview.TRACE_START + start * 25.0)
            assert np.diff(x) == pytest.approx(25.0 / fs)
    rhythm = drawn["II:0-10"]
    assert np.ptp(rhythm.get_xdata()) == pytest.approx(9.999 * 25.0)
    # a calibration pulse per row, 1 mV (10 mm) high and 0.2 s (5 mm) wide
    pulses = [line for line in figure.axes[0].lines if line.get_gid() == "calibration"]
    assert len(pulses) == 4
    for pulse in pulses:
        assert np.ptp(pulse.get_ydata()) == pytest.approx(10.0)
        assert pulse.get_xdata()[3] - pulse.get_xdata()[2] == pytest.approx(5.0)


def test_any_rate_order_and_units(mortara: Path, tmp_path: Path) -> None:
    """500 Hz, MIMIC lead order, millivolts with a baseline, V4 missing: same picture."""
    order = ["I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V5", "V6"]
    dcm = derived_object(mortara, tmp_path / "v.dcm", order=order, decimate=2, mdc=True,
                         millivolts=True, baseline_mv=0.05)
    ecg = read_dicom_ecg(dcm)
    figure = preview.build_figure(ecg)
    drawn = traces(figure)
    line = drawn["aVL:2.5-5"]
    x = line.get_xdata()
    assert len(x) == 1250 and np.diff(x) == pytest.approx(25.0 / 500)
    assert x[0] == pytest.approx(preview.TRACE_START + 2.5 * 25.0)
    # amplitude: 10 mm per mV of DICOM's physical value (less the median over the strip)
    physical = multiplex_array(pydicom.dcmread(dcm), 0, as_raw=False)[:, order.index("aVL")]
    y = np.asarray(line.get_ydata())
    expected = (physical[1250:2500] - np.median(physical[:5000])) * 10.0
    np.testing.assert_allclose(y - y[0], expected - expected[0], atol=1e-9)
    # the original (microvolt, 1000 Hz) draws the same waveform at the same place
    original = traces(preview.build_figure(read_dicom_ecg(mortara)))["aVL:2.5-5"]
    y_original = np.asarray(original.get_ydata())[::2]
    np.testing.assert_allclose(y_original - y_original[0], y - y[0], atol=1e-9)
    assert "V4:7.5-10" not in drawn
    labels = [t.get_text() for t in figure.axes[0].texts]
    assert "V4 (absent)" in labels


def test_records_without_standard_leads_are_stacked(mortara: Path, tmp_path: Path) -> None:
    dcm = derived_object(mortara, tmp_path / "s.dcm", order=["I", "II", "V1", "V5"],
                         labels=["ECG 1", "ECG 2", "ECG 3", "ECG 4"])
    figure = preview.build_figure(read_dicom_ecg(dcm))
    assert sorted(traces(figure)) == ["ECG 1:0-10", "ECG 2:0-10", "ECG 3:0-10", "ECG 4:0-10"]
    png = preview.render_preview(dcm, tmp_path / "s.png")
    height, width = imread(png).shape[:2]
    assert width >= 1200 and height >= 600


def test_paper_and_ink_are_in_the_png(mortara: Path, tmp_path: Path) -> None:
    image = imread(preview.render_preview(mortara, tmp_path / "a.png"))[..., :3]
    pink = (image[..., 0] > 0.85) & (image[..., 1] < 0.85) & (image[..., 2] < 0.9)
    assert pink.mean() > 0.02  # the grid
    assert (image.mean(axis=2) < 0.2).mean() > 0.002  # traces and text


def test_cli_preview(mortara: Path, tmp_path: Path) -> None:
    from wfdb2dicom import cli

    out = tmp_path / "median.png"
    assert cli.main(["preview", str(mortara), "-o", str(out), "--group", "2"]) == 0
    assert imread(out).shape[1] >= 1200
    assert cli.main(["preview", str(mortara), "-o", str(tmp_path / "x.jpg")]) != 0


def test_median_beat_is_drawn_whole_in_every_cell(mortara: Path) -> None:
    figure = preview.build_figure(read_dicom_ecg(mortara), group_index=1)
    drawn = traces(figure)
    for row in preview.TWELVE_LEAD_ROWS:
        for column, lead in enumerate(row):
            start = column * 2.5
            x = drawn[f"{lead}:{start:g}-{start + 2.5:g}"].get_xdata()
            assert len(x) == 1200  # the whole 1.2 s beat
            assert x[0] == pytest.approx(preview.TRACE_START + start * 25.0)


# --- every IOD the converter writes ---------------------------------------------------------


@pytest.fixture(scope="module")
def one_object_per_iod(challenge_record, physionet_dir, tmp_path_factory) -> dict[str, Path]:
    """SOP class name -> the first object of that class among the converter's outputs."""
    import datetime as dt

    from wfdb2dicom.builder import ConversionOptions
    from wfdb2dicom.convert import write_record

    out = tmp_path_factory.mktemp("preview_iods")
    options = ConversionOptions(acquisition_datetime=dt.datetime(2000, 1, 1))
    found: dict[str, Path] = {}
    for base in (challenge_record, physionet_dir / "wfdb-python/mixedsignals",
                 physionet_dir / "wfdb-python/binformats",
                 physionet_dir / "wfdb-python/multi-segment/041s/041s",
                 physionet_dir / "wfdb-python/multi-segment/s25047/s25047-2704-05-04-10-44"):
        for path in write_record(base, f"{out}/{base.name}/", options=options).paths:
            name = pydicom.dcmread(path, stop_before_pixels=True).SOPClassUID.name
            found.setdefault(name, path)
    return found


def test_every_iod_renders(one_object_per_iod: dict[str, Path], tmp_path: Path) -> None:
    """ECG objects on ECG paper; pressure, pulse and respiration as labelled strips."""
    from wfdb2dicom.iods import IODS

    assert sorted(one_object_per_iod) == sorted(f"{iod.name} Waveform Storage" for iod in IODS)
    for name, dcm in one_object_per_iod.items():
        png = preview.render_preview(dcm, tmp_path / f"{dcm.stem}.png")
        image = imread(png)
        assert image.shape[1] >= 1200 and image.shape[0] >= 600
        assert (image[..., :3].mean(axis=2) < 0.2).mean() > 0.002, name
        figure = preview.build_figure(read_dicom_ecg(dcm))
        gids = [ax.get_gid() for ax in figure.axes]
        assert (gids == ["ecg-grid"]) == ("ECG" in name), (name, gids)


def test_strips_carry_label_and_units(one_object_per_iod: dict[str, Path]) -> None:
    labels = {}
    for name in ("Hemodynamic", "Arterial Pulse", "Multi-channel Respiratory"):
        figure = preview.build_figure(read_dicom_ecg(
            one_object_per_iod[f"{name} Waveform Storage"]))
        labels[name] = [ax.get_ylabel() for ax in figure.axes]
    assert labels == {"Hemodynamic": ["ABP (mmHg)"], "Arterial Pulse": ["PLETH (arbitrary units)"],
                      "Multi-channel Respiratory": ["RESP (arbitrary units)"]}


def test_long_strip_is_reduced_for_drawing_keeping_extremes(
        one_object_per_iod: dict[str, Path]) -> None:
    """The ICU record's 5 minutes of ABP (75,000 samples, a gap) draw as at most
    STRIP_BINS min/max pairs whose extremes are the signal's."""
    dcm = one_object_per_iod["Hemodynamic Waveform Storage"]
    ds = pydicom.dcmread(dcm)
    values = multiplex_array(ds, 0, as_raw=False)[:, 0]
    raw = multiplex_array(ds, 0, as_raw=True)[:, 0]
    values = values[raw != -32768]
    (line,) = preview.build_figure(read_dicom_ecg(dcm)).axes[0].get_lines()
    drawn = np.asarray(line.get_ydata(), dtype=float)
    assert len(raw) == 75_000 and len(drawn) <= 2 * preview.STRIP_BINS + 2
    assert np.nanmin(drawn) == pytest.approx(values.min())
    assert np.nanmax(drawn) == pytest.approx(values.max())
