"""Histograms for `featstore report`, drawn by matplotlib into PNG bytes.

Figures are `matplotlib.figure.Figure` objects with their own Agg canvas: pyplot and its
global figure registry are never touched, so a report neither depends on nor changes the
caller's matplotlib backend, and figures are freed when they go out of scope.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

DPI = 80
PANEL_INCHES = (4.2, 2.9)


@dataclass(frozen=True)
class Binned:
    """A histogram already counted (range by range, `featstore.report.tally`): `counts[i]`
    values in [edges[i], edges[i + 1]); no edges when there was no finite value."""

    edges: NDArray[np.float64]
    counts: NDArray[np.int64]

    @property
    def total(self) -> int:
        return int(self.counts.sum())


@dataclass(frozen=True)
class Series:
    """One set of values in a panel (drawn as one histogram, labelled in the legend):
    the values, or their histogram counted elsewhere (every series of a panel then shares
    the same edges)."""

    label: str
    values: NDArray[np.floating] | NDArray[np.integer] | Binned


@dataclass(frozen=True)
class Panel:
    """One histogram panel.

    Attributes:
        title: shown above the axes.
        xlabel: the unit or meaning of the x axis.
        series: overlaid histograms; non-finite values are left out (report them apart).
        bins: number of bins, or "integer" for one bin per whole number.
        value_range: fixed x range, or None to fit the finite values.
        log_y: a logarithmic count axis (for long tails).
        min_span: the x range is at least this wide, centred on the values (so values
            that agree to 1e-7 are not spread over the whole axis).
    """

    title: str
    xlabel: str
    series: Sequence[Series] = field(default_factory=tuple)
    bins: int | str = 60
    value_range: tuple[float, float] | None = None
    log_y: bool = False
    min_span: float = 0.0


def histograms_png(panels: Sequence[Panel], *, columns: int = 3) -> bytes:
    """One PNG with the panels laid out on a grid, `columns` wide."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = max(1, min(columns, len(panels)))
    rows = max(1, math.ceil(len(panels) / columns))
    figure = Figure(
        figsize=(PANEL_INCHES[0] * columns, PANEL_INCHES[1] * rows), dpi=DPI, layout="constrained"
    )
    FigureCanvasAgg(figure)  # Agg, for this figure only
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, panel in zip(axes, panels, strict=False):
        _draw_panel(ax, panel)
    for ax in axes[len(panels) :]:
        ax.set_axis_off()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _draw_panel(ax: object, panel: Panel) -> None:
    from matplotlib.axes import Axes
    from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

    assert isinstance(ax, Axes)
    ax.set_title(panel.title, fontsize=10)
    ax.set_xlabel(panel.xlabel, fontsize=9)
    ax.set_ylabel("count", fontsize=9)
    ax.tick_params(labelsize=8)
    binned = [(s.label, s.values) for s in panel.series if isinstance(s.values, Binned)]
    finite = [
        (s.label, _finite(s.values)) for s in panel.series if not isinstance(s.values, Binned)
    ]
    finite = [(label, values) for label, values in finite if values.size]
    binned = [(label, b) for label, b in binned if b.total]
    if not finite and not binned:
        ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
        ax.set_yticks([])
        return
    alpha = 0.6 if len(finite) + len(binned) > 1 else 0.9
    # "stepfilled": one polygon per series, drawn like the bars, instead of one artist per
    # bin; it halves a figure's drawing time (6 panels of 2 series: 0.89 s -> 0.47 s).
    if finite:
        edges = _edges(np.concatenate([v for _, v in finite]), panel)
        for label, values in finite:
            ax.hist(values, bins=edges.tolist(), histtype="stepfilled", alpha=alpha, label=label)
    for label, b in binned:
        # One weighted value per bin draws the same bars as the values themselves.
        centres = (b.edges[:-1] + b.edges[1:]) / 2
        ax.hist(
            centres,
            bins=b.edges.tolist(),
            weights=b.counts,
            histtype="stepfilled",
            alpha=alpha,
            label=label,
        )
    labels = [label for label, _ in finite] + [label for label, _ in binned]
    # Plain tick labels: no "1e-7+1" offset, no "6x10^0", no count of 0.25.
    ax.ticklabel_format(axis="x", useOffset=False, style="plain")
    # Few enough ticks that long labels (0.9995) never touch; whole numbers for counts.
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=panel.bins == "integer"))
    if panel.log_y:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
    else:
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    if len(labels) > 1 or labels[0]:
        ax.legend(fontsize=8)


def _finite(values: NDArray[np.floating] | NDArray[np.integer]) -> NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64).ravel()
    return array[np.isfinite(array)]


def _edges(values: NDArray[np.float64], panel: Panel) -> NDArray[np.float64]:
    """Bin edges shared by every series of a panel, so their bars line up."""
    low, high = panel.value_range or (float(values.min()), float(values.max()))
    return bin_edges(low, high, panel.bins, panel.min_span)


def bin_edges(low: float, high: float, bins: int | str, min_span: float) -> NDArray[np.float64]:
    """The edges for finite values from `low` to `high` (see `Panel`)."""
    if bins == "integer":
        low, high = math.floor(low), math.ceil(high)
        count = min(int(high - low) + 1, 100)
        return np.linspace(low - 0.5, high + 0.5, count + 1)
    if high - low < min_span:
        centre = (low + high) / 2
        low, high = centre - min_span / 2, centre + min_span / 2
    if high <= low:  # a single value: a visible bar around it
        pad = max(abs(low) * 1e-3, 1e-6)
        low, high = low - pad, high + pad
    return np.linspace(low, high, (bins if isinstance(bins, int) else 60) + 1)
