"""A model's rows replaced whole in one commit, written in memory that does not grow.

`import-json` replaces a model's rows with a whole file's. delta-rs's `write_deltalake`
holds what it is given in memory until it commits (measured with deltalake 1.6: 134 MB
more for 34 MB of rows, 344 MB for 137 MB, whatever `target_file_size`), so a several-GB
trainer JSON would need GBs of memory to import. Here pyarrow writes the Parquet files
as the batches come, a row group at a time, and delta-rs commits them as one transaction
(`DeltaTable.create_write_transaction`, mode "overwrite": every file the table had is
removed in the same commit). Readers see the old rows or the new ones, never a mix; files
of a run killed before its commit belong to no version (`featstore vacuum` removes them).

Each file's Delta statistics carry its row count and the range of `identity`, which
delta-rs uses to skip files when a later commit replaces some identities.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from featstore.store.properties import ROW_GROUP_ROWS, commit_properties

if TYPE_CHECKING:
    from featstore.store.table import ModelTable

# Rows per data file: 64 row groups (256 MB of 768-dim features before compression).
ROWS_PER_FILE = 64 * ROW_GROUP_ROWS


def replace_rows(
    table: ModelTable, schema: pa.Schema, batches: Iterable[pa.RecordBatch], command: str
) -> None:
    """Make `batches` (of `schema`, Delta's types) the table's rows, in one commit.

    The table must exist (`ModelTable.claim` made it and set its provenance, which this
    commit keeps).
    """
    files = _FileWriter(table, schema)
    added = 0
    try:
        for batch in batches:
            files.write(batch)
            added += batch.num_rows
        actions = files.close()
    except BaseException:
        files.discard()  # nothing refers to them; spare vacuum the work
        raise
    try:
        table.open().delta.create_write_transaction(
            actions,
            mode="overwrite",
            schema=schema,
            commit_properties=commit_properties(command, rows_added=added),
        )
    except BaseException:
        # delta-rs also raises after the commit (a post-commit hook: a checkpoint that
        # could not be written): the files are then the table's, and must stay.
        if not _referenced(table, files.written):
            files.discard()
        raise


def _referenced(table: ModelTable, names: list[str]) -> bool:
    """Whether the table's latest version holds any of `names`; True when unsure."""
    try:
        held = {path.rsplit("/", 1)[-1] for path in table.open().files}
    except Exception:  # the log cannot be read: keep the files (vacuum decides later)
        return True
    return not held.isdisjoint(names)


class _FileWriter:
    """Parquet files in the table's folder: row groups of ROW_GROUP_ROWS rows (as the
    other writers make them), a new file every ROWS_PER_FILE rows."""

    def __init__(self, table: ModelTable, schema: pa.Schema) -> None:
        self.table, self.schema = table, schema
        self.fs = table.location.fs
        self.writer: pq.ParquetWriter | None = None
        self.pending: list[pa.RecordBatch] = []  # less than a row group
        self.pending_rows = 0
        self.name = ""
        self.rows = 0
        self.low: str | None = None
        self.high: str | None = None
        self.written: list[str] = []
        self.actions: list[Any] = []

    def write(self, batch: pa.RecordBatch) -> None:
        self.pending.append(batch)
        self.pending_rows += batch.num_rows
        while self.pending_rows >= ROW_GROUP_ROWS:
            self._write_group(ROW_GROUP_ROWS)

    def close(self) -> list[Any]:
        """The Delta add actions of every file written."""
        if self.pending_rows:
            self._write_group(self.pending_rows)
        if self.writer is not None:
            self._finish()
        return self.actions

    def discard(self) -> None:
        if self.writer is not None:
            with contextlib.suppress(Exception):  # the error being handled matters more
                self.writer.close()
        for name in self.written:
            with contextlib.suppress(OSError):
                self.fs.delete_file(self._path(name))

    def _open(self) -> None:
        self.name = f"part-{uuid.uuid4()}.zstd.parquet"
        self.written.append(self.name)
        self.writer = pq.ParquetWriter(
            self._path(self.name), self.schema, filesystem=self.fs, compression="zstd"
        )
        self.rows, self.low, self.high = 0, None, None

    def _write_group(self, rows: int) -> None:
        pending = pa.Table.from_batches(self.pending, self.schema)
        group, rest = pending.slice(0, rows), pending.slice(rows)
        if self.writer is None:
            self._open()
        assert self.writer is not None
        self.writer.write_table(group, row_group_size=rows)
        self.rows += rows
        bounds = pc.min_max(group.column("identity"))
        low, high = bounds["min"].as_py(), bounds["max"].as_py()
        self.low = low if self.low is None else min(self.low, low)
        self.high = high if self.high is None else max(self.high, high)
        self.pending, self.pending_rows = rest.to_batches(), rest.num_rows
        if self.rows >= ROWS_PER_FILE:
            self._finish()

    def _finish(self) -> None:
        from deltalake.transaction import AddAction

        assert self.writer is not None
        writer, self.writer = self.writer, None  # closed once, even if closing fails
        writer.close()
        info = self.fs.get_file_info(self._path(self.name))
        stats = {
            "numRecords": self.rows,
            "minValues": {"identity": self.low},
            "maxValues": {"identity": self.high},
            "nullCount": {"identity": 0},
        }
        modified = int(info.mtime.timestamp() * 1000) if info.mtime else int(time.time() * 1000)
        self.actions.append(AddAction(self.name, info.size, {}, modified, True, json.dumps(stats)))

    def _path(self, name: str) -> str:
        return self.table.location.path(f"{self.table.key}/{name}")
