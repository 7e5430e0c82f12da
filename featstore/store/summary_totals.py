"""What the data files' summaries answer without their fingerprints: a version's totals
(identities, valid identities, rows by role and status) from the summaries' footers, and
its valid identities as Arrow strings (`featstore.store.summary` has the summaries).

Each summary's footer holds its file's identities, valid identities and first and last
identity (`featstore.identities`). Files whose identity ranges follow each other add up,
an identity a file boundary splits counted once and valid on its joined counts;
overlapping ranges (any other history) read the summaries' rows instead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from featstore.store.format import FINGERPRINT_COLUMN
from featstore.store.summary import (
    COUNTS_KEY,
    FILE_KEY,
    IDENTITIES_KEY,
    SUMMARY_SCHEMA,
    Counts,
    DataFile,
    Summary,
    check_sizes,
    read_summary,
    stored_summaries,
    summary_key,
)
from featstore.store.summary_merge import combined

if TYPE_CHECKING:
    from featstore.store.location import StoreLocation

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Totals:
    """A version's identities, valid identities and rows by role and status."""

    identities: int
    valid: int
    counts: Counts


@dataclass(frozen=True)
class _Edge:
    """An identity at one end of a file's summary, with its ok rows in that file."""

    identity: str
    faces_ok: int
    frames_ok: int

    @property
    def valid(self) -> bool:
        return self.faces_ok > 0 and self.frames_ok > 0

    def __add__(self, other: _Edge) -> _Edge:
        return _Edge(
            self.identity, self.faces_ok + other.faces_ok, self.frames_ok + other.frames_ok
        )


@dataclass(frozen=True)
class _FileTotals:
    count: int
    valid: int
    first: _Edge | None
    last: _Edge | None
    counts: Counts


def read_totals(location: StoreLocation, table_key: str, files: Sequence[DataFile]) -> Totals:
    """The totals of a version made of `files`, from the summaries' footers when every file
    has one and their identity ranges follow each other; from the summaries' rows else."""
    check_sizes(location, table_key, files)
    stored = stored_summaries(location, table_key)
    parts = []
    for file in files:
        part = None
        if f"{file.relative}.parquet" in stored:
            part = _read_footer(location, summary_key(table_key, file.relative), file)
        if part is None:
            return _totals_of(read_summary(location, table_key, files))
        parts.append(part)
    added = _add_up(parts)
    if added is None:  # overlapping identity ranges
        return _totals_of(read_summary(location, table_key, files))
    return added


def _totals_of(summary: Summary) -> Totals:
    return Totals(len(summary.identities), summary.valid, summary.counts)


def _add_up(parts: Sequence[_FileTotals]) -> Totals | None:
    """The files' totals added up in the order of their first identity; None when two
    files' identity ranges overlap by more than the one identity a boundary may split."""
    counts: Counts = {}
    for part in parts:
        for role, statuses in part.counts.items():
            for status, n in statuses.items():
                by_status = counts.setdefault(role, {})
                by_status[status] = by_status.get(status, 0) + n
    ordered = sorted(
        (p for p in parts if p.first is not None and p.last is not None),
        # By first, then last identity: a file holding only the identity a boundary
        # splits comes before the file it continues into.
        key=lambda p: (p.first.identity, p.last.identity) if p.first and p.last else ("", ""),
    )
    identities = sum(p.count for p in ordered)
    valid = sum(p.valid for p in ordered)
    tail: _Edge | None = None  # the last identity so far, its rows of every file added up
    for part in ordered:
        assert part.first is not None and part.last is not None
        if tail is not None and part.first.identity < tail.identity:
            return None
        if tail is not None and part.first.identity == tail.identity:
            joined = tail + part.first  # one identity, counted in both files
            identities -= 1
            valid += joined.valid - tail.valid - part.first.valid
            tail = joined if part.count == 1 else part.last
        else:
            tail = part.last
    return Totals(identities, valid, counts)


def valid_identities(
    location: StoreLocation, table_key: str, files: Sequence[DataFile]
) -> pa.ChunkedArray:
    """The version's valid identities (frontal image ok, an ok frame), sorted by their
    UTF-8 bytes (= Unicode code points, Python's order), as Arrow strings: export-json
    walks them a range at a time, never holding a Python object per identity.

    When the files' identity ranges follow each other (their footers say so), each file's
    valid names are read on their own (one file's summary decoded at a time, its names
    kept); an identity split across a boundary is decided on its joined counts. Otherwise
    the summaries' rows are combined whole. Fingerprints (planning's, up to hundreds of
    bytes each) are never read."""
    import pyarrow.compute as pc

    check_sizes(location, table_key, files)
    stored = stored_summaries(location, table_key)
    footers = []
    for file in files:
        key = summary_key(table_key, file.relative)
        footer = _read_footer(location, key, file) if f"{file.relative}.parquet" in stored else None
        if footer is None:
            return _valid_of(read_summary(location, table_key, files).identities)
        footers.append((key, footer))
    footers = [(k, f) for k, f in footers if f.first is not None and f.last is not None]
    # By first, then last identity, as _add_up orders them.
    footers.sort(
        key=lambda kf: (
            (kf[1].first.identity, kf[1].last.identity) if kf[1].first and kf[1].last else ("", "")
        )
    )
    if _add_up([f for _, f in footers]) is None:  # overlapping ranges: combine the rows
        parts = [_read_counts(location, key) for key, _ in footers]
        if any(part is None for part in parts):
            return _valid_of(read_summary(location, table_key, files).identities)
        return _valid_of(combined(SUMMARY_SCHEMA, [p for p in parts if p is not None]))
    chunks: list[pa.Array] = []
    tail: _Edge | None = None  # the last identity so far, its rows in every file added up
    for key, footer in footers:
        part = _read_counts(location, key)
        if part is None:
            return _valid_of(read_summary(location, table_key, files).identities)
        names = part.column("identity")
        keep = pc.and_(
            pc.greater(part.column("faces_ok"), 0), pc.greater(part.column("frames_ok"), 0)
        )
        assert footer.first is not None and footer.last is not None
        if tail is not None and footer.first.identity == tail.identity:
            # Split across the boundary: out of both files' lists, in once when joined.
            keep = pc.and_(keep, pc.not_equal(names, tail.identity))
            chunks = _without_last(chunks, tail.identity)
            tail = tail + footer.first
            if tail.valid:
                chunks.append(pa.array([tail.identity], pa.string()))
            if footer.count == 1:
                continue
        tail = footer.last
        chunks.append(names.filter(keep).combine_chunks())
    return pa.chunked_array(chunks, pa.string())


def _without_last(chunks: list[pa.Array], identity: str) -> list[pa.Array]:
    """`chunks` without `identity` at its very end (where the previous file put it)."""
    while chunks and len(chunks[-1]) == 0:
        chunks = chunks[:-1]
    if chunks and chunks[-1][-1].as_py() == identity:
        chunks = [*chunks[:-1], chunks[-1].slice(0, len(chunks[-1]) - 1)]
    return chunks


def _valid_of(table: pa.Table) -> pa.ChunkedArray:
    """The valid identities of summary rows (one per identity), sorted."""
    import pyarrow.compute as pc

    valid = pc.and_(
        pc.greater(table.column("faces_ok"), 0), pc.greater(table.column("frames_ok"), 0)
    )
    names = table.column("identity").filter(valid).combine_chunks()
    if (
        len(names) > 1
        and not pc.all(pc.less(names.slice(0, len(names) - 1), names.slice(1))).as_py()
    ):
        names = pc.take(names, pc.sort_indices(names))
    return pa.chunked_array([names], pa.string())


def _read_counts(location: StoreLocation, key: str) -> pa.Table | None:
    """A summary's identity and count columns (its fingerprints as nulls)."""
    import pyarrow.parquet as pq

    try:
        with location.fs.open_input_file(location.path(key)) as handle:
            # One thread, no dataset layer: 30 MB less peak at 10^6 identities (42 files).
            table = pq.ParquetFile(handle).read(
                columns=["identity", "faces_ok", "frames_ok"], use_threads=False
            )
    except (OSError, pa.ArrowException) as exc:
        log.warning("summary %s unreadable, made again: %s", location.describe(key), exc)
        return None
    nulls = pa.nulls(len(table), pa.string())
    table = table.replace_schema_metadata(None)
    return table.add_column(1, FINGERPRINT_COLUMN, nulls).cast(SUMMARY_SCHEMA)


def _read_footer(location: StoreLocation, key: str, file: DataFile) -> _FileTotals | None:
    """A stored summary's totals from its footer alone, or None when it has none (written
    before they were), is unreadable or is not `file`'s."""
    import json

    import pyarrow.parquet as pq

    try:
        with location.fs.open_input_file(location.path(key)) as handle:
            meta = pq.read_schema(handle).metadata or {}
        if IDENTITIES_KEY not in meta:
            return None
        counts = json.loads(meta[COUNTS_KEY])
        of = json.loads(meta[FILE_KEY])
        ids = json.loads(meta[IDENTITIES_KEY])
        first, last = (
            None if e is None else _Edge(str(e[0]), int(e[1]), int(e[2]))
            for e in (ids["first"], ids["last"])
        )
        totals = _FileTotals(int(ids["count"]), int(ids["valid"]), first, last, counts)
    except (OSError, pa.ArrowException, KeyError, ValueError, TypeError, IndexError):
        return None  # the rows' reader says why, and makes it again
    counted = sum(n for by_status in counts.values() for n in by_status.values())
    if of != {"path": file.relative, "bytes": file.size}:
        return None
    if file.rows is not None and counted != file.rows:
        return None
    return totals
