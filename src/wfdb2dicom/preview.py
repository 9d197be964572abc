"""``wfdb2dicom preview``: draw a DICOM ECG as the familiar 12-lead printout.

The point of a preview is that a clinician can look at a converted object and see the ECG
they know, at the scale they read it: 25 mm/s and 10 mm/mV on 1 mm / 5 mm paper. So the
drawing is done in millimetres: one axes whose data units are paper millimetres, placed on an
A4-landscape figure at exactly its printed size, with an equal aspect. A PDF printed at 100 %
is true to scale; a PNG has the same number of pixels per millimetre across and down.

Layout (what carts print): three rows of four 2.5 s columns, each column the next 2.5 s of
the recording (I/II/III, then aVR/aVL/aVF, V1-V3, V4-V6), a 10 s lead II rhythm strip below,
a 1 mV calibration pulse at the start of each row. Leads are found by name, so any lead order
and any sampling rate draw correctly; a record without the standard leads is drawn as stacked
full-length strips instead.

Objects of the other waveform IODs (Hemodynamic, Arterial Pulse, Respiratory) have no paper
convention: each channel gets a strip chart of the whole object, labelled with its name and
units (mmHg, arbitrary units...), scaled to its own range. A long object is reduced for
drawing only, to each pixel column's minimum and maximum, so peaks survive and an hour of a
pressure signal draws as fast as a minute.
"""

from __future__ import annotations

import argparse
import math
import sys
import textwrap
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from .dicom_ecg import DicomChannel, DicomEcg, DicomGroup, lead_name, read_dicom_ecg
from .errors import ConversionError
from .iods import by_sop_class
from .leads import normalise_lead_name
from .signal_classes import NO_UNITS, SignalClass, wfdb_units

PAPER_SPEED = 25.0
"""mm per second."""
PAPER_GAIN = 10.0
"""mm per mV."""
PAGE_WIDTH = 297.0
"""A4 landscape, mm."""
PAGE_HEIGHT = 210.0
DPI = 150
"""PNG resolution: 5.9 pixels per mm, so 1 mm squares stay visible; 1754 x 1240 pixels."""

GRID_LEFT = 16.0
"""Page position of the grid's lower-left corner, mm."""
GRID_BOTTOM = 10.0
GRID_WIDTH = 265.0
TRACE_START = 10.0
"""Grid x where 0 s is drawn; the calibration pulse sits before it."""
ROW_PITCH = 35.0
STACKED_PITCH = 30.0
MAX_MARGIN = 45.0
"""Most room above the first / below the last zero line, mm; larger excursions are clipped."""
HEADER_LINES = 12
"""Most text lines in a header column."""
HEADER_LINE = 3.6
"""mm per header text line (7.5 pt at 1.35 line spacing)."""
MIN_PAGE_HEIGHT = 105.0
"""At least 600 pixels high at DPI."""
COLUMN_SECONDS = 2.5
STRIP_SECONDS = 10.0

TWELVE_LEAD_ROWS = (
    ("I", "aVR", "V1", "V4"),
    ("II", "aVL", "V2", "V5"),
    ("III", "aVF", "V3", "V6"),
)
RHYTHM_LEAD = "II"
MIN_STANDARD_LEADS = 6
"""Fewer of the 12 standard leads than this and the record is drawn as stacked strips."""

PAPER_COLOUR = "#fff5f5"
MINOR_COLOUR = "#f6c8cc"
MAJOR_COLOUR = "#e58a94"
TRACE_COLOUR = "black"
FORMATS = ("png", "pdf", "svg")

STRIP_HEIGHT = 32.0
"""mm per channel of a strip chart (non-ECG objects)."""
STRIP_BINS = 2000
"""Most (min, max) pairs drawn per strip: more than the PNG has pixel columns in a strip."""

_MV_PER_UNIT = {"uV": 1e-3, "µV": 1e-3, "mV": 1.0, "V": 1e3, "nV": 1e-6}
"""UCUM voltage units -> mV. Paper gain is defined in mm/mV, so everything is drawn in mV."""


@dataclass(frozen=True)
class _Row:
    """One horizontal band of the grid: the y of its zero line and what to draw in it."""

    centre: float
    cells: tuple[tuple[str, int | None, float, float], ...]
    """(label, channel index or None if missing, start s, end s) per cell."""


def render_preview(
    dcm_path: str | Path, out_path: str | Path, group_index: int | None = None
) -> Path:
    """Draw ``dcm_path`` into ``out_path`` (.png, .pdf or .svg); returns ``out_path``."""
    dcm_path, out_path = Path(dcm_path), Path(out_path)
    fmt = out_path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ConversionError(
            f"unsupported preview format {out_path.suffix or '(none)'!r}: use .png, .pdf or .svg"
        )
    ecg = read_dicom_ecg(dcm_path)
    figure = build_figure(ecg, group_index=group_index, source_name=dcm_path.name)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_path, format=fmt, dpi=DPI, facecolor="white")
    return out_path


def build_figure(
    ecg: DicomEcg, group_index: int | None = None, source_name: str = ""
) -> Figure:
    """The printout as a matplotlib Figure (no pyplot, so no global state and no screen).

    The grid axes (``figure.axes[0]``, gid ``ecg-grid``) has paper millimetres as data units.
    """
    group = _choose_group(ecg, group_index)
    if not _is_ecg(ecg, group):
        return _strip_chart(ecg, group, source_name)
    signals = [_millivolts(group, c) for c in range(len(group.channels))]
    names = [lead_name(c) or f"channel {n}" for n, c in enumerate(group.channels, start=1)]
    by_name = {normalise_lead_name(name): i for i, name in reversed(list(enumerate(names)))}
    n_standard = sum(normalise_lead_name(lead) in by_name for row in TWELVE_LEAD_ROWS
                     for lead in row)
    twelve_lead = n_standard >= MIN_STANDARD_LEADS
    if twelve_lead:
        bands, pitch = _twelve_lead_bands(by_name, names), ROW_PITCH
    else:
        bands, pitch = _stacked_bands(names), STACKED_PITCH
    rows, grid_height = _place_rows(bands, pitch, signals, group.sampling_frequency)
    columns = _header_columns(ecg, source_name)
    page_height = max(MIN_PAGE_HEIGHT, GRID_BOTTOM + grid_height + _header_height(columns))
    if twelve_lead:  # an ordinary 12-lead ECG fills an A4 page at true scale
        page_height = max(page_height, PAGE_HEIGHT)

    figure = Figure(figsize=(PAGE_WIDTH / 25.4, page_height / 25.4), dpi=DPI)
    FigureCanvasAgg(figure)
    ax = figure.add_axes(
        (GRID_LEFT / PAGE_WIDTH, GRID_BOTTOM / page_height,
         GRID_WIDTH / PAGE_WIDTH, grid_height / page_height),
        gid="ecg-grid",
    )
    ax.set_xlim(0, GRID_WIDTH)
    ax.set_ylim(0, grid_height)
    ax.set_aspect("equal", adjustable="box")
    ax.set_facecolor(PAPER_COLOUR)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_color(MAJOR_COLOUR)
    _draw_paper(ax, GRID_WIDTH, grid_height)

    fs = group.sampling_frequency
    # A group no longer than a column (a median beat) is drawn whole in every cell, as carts
    # print median beats; a longer one runs on from column to column, as a rhythm does.
    whole_in_each_cell = twelve_lead and group.duration <= COLUMN_SECONDS
    for row in rows:
        _draw_calibration(ax, row.centre)
        for number, (label, channel, start, end) in enumerate(row.cells):
            x_start = TRACE_START + start * PAPER_SPEED
            if number:  # lead change marker, as carts print it
                ax.plot([x_start, x_start], [row.centre - 2.5, row.centre + 2.5],
                        color=TRACE_COLOUR, lw=0.8, solid_capstyle="butt")
            ax.text(x_start + 1.0, row.centre + 7.0, label if channel is not None
                    else f"{label} (absent)", fontsize=8, fontweight="bold", va="bottom",
                    color=TRACE_COLOUR if channel is not None else "#888888",
                    bbox={"facecolor": PAPER_COLOUR, "edgecolor": "none", "alpha": 0.7,
                          "pad": 0.8})
            if channel is None:
                continue
            shift = start if whole_in_each_cell else 0.0
            first = math.ceil((start - shift) * fs - 1e-9)
            last = min(math.ceil((end - shift) * fs - 1e-9), group.n_samples)
            if last <= first:
                continue
            index = np.arange(first, last)
            ax.plot(x_start + (index / fs - start + shift) * PAPER_SPEED,
                    row.centre + signals[channel][first:last] * PAPER_GAIN,
                    color=TRACE_COLOUR, lw=0.6, gid=f"trace:{label}:{start:g}-{end:g}")

    _draw_header(figure, columns, group, len(ecg.groups), page_height, twelve_lead)
    return figure


def _is_ecg(ecg: DicomEcg, group: DicomGroup) -> bool:
    """An ECG IOD's object, or (an IOD we do not know) one whose channels are all voltages."""
    iod = by_sop_class(ecg.sop_class_uid)
    if iod is not None:
        return iod.signal_class is SignalClass.ECG
    return all(c.sensitivity_units.strip() in _MV_PER_UNIT or not c.sensitivity_units.strip()
               for c in group.channels)


def _strip_chart(ecg: DicomEcg, group: DicomGroup, source_name: str) -> Figure:
    """One strip per channel over the whole object, each in its own units and range.

    Each strip's axes has gid ``strip:<label>``; its y label is ``<label> (<units>)``.
    """
    iod = by_sop_class(ecg.sop_class_uid)
    columns = _header_columns(ecg, source_name, iod.name if iod else "Waveform")
    n = len(group.channels)
    grid_height = n * STRIP_HEIGHT
    page_height = max(MIN_PAGE_HEIGHT, GRID_BOTTOM + 6.0 + grid_height + _header_height(columns))
    figure = Figure(figsize=(PAGE_WIDTH / 25.4, page_height / 25.4), dpi=DPI)
    FigureCanvasAgg(figure)
    scale, unit = _time_unit(group.duration)
    times = np.arange(group.n_samples) / group.sampling_frequency / scale
    for number, channel in enumerate(group.channels):
        bottom = GRID_BOTTOM + 6.0 + (n - 1 - number) * STRIP_HEIGHT
        label = lead_name(channel) or f"channel {number + 1}"
        ax = figure.add_axes((GRID_LEFT / PAGE_WIDTH, (bottom + 2.0) / page_height,
                              GRID_WIDTH / PAGE_WIDTH, (STRIP_HEIGHT - 5.0) / page_height),
                             gid=f"strip:{label}")
        raw = group.samples[:, number]
        values = channel.physical(raw)
        if group.padding_value is not None:
            values[raw == group.padding_value] = np.nan
        x, y = _envelope(times, values)
        ax.plot(x, y, color=TRACE_COLOUR, lw=0.6)
        ax.set_xlim(0, group.n_samples / group.sampling_frequency / scale)
        ax.set_ylabel(f"{label} ({_units_text(channel)})", fontsize=7.5)
        ax.tick_params(labelsize=7)
        ax.grid(True, color=MINOR_COLOUR, lw=0.5)
        if number < n - 1:
            ax.tick_params(labelbottom=False)
        else:
            ax.set_xlabel(f"time ({unit})", fontsize=7.5)
    _draw_header(figure, columns, group, len(ecg.groups), page_height, None)
    return figure


def _time_unit(seconds: float) -> tuple[float, str]:
    for scale, unit in ((3600.0, "h"), (60.0, "min")):
        if seconds >= 3 * scale:
            return scale, unit
    return 1.0, "s"


def _envelope(times: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At most STRIP_BINS (min, max) pairs: what a pixel column shows, extremes kept."""
    if len(values) <= 2 * STRIP_BINS:
        return times, values
    per_bin = math.ceil(len(values) / STRIP_BINS)
    usable = len(values) // per_bin * per_bin
    bins = values[:usable].reshape(-1, per_bin)
    tail = values[usable:]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-gap bin is a gap
        low, high = np.nanmin(bins, axis=1), np.nanmax(bins, axis=1)
        if len(tail):
            low = np.append(low, np.nanmin(tail))
            high = np.append(high, np.nanmax(tail))
    starts = times[::per_bin][: len(low)]
    return np.repeat(starts, 2), np.column_stack([low, high]).ravel()


def _units_text(channel: DicomChannel) -> str:
    code = channel.sensitivity_units.strip()
    if not code or code == NO_UNITS[0]:
        return "arbitrary units"
    return wfdb_units(code)


def _choose_group(ecg: DicomEcg, group_index: int | None) -> DicomGroup:
    """The requested group, else the longest (the rhythm, not the median beat)."""
    if group_index is not None:
        if not 0 <= group_index < len(ecg.groups):
            raise ConversionError(
                f"no multiplex group {group_index + 1}: the object has {len(ecg.groups)}"
            )
        return ecg.groups[group_index]
    return max(ecg.groups, key=lambda g: (g.duration, -g.index))


def _millivolts(group: DicomGroup, index: int) -> np.ndarray:
    """Physical values in mV, padding as gaps, the median over the strip removed.

    Removing the median moves a trace with a DC offset (unfiltered recordings) onto its row
    without changing any amplitude.
    """
    channel: DicomChannel = group.channels[index]
    raw = group.samples[:, index]
    values = channel.physical(raw) * _MV_PER_UNIT.get(channel.sensitivity_units.strip(), 1.0)
    if group.padding_value is not None:
        values[raw == group.padding_value] = np.nan
    shown = values[: math.ceil(STRIP_SECONDS * group.sampling_frequency)]
    if np.isfinite(shown).any():
        values = values - np.nanmedian(shown)
    return values


_Cells = tuple[tuple[str, int | None, float, float], ...]


def _twelve_lead_bands(by_name: dict[str, int], names: list[str]) -> list[_Cells]:
    bands = [
        tuple(
            (lead, by_name.get(normalise_lead_name(lead)), c * COLUMN_SECONDS,
             (c + 1) * COLUMN_SECONDS)
            for c, lead in enumerate(leads)
        )
        for leads in TWELVE_LEAD_ROWS
    ]
    rhythm = by_name.get(normalise_lead_name(RHYTHM_LEAD))
    if rhythm is None:  # the first standard lead present stands in for II
        rhythm = next(channel for band in bands for _, channel, _, _ in band
                      if channel is not None)
    bands.append(((names[rhythm], rhythm, 0.0, STRIP_SECONDS),))
    return bands


def _stacked_bands(names: list[str]) -> list[_Cells]:
    return [((name, i, 0.0, STRIP_SECONDS),) for i, name in enumerate(names)]


def _place_rows(
    bands: list[_Cells], pitch: float, signals: list[np.ndarray], fs: float
) -> tuple[list[_Row], float]:
    """Zero lines on major (5 mm) lines, ``pitch`` apart, with room above the first row and
    below the last for their largest excursion (within limits), so the outer traces are not
    cut off by the edge of the paper. Returns the rows and the grid height."""

    def excursion(band: _Cells, sign: float) -> float:
        peak = 0.0
        for _, channel, start, end in band:
            if channel is None:
                continue
            part = signals[channel][math.ceil(start * fs - 1e-9): math.ceil(end * fs - 1e-9)]
            if np.isfinite(part).any():
                peak = max(peak, float(np.nanmax(sign * part)) * PAPER_GAIN)
        return peak

    def margin(extent: float, least: float) -> float:
        return min(max(least, 5.0 * math.ceil(extent / 5.0)), MAX_MARGIN)

    top = margin(max(excursion(bands[0], 1.0), PAPER_GAIN) + 5.0, 20.0)
    bottom = margin(excursion(bands[-1], -1.0) + 3.0, 15.0)
    rows = [_Row(bottom + (len(bands) - 1 - i) * pitch, band) for i, band in enumerate(bands)]
    return rows, top + (len(bands) - 1) * pitch + bottom


def _draw_paper(ax, width: float, height: float) -> None:
    """1 mm minor and 5 mm major lines, as two collections (thousands of artists are slow)."""
    for step, colour, lw in ((1.0, MINOR_COLOUR, 0.25), (5.0, MAJOR_COLOUR, 0.6)):
        xs = np.arange(0.0, width + 1e-9, step)
        ys = np.arange(0.0, height + 1e-9, step)
        segments = [((x, 0.0), (x, height)) for x in xs] + [((0.0, y), (width, y)) for y in ys]
        ax.add_collection(LineCollection(segments, colors=colour, linewidths=lw,
                                         gid=f"paper:{step:g}mm", zorder=0.5))


def _draw_calibration(ax, centre: float) -> None:
    """1 mV for 0.2 s: a 10 mm by 5 mm step that lets a reader check the scale."""
    ax.plot([0.5, 2.5, 2.5, 7.5, 7.5, 9.5],
            [centre, centre, centre + PAPER_GAIN, centre + PAPER_GAIN, centre, centre],
            color=TRACE_COLOUR, lw=0.8, gid="calibration", solid_joinstyle="miter")


def _header_columns(ecg: DicomEcg, source_name: str, title: str = "ECG"
                    ) -> list[tuple[float, str, list[str]]]:
    """(page x in mm, title, wrapped lines) of each header column, at most HEADER_LINES long.

    Fixed column positions and widths in characters keep the columns from running into each
    other; what does not fit is counted, not drawn over the grid.
    """
    acquired = (ecg.acquisition_datetime.strftime("%Y-%m-%d %H:%M:%S")
                if ecg.acquisition_datetime else "not stated")
    identity = [
        f"Patient ID: {ecg.patient_id or '-'}",
        f"Study ID: {ecg.study_id or '-'}",
        f"Acquired: {acquired}",
    ]
    if ecg.station_name:
        identity.append(f"Station: {ecg.station_name}")
    if source_name:
        identity.append(f"File: {source_name}")
    measurements = [f"{a.concept or 'value'}: {_number(a.value)} {a.units or ''}".strip()
                    for a in ecg.measurements]
    columns: list[tuple[float, str, list[str], int]] = [(GRID_LEFT, title, identity, 40)]
    if len(measurements) > HEADER_LINES:
        half = (len(measurements) + 1) // 2
        columns += [(88.0, "Measurements", measurements[:half], 26),
                    (133.0, "", measurements[half:], 26)]
    else:
        columns.append((88.0, "Measurements", measurements or ["none"], 50))
    columns.append((180.0, "Statements", list(ecg.statements) or ["none"], 58))

    result = []
    for x, title, lines, width in columns:
        wrapped: list[str] = []
        for text in lines:
            wrapped.extend(textwrap.wrap(text, width) or [""])
        if len(wrapped) > HEADER_LINES:
            hidden = len(wrapped) - (HEADER_LINES - 1)
            wrapped = wrapped[: HEADER_LINES - 1] + [f"... {hidden} more lines"]
        result.append((x, title, wrapped))
    return result


def _header_height(columns: list[tuple[float, str, list[str]]]) -> float:
    """Title line, the longest column, and margins above and below."""
    return 12.0 + HEADER_LINE * (1 + max(len(lines) for _, _, lines in columns))


def _draw_header(
    figure: Figure, columns: list[tuple[float, str, list[str]]], group: DicomGroup,
    n_groups: int, page_height: float, twelve_lead: bool | None,
) -> None:
    """Identification, measurements and statements above; the recording settings below."""
    top = page_height - 7.0
    for x, title, lines in columns:
        figure.text(x / PAGE_WIDTH, top / page_height, title, fontsize=8.5,
                    fontweight="bold", va="top", ha="left")
        figure.text(x / PAGE_WIDTH, (top - HEADER_LINE) / page_height, "\n".join(lines),
                    fontsize=7.5, va="top", ha="left", linespacing=1.35)
    label = f" {group.label}" if group.label else ""
    if twelve_lead is None:  # a strip chart: the whole object, no paper scale
        duration, layout, scale = f"{group.duration:g} s", "strip chart per channel", ""
    else:
        duration = f"{min(group.duration, STRIP_SECONDS):g} s of {group.duration:g} s"
        layout = "12-lead" if twelve_lead else "stacked channels"
        scale = f"{PAPER_SPEED:g} mm/s   {PAPER_GAIN:g} mm/mV   "
    footer = (
        f"{scale}{_filters(group.channels)}   "
        f"Sampling {group.sampling_frequency:g} Hz   Group {group.index + 1}/{n_groups}"
        f"{label}, {duration}, {layout}"
    )
    figure.text(GRID_LEFT / PAGE_WIDTH, (GRID_BOTTOM - 4.0) / page_height, footer,
                fontsize=7.5, va="top", ha="left")


def _filters(channels: Iterable[DicomChannel]) -> str:
    """Filter settings from the channel definitions, saying so when channels disagree."""
    channels = list(channels)

    def describe(values: list[float | None]) -> str:
        known = sorted({v for v in values if v is not None})
        text = "/".join(_number(v) for v in known) if known else "?"
        return text

    lows = [c.filter_low for c in channels]
    highs = [c.filter_high for c in channels]
    notches = [c.notch for c in channels]
    if all(v is None for v in lows + highs):
        band = "Filter: not stated"
    else:
        band = f"Filter: {describe(lows)}-{describe(highs)} Hz"
    if all(n is None for n in notches):
        notch = "Notch: not stated"
    elif {n for n in notches if n is not None} == {0.0}:
        notch = "Notch: off"
    else:
        notch = f"Notch: {describe(notches)} Hz"
    text = f"{band}   {notch}"
    values = (lows, highs, notches)
    if any(None in v and set(v) != {None} for v in values):
        text += "   (filters not stated for some channels)"
    elif any(len(set(v)) > 1 for v in values):
        text += "   (filters differ between channels)"
    return text


def _number(value: float | None) -> str:
    if value is None:
        return "?"
    if math.isfinite(value) and value == int(value):
        return str(int(value))
    return f"{value:g}"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``preview``."""
    parser = subparsers.add_parser(
        "preview",
        help="draw a DICOM waveform object: ECG as a 12-lead printout, others as strips",
        description="Draw a DICOM ECG waveform object as the standard 12-lead printout "
        "(3x4 leads of 2.5 s and a 10 s lead II rhythm strip at 25 mm/s, 10 mm/mV); "
        "a record without the standard leads is drawn as stacked strips. Objects of the "
        "other waveform IODs (pressure, pulse, respiration) are drawn as one strip chart per "
        "channel over the whole object, in each channel's units.",
    )
    parser.add_argument("file", type=Path, metavar="FILE.dcm")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUT",
                        help="output image; the suffix (.png, .pdf, .svg) chooses the format")
    parser.add_argument("--group", type=int, metavar="N",
                        help="multiplex group to draw (1-based; default: the longest)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    group = None if args.group is None else args.group - 1
    path = render_preview(args.file, args.output, group_index=group)
    print(path, file=sys.stdout)
    return 0
