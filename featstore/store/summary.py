"""Per data file summaries: what counts and resume planning read instead of every row.

    <store>/model=<m>/_featstore_summaries/<data file>.parquet
        identity, input_fingerprint, faces_ok, frames_ok   one row per identity of the file
        metadata featstore.counts: {"face": {"ok": n, ...}, "frame": {...}}   its rows by
                                                           role and status
                 featstore.data_file: {"path": ..., "bytes": ...}         the file it is of
                 featstore.identities: {"count", "valid", "first", "last"}    its identities
                                                           (first/last: [name, faces_ok, frames_ok])

A Delta data file never changes once written (a commit adds new files and removes old
ones from the log), so a summary keyed by its data file's path is true for as long as
the file exists, whatever happens around it:

- concurrent shard commits each add their own files, summarised on their own;
- an overwrite by predicate (a re-extracted identity) and a compaction write new files
  and remove the old ones from the log: the new files get summaries, the old ones are
  simply no longer listed by the version read;
- time travel reads an old version's files, whose summaries are still there (vacuum
  deletes a file's summary with the file).

A summary is made the first time a version that lists its file is counted (reading only
the three or four small columns of that one file), or by `compact`, and written atomically
beside the table; a store that cannot be written (read-only, or a reader without the
right) still gets its counts, made in memory. Each summary is checked against the log's
path, size and `numRecords` of its file, so a summary that does not belong to the file is
remade, never trusted; a data file whose size is not the log's is refused as damaged.

Counts (`featstore info`, the report's overview) and export-json's list of valid
identities read only the summaries' footers and names (`featstore.store.summary_totals`):
each file's identities, valid identities and first and last identity. Files whose identity
ranges follow each other (a compaction, commits of sorted batches) add up, an identity
split across a file boundary counted once; overlapping ranges (any other history) read the
summaries' rows instead. Resume planning reads the rows (it needs every fingerprint),
the identity and fingerprint columns only, into one Arrow table (no Python object per
identity: `featstore.extraction.planning` compares the input tree with it in Arrow).

Why not read the `identity` and fingerprint columns of every row (with row-group
statistics to skip)? Row groups cannot be skipped when every identity is wanted, and the
rows are 11 per identity against one summary row: at 10^5 identities the summaries read in
0.2 s where the two-column scan takes 0.5 s (pyarrow) to 0.4 s (DuckDB), and the gap
grows with the frames per identity (`bench/bench_store_scale.py`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from featstore.store.format import FINGERPRINT_COLUMN
from featstore.store.summary_merge import combined

if TYPE_CHECKING:
    from featstore.store.location import StoreLocation

log = logging.getLogger(__name__)

SUMMARY_DIR = "_featstore_summaries"
SUMMARY_SCHEMA = pa.schema(
    [
        pa.field("identity", pa.string()),
        pa.field(FINGERPRINT_COLUMN, pa.string()),
        pa.field("faces_ok", pa.int64()),
        pa.field("frames_ok", pa.int64()),
    ]
)
COUNTS_KEY = b"featstore.counts"
FILE_KEY = b"featstore.data_file"  # {"path": relative to the table, "bytes": its size}
IDENTITIES_KEY = b"featstore.identities"  # {"count", "valid", "first", "last"}
Counts = dict[str, dict[str, int]]  # role -> status -> rows


@dataclass(frozen=True)
class DataFile:
    """One data file of a version: its path relative to the table, and the log's figures."""

    relative: str
    rows: int | None
    size: int | None


@dataclass(frozen=True)
class Summary:
    """What a version holds, per identity and in total, without its rows.

    `identities`: SUMMARY_SCHEMA, one row per identity of the version (the files' rows of
    an identity written across several files are added up); `counts`: rows by role and
    status.
    """

    identities: pa.Table
    counts: Counts

    @property
    def valid(self) -> int:
        """Identities whose frontal image is ok and that have an ok frame (docs/formats.md)."""
        import pyarrow.compute as pc

        t = self.identities
        both = pc.and_(pc.greater(t.column("faces_ok"), 0), pc.greater(t.column("frames_ok"), 0))
        return int(pc.sum(both.cast(pa.int64())).as_py() or 0)


def summary_key(table_key: str, relative: str) -> str:
    return f"{table_key}/{SUMMARY_DIR}/{relative}.parquet"


def read_summary(
    location: StoreLocation,
    table_key: str,
    files: Sequence[DataFile],
    columns: Sequence[str] = SUMMARY_SCHEMA.names,
) -> Summary:
    """The summary of a version made of `files`, from theirs (made where missing), with
    the `columns` of SUMMARY_SCHEMA asked for (`identity` always)."""
    check_sizes(location, table_key, files)
    stored = stored_summaries(location, table_key)
    columns = ["identity", *(c for c in columns if c != "identity")]
    parts = [_file_summary(location, table_key, file, stored, columns) for file in files]
    counts: Counts = {}
    for _, part_counts in parts:
        for role, statuses in part_counts.items():
            for status, n in statuses.items():
                by_status = counts.setdefault(role, {})
                by_status[status] = by_status.get(status, 0) + n
    schema = pa.schema([SUMMARY_SCHEMA.field(c) for c in columns])
    return Summary(combined(schema, [t for t, _ in parts]), counts)


_OK_ROWS = ["identity", "faces_ok", "frames_ok"]


@dataclass(frozen=True)
class FileIdentities:
    """A data file's identities in name order: the first, the last, and those where a new
    part of about `rows` ok rows starts (`cuts`, the first included); all None or empty
    for a file without rows."""

    first: str | None
    last: str | None
    cuts: list[str]


def file_identities(
    location: StoreLocation, table_key: str, files: Sequence[DataFile], rows: int
) -> list[FileIdentities]:
    """Per data file (in `files` order), its identity extent, cut every `rows` ok rows
    (an identity without one counts as one: the summaries count ok rows, which hold the
    features, per identity).

    One file's names are held at a time (from its summary, made where missing), so a
    reader can walk a store of any size a range of identities at a time, reading only the
    files a range overlaps (`featstore report`)."""
    import pyarrow.compute as pc

    check_sizes(location, table_key, files)
    stored = stored_summaries(location, table_key)
    found = []
    for file in files:
        table, _ = _file_summary(location, table_key, file, stored, _OK_ROWS)
        if not table.num_rows:
            found.append(FileIdentities(None, None, []))
            continue
        table = table.take(pc.sort_indices(table.column("identity")))
        weight = pc.max_element_wise(
            pc.add(table.column("faces_ok"), table.column("frames_ok")), 1
        ).to_numpy()
        # Part k starts at the first identity whose rows before it reach k * rows.
        before = np.cumsum(weight) - weight
        starts = np.flatnonzero(np.diff(before // max(rows, 1), prepend=-1))
        names = table.column("identity")
        cuts = names.take(pa.array(starts)).to_pylist()
        found.append(FileIdentities(cuts[0], names[-1].as_py(), cuts))
    return found


def _file_summary(
    location: StoreLocation,
    table_key: str,
    file: DataFile,
    stored: set[str],
    columns: Sequence[str],
) -> tuple[pa.Table, Counts]:
    """One data file's summary (`columns` of it) and counts: the stored one when it is
    there and is `file`'s, else made now (`stored`: `stored_summaries`' names)."""
    part = None
    if f"{file.relative}.parquet" in stored:
        part = _read(location, summary_key(table_key, file.relative), file, columns)
    if part is None:
        made, made_counts = summarize(location, table_key, file)
        part = made.select(list(columns)), made_counts
    return part


def summarize(location: StoreLocation, table_key: str, file: DataFile) -> tuple[pa.Table, Counts]:
    """Make (and store, when the store can be written) the summary of one data file."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = location.path(f"{table_key}/{file.relative}")
    with location.fs.open_input_file(path) as handle:
        parquet = pq.ParquetFile(handle)
        names = parquet.schema_arrow.names
        wanted = ["identity", "role", "status"] + [c for c in (FINGERPRINT_COLUMN,) if c in names]
        rows = parquet.read(columns=wanted)
    if FINGERPRINT_COLUMN not in rows.column_names:  # written before fingerprints existed
        rows = rows.append_column(FINGERPRINT_COLUMN, pa.nulls(len(rows), pa.string()))
    ok = pc.equal(rows.column("status"), "ok")
    rows = rows.append_column(
        "face_ok", pc.and_(ok, pc.equal(rows.column("role"), "face")).cast(pa.int64())
    ).append_column(
        "frame_ok", pc.and_(ok, pc.equal(rows.column("role"), "frame")).cast(pa.int64())
    )
    grouped = rows.group_by("identity", use_threads=False).aggregate(
        [(FINGERPRINT_COLUMN, "min"), ("face_ok", "sum"), ("frame_ok", "sum")]
    )
    summary = pa.table(
        [
            grouped.column(c)
            for c in ("identity", f"{FINGERPRINT_COLUMN}_min", "face_ok_sum", "frame_ok_sum")
        ],
        schema=SUMMARY_SCHEMA,
    ).sort_by("identity")
    counts: Counts = {}
    by_status = rows.group_by(["role", "status"], use_threads=False).aggregate([([], "count_all")])
    for role, status, n in zip(*(by_status.column(i).to_pylist() for i in range(3)), strict=True):
        counts.setdefault(role, {})[status] = int(n)
    _write(location, summary_key(table_key, file.relative), summary, counts, file)
    return summary, counts


def forget(location: StoreLocation, table_key: str, relatives: Sequence[str]) -> None:
    """Delete the summaries of data files that were deleted (by vacuum)."""
    for relative in relatives:
        try:
            location.delete_file(summary_key(table_key, relative))
        except (OSError, FileNotFoundError):  # absent or not ours to delete: harmless
            continue


def check_sizes(location: StoreLocation, table_key: str, files: Sequence[DataFile]) -> None:
    """Refuse a data file whose size is not the log's: a summary would hide that it is
    truncated or replaced (a stat per file: the counts stay without reading the rows)."""
    import pyarrow.fs as pafs

    from featstore.store.delta_errors import damaged_store

    paths = [location.path(f"{table_key}/{f.relative}") for f in files]
    for file, info in zip(files, location.fs.get_file_info(paths), strict=True):
        if info.type != pafs.FileType.File:
            raise damaged_store(location, f"data file {info.path} is missing")
        if file.size is not None and info.size != file.size:
            raise damaged_store(
                location,
                f"data file {info.path} has {info.size} bytes, its table's log says {file.size}",
            )


def stored_summaries(location: StoreLocation, table_key: str) -> set[str]:
    """Names of the summaries present (one listing: on object storage each is a request)."""
    try:
        return {name for name, _ in location.list_files(f"{table_key}/{SUMMARY_DIR}")}
    except OSError:
        return set()


def _read(
    location: StoreLocation,
    key: str,
    file: DataFile,
    columns: Sequence[str] = SUMMARY_SCHEMA.names,
) -> tuple[pa.Table, Counts] | None:
    """A stored summary (its `columns`), or None when it is unreadable or not `file`'s
    (another name, size or row count than the log's: copied, or left by a file of the
    same name)."""
    import json

    import pyarrow.parquet as pq

    try:
        with location.fs.open_input_file(location.path(key)) as handle:
            parquet = pq.ParquetFile(handle)
            meta = parquet.schema_arrow.metadata or {}
            # All columns where the footer's totals are still to be written (below).
            wanted = list(columns) if IDENTITIES_KEY in meta else SUMMARY_SCHEMA.names
            summary = parquet.read(columns=wanted, use_threads=False)
        counts = json.loads(meta[COUNTS_KEY])
        of = json.loads(meta[FILE_KEY])
        schema = pa.schema([SUMMARY_SCHEMA.field(c) for c in wanted])
        summary = summary.replace_schema_metadata(None).cast(schema)
    except (OSError, pa.ArrowException, KeyError, ValueError, TypeError) as exc:
        log.warning("summary %s unreadable, made again: %s", location.describe(key), exc)
        return None
    counted = sum(n for by_status in counts.values() for n in by_status.values())
    expected = {"path": file.relative, "bytes": file.size}
    if of != expected or (file.rows is not None and counted != file.rows):
        log.warning(
            "summary %s is of %s (%d rows), not of %s (%s rows): made again",
            location.describe(key),
            of,
            counted,
            expected,
            file.rows,
        )
        return None
    if IDENTITIES_KEY not in meta:  # written before footers had totals: add them, once
        _write(location, key, summary, counts, file)
    return summary.select(list(columns)), counts


def _write(
    location: StoreLocation, key: str, summary: pa.Table, counts: Counts, file: DataFile
) -> None:
    import json

    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    meta = {
        COUNTS_KEY: json.dumps(counts).encode(),
        FILE_KEY: json.dumps({"path": file.relative, "bytes": file.size}).encode(),
        IDENTITIES_KEY: json.dumps(_identities_meta(summary)).encode(),
    }
    pq.write_table(summary.replace_schema_metadata(meta), sink, compression="zstd")
    try:
        location.write_atomic(key, sink.getvalue())
    except OSError as exc:  # a read-only store: the counts are right, only not kept
        log.debug("summary %s not stored: %s", location.describe(key), exc)


def _identities_meta(summary: pa.Table) -> dict[str, object]:
    """The footer's totals of one file's summary (sorted by identity, one row each)."""
    n = len(summary)

    def edge(i: int) -> list[object]:
        return [summary.column(c)[i].as_py() for c in ("identity", "faces_ok", "frames_ok")]

    totals = Summary(summary, {})
    return {
        "count": n,
        "valid": totals.valid,
        "first": edge(0) if n else None,
        "last": edge(n - 1) if n else None,
    }
