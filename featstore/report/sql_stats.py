"""The report's statistics and histograms, computed by DuckDB.

Only bounded results come back to Python: a few numbers per column and one count per bin,
never a value per frame or per identity, so the report's memory does not grow with the
store (issue 25: 10^6 identities x 10 frames). The numbers are those `Stats.of`,
`Stats.of_angles` and a numpy histogram give over the same values, up to the order of
floating-point summation (means and standard deviations may differ in the last digits).

A column is given as `(source, expression)`: `source` a FROM clause (a view, a
subquery), `expression` an SQL expression over it; NULL counts as a non-finite value,
as NaN did when the values were fetched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from featstore.report.plots import Binned, bin_edges
from featstore.report.stats import Distribution, Stats

if TYPE_CHECKING:
    import duckdb


@dataclass(frozen=True)
class Column:
    """Values to summarise: `expression` over the rows of `source`."""

    source: str
    expression: str

    def values(self) -> str:
        """A subquery with one DOUBLE column `v`."""
        return f"(SELECT ({self.expression})::DOUBLE AS v FROM {self.source})"


@dataclass(frozen=True)
class Bins:
    """How a panel bins its values (see `featstore.report.plots.Panel`)."""

    bins: int | str = 60
    value_range: tuple[float, float] | None = None
    min_span: float = 0.0


def stats(con: duckdb.DuckDBPyConnection, column: Column) -> Stats:
    """`Stats.of` over the column's values, in SQL."""
    row = con.execute(
        f"""SELECT count(*), count(v) FILTER (isfinite(v)),
                   avg(v) FILTER (isfinite(v)), stddev_pop(v) FILTER (isfinite(v)),
                   min(v) FILTER (isfinite(v)), median(v) FILTER (isfinite(v)),
                   max(v) FILTER (isfinite(v))
            FROM {column.values()}"""
    ).fetchall()[0]
    return _stats(row)


def angle_stats(con: duckdb.DuckDBPyConnection, column: Column) -> Stats:
    """`Stats.of_angles` (circular, degrees) over the column's values, in SQL: the mean
    direction atan2(avg sin, avg cos), the circular std sqrt(-2 ln R), and min, median and
    max of the values unwrapped into [mean - 180, mean + 180)."""
    first = con.execute(
        f"""SELECT count(*), count(v) FILTER (isfinite(v)),
                   avg(sin(radians(v))) FILTER (isfinite(v)),
                   avg(cos(radians(v))) FILTER (isfinite(v))
            FROM {column.values()}"""
    ).fetchall()[0]
    count, finite, s, c = int(first[0]), int(first[1]), first[2], first[3]
    if not finite:
        return Stats(count, count, None, None, None, None, None)
    mean = float(np.rad2deg(np.arctan2(s, c)))
    length = min(float(np.hypot(s, c)), 1.0)
    std = float(np.rad2deg(np.sqrt(-2.0 * np.log(length)))) if length > 0 else float("inf")
    # numpy's `%` takes the divisor's sign: x - 360 * floor(x / 360).
    shifted = f"(v - {mean!r} + 180.0)"
    unwrapped = f"({mean!r} + {shifted} - 360.0 * floor({shifted} / 360.0) - 180.0)"
    low, median, high = con.execute(
        f"""SELECT min(u), median(u), max(u)
            FROM (SELECT {unwrapped} AS u FROM {column.values()} WHERE isfinite(v))"""
    ).fetchall()[0]
    return Stats(count, count - finite, mean, std, float(low), float(median), float(high))


def histograms(
    con: duckdb.DuckDBPyConnection, columns: Sequence[Column], bins: Bins
) -> list[Binned]:
    """One histogram per column over shared bin edges (the panel's, from the finite values
    of all its columns, as `featstore.report.plots` would draw them)."""
    low, high = bins.value_range or _extent(con, columns)
    if low is None or high is None:  # no finite value anywhere
        empty = np.zeros(0, np.float64)
        return [Binned(empty, np.zeros(0, np.int64)) for _ in columns]
    edges = bin_edges(float(low), float(high), bins.bins, bins.min_span)
    return [_binned(con, column, edges) for column in columns]


def distributions(
    con: duckdb.DuckDBPyConnection,
    columns: Sequence[Column],
    bins: Bins,
    *,
    circular: bool = False,
    shown: Sequence[Column] | None = None,
) -> list[Distribution]:
    """Stats and histogram of each column (the histogram of `shown`'s columns where given:
    the roll is drawn modulo 360 but summarised circularly)."""
    summarise = angle_stats if circular else stats
    drawn = histograms(con, shown if shown is not None else columns, bins)
    return [
        Distribution(summarise(con, column), histogram)
        for column, histogram in zip(columns, drawn, strict=True)
    ]


def _extent(
    con: duckdb.DuckDBPyConnection, columns: Sequence[Column]
) -> tuple[float | None, float | None]:
    union = " UNION ALL ".join(f"SELECT v FROM {c.values()}" for c in columns)
    low, high = con.execute(f"SELECT min(v), max(v) FROM ({union}) WHERE isfinite(v)").fetchall()[0]
    return low, high


def _binned(con: duckdb.DuckDBPyConnection, column: Column, edges: np.ndarray) -> Binned:
    """numpy.histogram's counts: bins closed on the left, the last one on both sides,
    values outside the edges left out."""
    count = edges.size - 1
    low, high = float(edges[0]), float(edges[-1])
    width = (high - low) / count
    rows = con.execute(
        f"""SELECT least(floor((v - {low!r}) / {width!r})::BIGINT, {count - 1}) AS b, count(*)
            FROM {column.values()}
            WHERE isfinite(v) AND v >= {low!r} AND v <= {high!r}
            GROUP BY b"""
    ).fetchall()
    counts = np.zeros(count, np.int64)
    for b, n in rows:
        counts[max(int(b), 0)] += int(n)
    return Binned(edges, counts)


def _stats(row: tuple[Any, ...]) -> Stats:
    count, finite = int(row[0]), int(row[1])
    if not finite:
        return Stats(count, count, None, None, None, None, None)
    mean, std, low, median, high = (float(v) for v in row[2:7])
    return Stats(count, count - finite, mean, std, low, median, high)
