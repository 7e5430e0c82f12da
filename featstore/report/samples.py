"""The report's seeded samples (gallery identities, rejected frames), drawn by position
and fetched row by row, so that no list of every candidate is ever held.

`random.sample(range(n), k)` picks the same positions as sampling a list of n names, so
the gallery is the one a list of names would give. A position is found in its identity
range (`featstore.report.ranges`) from the per-range counts `numbers.identity_table`
gathered, and fetched with `LIMIT 1 OFFSET o` inside that range: the top-N DuckDB keeps
for it is at most one range's rows.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from featstore.report.ranges import IdentityRange, each_range

if TYPE_CHECKING:
    import duckdb


def gallery_names(
    con: duckdb.DuckDBPyConnection,
    ranges: Sequence[IdentityRange],
    with_face: Sequence[int],
    rng: random.Random,
    count: int,
) -> list[str]:
    """A seeded sample of `count` identities that have a frontal image, in name order."""
    positions = rng.sample(range(sum(with_face)), min(count, sum(with_face)))
    names = []
    for span, offset in _located(positions, with_face, ranges):
        for _ in each_range(con, [span]):
            row = con.execute(
                "SELECT identity FROM identities WHERE face_status IS NOT NULL "
                f"ORDER BY identity LIMIT 1 OFFSET {offset}"
            ).fetchall()[0]
            names.append(str(row[0]))
    return sorted(names)


def rejected_rows(
    con: duckdb.DuckDBPyConnection,
    ranges: Sequence[IdentityRange],
    rejected: Sequence[dict[str, int]],
    rng: random.Random,
    columns: str,
    sample: int,
) -> tuple[list[dict[str, Any]], int]:
    """A seeded sample of the frames that are not ok, and their count.

    Round robin over the statuses (in name order), so a rare status is shown next to a
    frequent one; within a status, seeded positions in (identity, frame_index) order.
    `rejected`: per range, the frames not ok by status."""
    statuses = sorted({s for counts in rejected for s in counts})
    left = {s: sum(counts.get(s, 0) for counts in rejected) for s in statuses}
    total = sum(left.values())
    quota = dict.fromkeys(statuses, 0)
    while sum(quota.values()) < min(sample, total):
        for status in statuses:
            if left[status] and sum(quota.values()) < sample:
                quota[status] += 1
                left[status] -= 1
    rows = []
    for status in statuses:
        per_range = [counts.get(status, 0) for counts in rejected]
        positions = rng.sample(range(sum(per_range)), quota[status])
        for span, offset in _located(positions, per_range, ranges):
            for _ in each_range(con, [span]):
                table = con.sql(
                    f"SELECT {columns} FROM frames WHERE status = $status "
                    f"ORDER BY identity, frame_index LIMIT 1 OFFSET {offset}",
                    params={"status": status},
                ).to_arrow_table()
                rows += table.to_pylist()
    rows.sort(key=lambda r: (r["status"], r["identity"], r["frame_index"]))
    return rows, total


def _located(
    positions: Sequence[int], per_range: Sequence[int], ranges: Sequence[IdentityRange]
) -> list[tuple[IdentityRange, int]]:
    """Each position of the whole order as (its range, its offset there)."""
    starts = [0, *itertools.accumulate(per_range)]
    found = []
    for position in positions:
        r = bisect.bisect_right(starts, position) - 1
        found.append((ranges[r], position - starts[r]))
    return found
