"""The report's statistics and histograms over many rows, in memory that does not grow
with the store: each source is read one identity range at a time
(`featstore.report.ranges`), twice.

1. One aggregate query per range gives each column's counts, mean and variance (merged
   across ranges by Chan's formula), extremes and, for angles, the sums of their sines
   and cosines: enough to fix every panel's bin edges and every circular mean.
2. One query per range streams the values in record batches into numpy histograms: the
   panel's bins, and 65,536 fine bins from which the median is read.

So Python holds O(bins) numbers per column, DuckDB O(one range), never a value per frame.
The numbers are those of `Stats.of` / `Stats.of_angles` and numpy's histogram over the same
values, except: means and standard deviations are summed in another order (equal to about
1e-12), and the median is interpolated in its fine bin, so it is exact to within 1/65,536 of
the values' range (0.0055 degrees for an angle).

A column is an SQL expression over the source's rows with the condition that selects its
rows; NULL counts as a non-finite value, as NaN does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from featstore.report.plots import Binned, bin_edges
from featstore.report.ranges import IdentityRange, each_range
from featstore.report.stats import Distribution, Stats

if TYPE_CHECKING:
    import duckdb

FINE_BINS = 1 << 16
BATCH_ROWS = 1 << 14  # rows per record batch streamed from DuckDB (a few MB)


@dataclass(frozen=True)
class Column:
    """Values to summarise: `expression` over the rows where `condition` holds.

    circular: degrees, summarised by `Stats.of_angles`. shown: what the histogram draws,
    when not the values themselves (the roll modulo 360)."""

    name: str
    expression: str
    condition: str = "true"
    circular: bool = False
    shown: str | None = None


@dataclass(frozen=True)
class Bins:
    """How a panel bins its values (see `featstore.report.plots.Group`)."""

    bins: int | str = 60
    value_range: tuple[float, float] | None = None
    min_span: float = 0.0


@dataclass(frozen=True)
class Group:
    """Columns drawn in one panel of the page: their histograms share the bin edges."""

    bins: Bins
    columns: tuple[Column, ...]


@dataclass(frozen=True)
class Count:
    """A number of rows: those where `condition` holds."""

    name: str
    condition: str


@dataclass
class _Moments:
    """A column's pass-1 numbers, merged range by range."""

    rows: int = 0
    finite: int = 0
    mean: float = 0.0
    squares: float = 0.0  # the sum of squared deviations from the mean
    low: float = math.inf
    high: float = -math.inf
    shown_low: float = math.inf
    shown_high: float = -math.inf
    sin: float = 0.0
    cos: float = 0.0

    def merge(self, row: Sequence[float | int | None]) -> None:
        rows, finite, mean, variance, low, high, shown_low, shown_high, sin, cos = row
        self.rows += int(rows or 0)
        if not finite:
            return
        n, m = int(finite), float(mean or 0.0)
        total = self.finite + n
        delta = m - self.mean
        # Chan et al.'s pairwise update: exact for any split of the values.
        self.squares += float(variance or 0.0) * n + delta * delta * self.finite * n / total
        self.mean += delta * n / total
        self.finite = total
        self.low, self.high = _extend(self.low, self.high, low, high)
        self.shown_low, self.shown_high = _extend(
            self.shown_low, self.shown_high, shown_low, shown_high
        )
        self.sin += float(sin or 0.0)
        self.cos += float(cos or 0.0)

    @property
    def circular_mean(self) -> float:
        return float(np.rad2deg(np.arctan2(self.sin / self.finite, self.cos / self.finite)))


@dataclass
class _Tally:
    """A column's pass-2 numbers: its panel's histogram, its fine histogram for the median
    and, for angles, the extremes of the values unwrapped around the circular mean."""

    column: Column
    moments: _Moments
    edges: NDArray[np.float64]
    counts: NDArray[np.int64] = field(init=False)
    fine: NDArray[np.int64] = field(init=False)
    fine_range: tuple[float, float] = field(init=False)
    low: float = math.inf
    high: float = -math.inf

    def __post_init__(self) -> None:
        self.counts = np.zeros(max(self.edges.size - 1, 0), np.int64)
        m = self.moments
        self.fine = np.zeros(FINE_BINS if m.finite else 0, np.int64)
        if self.column.circular and m.finite:
            mean = m.circular_mean
            self.fine_range = (mean - 180.0, mean + 180.0)
        else:
            self.fine_range = (m.low, m.high)

    def add(self, values: NDArray[np.float64], shown: NDArray[np.float64]) -> None:
        values = values[np.isfinite(values)]
        if not values.size:
            return
        if self.counts.size:
            shown = shown[np.isfinite(shown)]
            self.counts += np.histogram(shown, self.edges)[0]
        if self.column.circular:
            mean = self.moments.circular_mean
            values = mean + (values - mean + 180.0) % 360.0 - 180.0
        self.low, self.high = (
            min(self.low, float(values.min())),
            max(self.high, float(values.max())),
        )
        low, high = self.fine_range
        if high > low:
            self.fine += np.histogram(values, FINE_BINS, range=(low, high))[0]

    def distribution(self) -> Distribution:
        m = self.moments
        if not m.finite:
            stats = Stats(m.rows, m.rows, None, None, None, None, None)
        elif self.column.circular:
            length = min(math.hypot(m.sin / m.finite, m.cos / m.finite), 1.0)
            std = math.degrees(math.sqrt(-2.0 * math.log(length))) if length > 0 else math.inf
            stats = Stats(
                m.rows, m.rows - m.finite, m.circular_mean, std, self.low, self._median(), self.high
            )
        else:
            std = math.sqrt(max(m.squares, 0.0) / m.finite)
            stats = Stats(m.rows, m.rows - m.finite, m.mean, std, m.low, self._median(), m.high)
        return Distribution(stats, Binned(self.edges, self.counts))

    def _median(self) -> float:
        """numpy's median (the middle value, or the mean of the two middle ones), each read
        by linear interpolation inside its fine bin."""
        n = int(self.fine.sum())
        low, high = self.fine_range
        if not n or high <= low:
            return self.low
        cumulative = np.cumsum(self.fine)
        width = (high - low) / FINE_BINS

        def at(rank: int) -> float:
            b = int(np.searchsorted(cumulative, rank, side="right"))
            before = int(cumulative[b - 1]) if b else 0
            value = low + width * (b + (rank - before + 0.5) / int(self.fine[b]))
            return min(max(value, self.low), self.high)

        return at(n // 2) if n % 2 else (at(n // 2 - 1) + at(n // 2)) / 2


def summarise(
    con: duckdb.DuckDBPyConnection,
    source: str,
    ranges: Sequence[IdentityRange],
    panels: Sequence[Group],
    counts: Sequence[Count] = (),
) -> tuple[dict[str, Distribution], dict[str, int]]:
    """Each column's statistics and histogram (its panel's edges), and each count, over the
    rows of `source` (a view), read a range at a time, in two passes."""
    columns = [c for p in panels for c in p.columns]
    moments = {c.name: _Moments() for c in columns}
    totals = dict.fromkeys((c.name for c in counts), 0)
    first = ", ".join(
        [part for c in columns for part in _aggregates(c)]
        + [f"count(*) FILTER ({c.condition})" for c in counts]
    )
    if not first:
        return {}, totals
    for _ in each_range(con, ranges):
        row = con.execute(f"SELECT {first} FROM {source}").fetchall()[0]
        values = iter(row)  # each column's _AGGREGATES numbers, then the counts
        for c in columns:
            moments[c.name].merge([next(values) for _ in range(_AGGREGATES)])
        for counted, n in zip(counts, values, strict=True):
            totals[counted.name] += int(n or 0)
    tallies = {
        c.name: _Tally(c, moments[c.name], _edges(p, [moments[x.name] for x in p.columns]))
        for p in panels
        for c in p.columns
    }
    if any(m.finite for m in moments.values()):
        _second_pass(con, source, ranges, columns, tallies)
    return {name: t.distribution() for name, t in tallies.items()}, totals


def _extend(
    low: float, high: float, new_low: float | int | None, new_high: float | int | None
) -> tuple[float, float]:
    """[low, high] widened to [new_low, new_high] (None: no value)."""
    if new_low is not None:
        low = min(low, float(new_low))
    if new_high is not None:
        high = max(high, float(new_high))
    return low, high


_AGGREGATES = 10  # what `_aggregates` asks per column, in `_Moments.merge`'s order


def _aggregates(c: Column) -> list[str]:
    v, s = f"({c.expression})::DOUBLE", f"({c.shown or c.expression})::DOUBLE"
    keep = f"({c.condition}) AND isfinite({v})"
    shown = f"({c.condition}) AND isfinite({s})"
    sin, cos = (f"sum({f}(radians({v}))) FILTER ({keep})" for f in ("sin", "cos"))
    return [
        f"count(*) FILTER ({c.condition})",
        f"count({v}) FILTER ({keep})",
        f"avg({v}) FILTER ({keep})",
        f"var_pop({v}) FILTER ({keep})",
        f"min({v}) FILTER ({keep})",
        f"max({v}) FILTER ({keep})",
        f"min({s}) FILTER ({shown})",
        f"max({s}) FILTER ({shown})",
        sin if c.circular else "0",
        cos if c.circular else "0",
    ]


def _edges(panel: Group, moments: list[_Moments]) -> NDArray[np.float64]:
    """The panel's bin edges, from its columns' shown extremes (none: no finite value)."""
    low = min(m.shown_low for m in moments)
    high = max(m.shown_high for m in moments)
    if panel.bins.value_range is not None:
        low, high = panel.bins.value_range
    elif not math.isfinite(low) or not math.isfinite(high):
        return np.zeros(0, np.float64)
    return bin_edges(float(low), float(high), panel.bins.bins, panel.bins.min_span)


def _second_pass(
    con: duckdb.DuckDBPyConnection,
    source: str,
    ranges: Sequence[IdentityRange],
    columns: list[Column],
    tallies: dict[str, _Tally],
) -> None:
    # Each column's values, and what its histogram draws where that differs; a row outside
    # a column's condition is NULL there (left out, as a non-finite value is).
    selected: list[str] = []
    drawn: list[int] = []
    for c in columns:
        drawn.append(len(selected) + 1 if c.shown else len(selected))
        selected.append(f"CASE WHEN {c.condition} THEN ({c.expression})::DOUBLE END")
        if c.shown:
            selected.append(f"CASE WHEN {c.condition} THEN ({c.shown})::DOUBLE END")
    query = ", ".join(f"{e} AS c{i}" for i, e in enumerate(selected))
    for _ in each_range(con, ranges):
        relation = con.sql(f"SELECT {query} FROM {source}")
        # duckdb >= 1.4 names it to_arrow_reader (and warns on the older name).
        reader = getattr(relation, "to_arrow_reader", None) or relation.fetch_arrow_reader
        for batch in reader(BATCH_ROWS):
            at = 0
            for c, shown_at in zip(columns, drawn, strict=True):
                values = _floats(batch.column(at))
                shown = _floats(batch.column(shown_at)) if shown_at != at else values
                tallies[c.name].add(values, shown)
                at = shown_at + 1


def _floats(array: object) -> NDArray[np.float64]:
    """An Arrow double column as numpy, nulls as NaN."""
    import pyarrow as pa

    assert isinstance(array, pa.Array)
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype=np.float64)
