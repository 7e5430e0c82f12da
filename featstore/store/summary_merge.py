"""One row per identity from per data file summaries (`featstore.store.summary`), whose
rows are each sorted by identity, one row per identity of the file, with any of the
summary schema's columns (identity first)."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from featstore.store.format import FINGERPRINT_COLUMN


def combined(schema: pa.Schema, tables: Sequence[pa.Table]) -> pa.Table:
    """One row per identity from the files' summaries (each sorted, one row per identity,
    of any of `schema`'s columns).

    Files whose identity ranges meet at most at their ends (after a compaction, or commits
    of sorted batches), as their first and last rows show, need no grouping and no
    comparison of their million names: in the order of their first identity they
    concatenate into one sorted column, where an identity a file boundary split is the
    last row of one file and the first of the next; only those rows are added up (and
    put last). Anything else is grouped whole.
    """
    tables = [t for t in tables if len(t)]
    if not tables:
        return schema.empty_table()
    ends = [(_name(t, 0), _name(t, len(t) - 1), t) for t in tables]
    ends.sort(key=lambda e: (e[0], e[1]))
    highest, split = "", set()
    for k, (first, last, _) in enumerate(ends):
        if k and first < highest:
            return merged(schema, pa.concat_tables(tables))  # files of overlapping ranges
        if k and first == highest:
            split.add(first)
        highest = max(highest, last) if k else last
    if not split:
        return pa.concat_tables([t for _, _, t in ends])
    pieces, shared = [], []
    for first, last, table in ends:
        start = 1 if first in split else 0
        end = max(start, len(table) - (1 if last in split else 0))
        shared += [table.slice(0, start), table.slice(end)]
        pieces.append(table.slice(start, end - start))
    return pa.concat_tables([*pieces, merged(schema, pa.concat_tables(shared))])


def _name(table: pa.Table, row: int) -> str:
    return str(table.column("identity")[row].as_py())


def merged(schema: pa.Schema, identities: pa.Table) -> pa.Table:
    """One row per identity of summaries' rows (of any of `schema`'s columns)."""
    how = {FINGERPRINT_COLUMN: "min", "faces_ok": "sum", "frames_ok": "sum"}
    names = [c for c in identities.column_names if c != "identity"]
    grouped = identities.group_by("identity", use_threads=False).aggregate(
        [(c, how[c]) for c in names]
    )
    return pa.table(
        [grouped.column("identity"), *(grouped.column(f"{c}_{how[c]}") for c in names)],
        schema=pa.schema([schema.field(c) for c in identities.column_names]),
    )
