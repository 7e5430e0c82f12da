"""Identity ranges: how the report reads a store of any size a bounded part at a time.

The views join and group by identity (`valid_frames` joins the frames to their identity's
frontal row, `identities` groups an identity's rows), and DuckDB holds such a join's or
group's table for all the rows a query reads: O(identities) for the whole store; and a
scan holds buffers for every data file it opens: O(files). A query restricted to a range
of identity names, and to the data files whose identities overlap it, holds both for that
range only, so the report's memory stays flat from 10^4 to 10^6 identities (issue 25).

The cuts and each file's extent come from the data files' summaries
(`ModelSnapshot.file_identities`): one file's names in memory at a time.

`each_range` restricts the connection's `images` view to one range at a time; every other
view is defined over `images` and bound when queried, so a query of `valid_frames` or
`identities` inside the loop reads that range on both sides of its join.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

    from featstore.store import ModelSnapshot

# Ok rows (those with features) per range and data file, about: a data file at 10^6
# identities (about 26k identities). The identity-consistency section holds every ArcFace
# vector of a range at once (the view's frames), so it reads ranges of CONSISTENCY_ROWS.
RANGE_ROWS = 262_144
CONSISTENCY_ROWS = 16_384
BASE_VIEW = "_report_images"  # `images` of the whole selection, under `each_range`


@dataclass(frozen=True)
class IdentityRange:
    """Identities from `low` (included) to `high` (excluded), None: no bound; `files`: the
    indexes of the data files holding them (None: unknown, every file is read)."""

    low: str | None
    high: str | None
    files: tuple[int, ...] | None = None

    def condition(self, *, located: bool = True) -> str:
        """The range as an SQL predicate over the store's rows; `located`: with the files
        (`_file`: the file index of a located connection, `ModelSnapshot.connect`)."""
        parts = []
        if self.low is not None:
            parts.append(f"identity >= {_literal(self.low)}")
        if self.high is not None:
            parts.append(f"identity < {_literal(self.high)}")
        if located and self.files is not None:
            parts.append(f"_file IN ({', '.join(map(str, self.files)) or 'NULL'})")
        return " AND ".join(parts) or "true"


def identity_ranges(
    snap: ModelSnapshot, *, located: bool, rows: int | None = None
) -> list[IdentityRange]:
    """Ranges that cover every identity of the version, in name order (DuckDB's string
    order, which is Python's: UTF-8 bytes), of about `rows` ok rows per data file
    (RANGE_ROWS, read when called). `located`: the connection has `_file`, so each range
    names its files."""
    extents = snap.file_identities(rows or RANGE_ROWS)
    cuts = sorted({cut for extent in extents for cut in extent.cuts})
    # The first cut is the smallest identity: the first range starts open instead.
    edges: list[str | None] = [None, *cuts[1:], None]
    ranges = []
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        files = None
        if located:
            files = tuple(
                i
                for i, e in enumerate(extents)
                if e.first is not None
                and e.last is not None
                and (high is None or e.first < high)
                and (low is None or e.last >= low)
            )
        ranges.append(IdentityRange(low, high, files))
    return ranges


def each_range(
    con: duckdb.DuckDBPyConnection, ranges: Sequence[IdentityRange]
) -> Iterator[IdentityRange]:
    """Each range in turn, with `images` (and so every view) restricted to it meanwhile;
    `images` is the whole of BASE_VIEW again after the last (or on an error)."""
    try:
        for span in ranges:
            con.execute(
                f"CREATE OR REPLACE VIEW images AS SELECT * FROM {BASE_VIEW} "
                f"WHERE {span.condition()}"
            )
            yield span
    finally:
        con.execute(f"CREATE OR REPLACE VIEW images AS SELECT * FROM {BASE_VIEW}")


def _literal(text: str) -> str:
    """An SQL string literal (identity names are data: any character may appear)."""
    return "'" + text.replace("'", "''") + "'"
