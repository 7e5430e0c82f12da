"""Identity ranges: how the report reads a store of any size a bounded part at a time.

The views join and group by identity (`valid_frames` joins the frames to their identity's
frontal row, `identities` groups an identity's rows), and DuckDB holds such a join's or
group's table for all the rows a query reads: O(identities) for the whole store. A query
restricted to a range of identity names holds it for that range only, and reads only the
row groups whose identity statistics overlap it (data files are written in identity order),
so the report's memory stays flat from 10^4 to 10^6 identities (issue 25).

The cuts come from the data files' summaries (`ModelSnapshot.identity_bounds`): one file's
names in memory at a time, never the whole store's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from featstore.store import ModelSnapshot

RANGE_IDENTITIES = 32_768  # identities per range and data file, at most (about 330k rows)


@dataclass(frozen=True)
class IdentityRange:
    """Identities from `low` (included) to `high` (excluded); None: no bound."""

    low: str | None
    high: str | None

    def condition(self, column: str = "identity") -> str:
        """The range as an SQL predicate over `column`."""
        parts = []
        if self.low is not None:
            parts.append(f"{column} >= {_literal(self.low)}")
        if self.high is not None:
            parts.append(f"{column} < {_literal(self.high)}")
        return " AND ".join(parts) or "true"


def identity_ranges(snap: ModelSnapshot, every: int | None = None) -> list[IdentityRange]:
    """Ranges that cover every identity of the version, in name order (DuckDB's string
    order, which is Python's: UTF-8 bytes); `every`: RANGE_IDENTITIES, read when called."""
    # The first cut is the smallest identity: the first range starts open instead.
    bounds = snap.identity_bounds(every or RANGE_IDENTITIES)
    edges: list[str | None] = [None, *bounds[1:], None]
    return [IdentityRange(low, high) for low, high in zip(edges[:-1], edges[1:], strict=True)]


def _literal(text: str) -> str:
    """An SQL string literal (identity names are data: any character may appear)."""
    return "'" + text.replace("'", "''") + "'"
