"""Summaries of a set of values as the report shows them: `Stats` (computed by numpy from
values, or range by range in `featstore.report.tally`) and `Distribution` (stats and
histogram, no values)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from featstore.report.plots import Binned


@dataclass(frozen=True)
class Stats:
    """Summary of a set of values; the finite ones only, non-finite ones counted apart."""

    count: int
    non_finite: int
    mean: float | None
    std: float | None
    minimum: float | None
    median: float | None
    maximum: float | None

    @classmethod
    def of(cls, values: NDArray[Any]) -> Stats:
        array = np.asarray(values, dtype=np.float64).ravel()
        finite = array[np.isfinite(array)]
        if not finite.size:
            return cls(int(array.size), int(array.size), None, None, None, None, None)
        return cls(
            count=int(array.size),
            non_finite=int(array.size - finite.size),
            mean=float(finite.mean()),
            std=float(finite.std()),
            minimum=float(finite.min()),
            median=float(np.median(finite)),
            maximum=float(finite.max()),
        )

    @classmethod
    def of_counted(cls, values: NDArray[Any], counts: NDArray[Any]) -> Stats:
        """`Stats.of` of a multiset given as distinct finite `values` and their `counts`
        (frames per identity: a few distinct values, exact statistics)."""
        v = np.asarray(values, dtype=np.float64)
        w = np.asarray(counts, dtype=np.int64)
        n = int(w.sum())
        if not n:
            return cls(0, 0, None, None, None, None, None)
        order = np.argsort(v)
        v, w = v[order], w[order]
        mean = float((v * w).sum() / n)
        std = float(np.sqrt((((v - mean) ** 2) * w).sum() / n))
        cumulative = np.cumsum(w)

        def at(rank: int) -> float:  # the value at 0-based `rank` of the sorted multiset
            return float(v[int(np.searchsorted(cumulative, rank, side="right"))])

        median = at(n // 2) if n % 2 else (at(n // 2 - 1) + at(n // 2)) / 2
        return cls(n, 0, mean, std, float(v[w > 0].min()), median, float(v[w > 0].max()))

    @classmethod
    def of_angles(cls, degrees: NDArray[Any]) -> Stats:
        """Circular statistics of angles in degrees (the head pose's).

        mean: the direction of the mean unit vector; std: the circular standard deviation
        `sqrt(-2 ln R)` (R: that vector's length), in degrees; min, median and max: of the
        values unwrapped into [mean - 180, mean + 180). Rolls of 179 and -179 thus have
        mean ±180 and std 2, not mean 0 and std 179.
        """
        array = np.asarray(degrees, dtype=np.float64).ravel()
        finite = array[np.isfinite(array)]
        if not finite.size:
            return cls.of(array)
        radians = np.deg2rad(finite)
        s, c = np.sin(radians).mean(), np.cos(radians).mean()
        mean = float(np.rad2deg(np.arctan2(s, c)))
        length = min(float(np.hypot(s, c)), 1.0)
        std = float(np.rad2deg(np.sqrt(-2.0 * np.log(length)))) if length > 0 else float("inf")
        unwrapped = mean + (finite - mean + 180.0) % 360.0 - 180.0
        return cls(
            count=int(array.size),
            non_finite=int(array.size - finite.size),
            mean=mean,
            std=std,
            minimum=float(unwrapped.min()),
            median=float(np.median(unwrapped)),
            maximum=float(unwrapped.max()),
        )


@dataclass(frozen=True)
class Distribution:
    """What the report shows of a set of values: their statistics and their histogram
    (`featstore.report.tally`), never the values themselves."""

    stats: Stats
    histogram: Binned

    @property
    def count(self) -> int:
        return self.stats.count
