"""`ModelSnapshot`: one model's table at one version, owning everything read from it.

    snap = store.model("dinov2_vitb14")          # the latest version (or version=3)
    snap.version, snap.dim, snap.provenance       # read once, from the log
    snap.files                                    # its data files (never a glob)
    snap.fingerprints()                           # identity -> input fingerprint
    with snap.connect() as con: ...               # DuckDB views over exactly these files
    snap.commit(rows, identities=[...], command="extract")   # moves to the new version
    snap.compact("compact"); snap.vacuum(168, dry_run=True); snap.history()

The way deltalake's `DeltaTable` owns its state: no function takes a table and a snapshot
of it side by side. A write moves the snapshot to the version it made.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote

import pyarrow as pa

from featstore.errors import StoreError
from featstore.store.delta_errors import store_errors
from featstore.store.fields import POSE_COLUMNS
from featstore.store.format import (
    FINGERPRINT_COLUMN,
    provenance_differences,
    provenance_json,
    to_delta,
)
from featstore.store.history import Version, parse_version
from featstore.store.properties import commit_properties, writer_properties

if TYPE_CHECKING:
    import duckdb
    from deltalake import DeltaTable

    from featstore.errors import ProvenanceMismatchError
    from featstore.store.location import StoreLocation
    from featstore.store.summary import DataFile, FileIdentities, Summary
    from featstore.store.summary_totals import Totals

_COMMIT_ATTEMPTS = 20


class TableRef(Protocol):
    """What a snapshot needs of its table (`featstore.store.table.ModelTable`)."""

    model: str
    key: str
    location: StoreLocation

    def open(self, version: int | None = None) -> ModelSnapshot: ...

    def open_log(self, version: int | None = None) -> ModelSnapshot: ...

    def mismatch(
        self, diffs: list[str], *, concurrent: bool = False
    ) -> ProvenanceMismatchError: ...


class Connector(Protocol):
    """What a snapshot needs of its store to connect (`Store.connect_snapshots`)."""

    def connect_snapshots(
        self, snapshots: list[ModelSnapshot], *, located: bool = False
    ) -> duckdb.DuckDBPyConnection: ...


@dataclass(frozen=True)
class ModelInfo:
    """One model in the store at one version, as its provenance records it (a value)."""

    name: str
    dim: int
    provenance: dict[str, Any]
    version: int = -1  # the table version read
    table_id: str = ""  # the Delta table's id: a table deleted and made again gets a new one

    @property
    def signature(self) -> str:
        """`<table id>@<version>`: names these rows exactly (a version never changes)."""
        return f"{self.table_id}@{self.version}"


class ModelSnapshot:
    """The Delta table of one model at one committed version.

    Made by `Store.model` (or `ModelTable.open`); reads its provenance when made and
    refuses a table featstore did not write.
    """

    def __init__(self, table: TableRef, delta: DeltaTable, store: Connector | None) -> None:
        self.table = table
        self.delta = delta
        self.store = store
        self.provenance = self._read_provenance()
        self._files: tuple[int, list[str]] | None = None

    def __repr__(self) -> str:
        return f"ModelSnapshot({self.name!r}, version={self.version})"

    def __str__(self) -> str:
        return str(self.table)

    # -- what it is -----------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.table.model

    @property
    def version(self) -> int:
        return int(self.delta.version())

    @property
    def table_id(self) -> str:
        return str(self.delta.metadata().id)

    @property
    def dim(self) -> int:
        try:
            return int(self.provenance["feature_dim"])
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"{self.table}: its provenance records no feature_dim.") from exc

    @property
    def signature(self) -> str:
        """`<table id>@<version>`: names these rows exactly (a version never changes)."""
        return f"{self.table_id}@{self.version}"

    @property
    def info(self) -> ModelInfo:
        """What this snapshot is, as a plain value (for caches and summaries)."""
        return ModelInfo(self.name, self.dim, self.provenance, self.version, self.table_id)

    @property
    def files(self) -> list[str]:
        """The data files of this version, as paths in the store's filesystem."""
        if self._files is None or self._files[0] != self.version:
            paths = version_files(self.delta, self.table.location, self.table.key)
            self._files = (self.version, paths)
        return self._files[1]

    def file_sizes(self) -> list[int]:
        return [int(size) for size in self._column("size_bytes")]

    def schema(self) -> pa.Schema:
        return pa.schema(self.delta.schema().to_arrow())

    def row_count(self) -> int:
        """Rows of this version, from the log's file statistics (no data file is read)."""
        return sum(int(n or 0) for n in self._column("num_records"))

    # -- preconditions: one function each, with its one message ----------------------------

    def require_rows(self) -> None:
        """Refuse a version without rows (a model claimed but never filled)."""
        if not self.row_count():
            raise StoreError(
                f"model {self.name} in {self.table.location} has no rows yet.\n"
                "Hint: run `featstore extract` (or `featstore import-json`) into it first."
            )

    def require_pose(self, alternative: str | None = None) -> None:
        """Refuse rows without the head pose columns (stores made before them).

        `alternative`: what else the caller could do, added to the hint.
        """
        missing = [c for c in POSE_COLUMNS if c not in self.schema().names]
        if missing:
            raise StoreError(
                f"model {self.name} of {self.table.location} has no head pose columns "
                f"({', '.join(missing)}): it was made before featstore computed the pose.\n"
                f"Hint: `featstore derive --store {self.table.location}` adds them from the "
                "stored keypoints (no model, no image read), or extract it again with "
                "--overwrite" + (f", or {alternative}." if alternative else ".")
            )

    # -- reading --------------------------------------------------------------------------

    def connect(self, *, located: bool = False) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection whose views read this version of this model only.

        `located`: every row also carries `_file` (its file's index in `files`) and `_row`
        (its row in that file), so a caller can select rows with SQL and read their wide
        columns itself (`FeatureDataset`); local stores only (`Store.connect_snapshots`).
        """
        if self.store is None:
            raise StoreError(f"{self.table}: opened without its store; use Store.model().")
        return self.store.connect_snapshots([self], located=located)

    def summary(self, columns: Sequence[str] | None = None) -> Summary:
        """Per identity its input fingerprint and ok rows (or only the `columns` of those
        asked for), and the rows by role and status, from each data file's summary
        (`featstore.store.summary`), not from the rows."""
        from featstore.store.summary import SUMMARY_SCHEMA, read_summary

        with store_errors(str(self.table), self.table.location):
            return read_summary(
                self.table.location,
                self.table.key,
                self._data_files(),
                columns or SUMMARY_SCHEMA.names,
            )

    def totals(self) -> Totals:
        """Identities, valid identities and rows by role and status, from the summaries'
        footers (O(files), not O(identities), when the files' identity ranges follow
        each other)."""
        from featstore.store.summary_totals import read_totals

        with store_errors(str(self.table), self.table.location):
            return read_totals(self.table.location, self.table.key, self._data_files())

    def valid_identities(self) -> pa.ChunkedArray:
        """The valid identities in Python's string order, as one Arrow array (from the
        summaries: `featstore.store.summary.valid_identities`)."""
        from featstore.store.summary_totals import valid_identities

        with store_errors(str(self.table), self.table.location):
            return valid_identities(self.table.location, self.table.key, self._data_files())

    def file_identities(self, rows: int) -> list[FileIdentities]:
        """Per data file (in `files` order), its first and last identity and where each
        part of about `rows` ok rows starts (`featstore.store.summary.file_identities`)."""
        from featstore.store.summary import file_identities

        with store_errors(str(self.table), self.table.location):
            return file_identities(self.table.location, self.table.key, self._data_files(), rows)

    def _data_files(self) -> list[DataFile]:
        from featstore.store.summary import DataFile

        actions = pa.table(self.delta.get_add_actions(flatten=True))
        if not actions.num_rows:
            return []
        return [
            DataFile(unquote(path), _int(rows), _int(size))
            for path, rows, size in zip(
                *(actions.column(c).to_pylist() for c in ("path", "num_records", "size_bytes")),
                strict=True,
            )
        ]

    def fingerprint_table(self) -> pa.Table:
        """identity, input fingerprint of what the version holds, one row per identity (in
        no promised order), in Arrow: planning compares a million of them without a Python
        object each (`featstore.extraction.planning`). Reads those two columns of the
        summaries only."""
        from featstore.store.summary import SUMMARY_SCHEMA

        columns = ["identity", FINGERPRINT_COLUMN]
        if not self.files or FINGERPRINT_COLUMN not in self.schema().names:
            return pa.schema([SUMMARY_SCHEMA.field(c) for c in columns]).empty_table()
        return self.summary(columns).identities

    def fingerprints(self) -> dict[str, str]:
        """identity -> input fingerprint of what the version holds (from the summaries;
        a dict for a few identities: planning reads `fingerprint_table`)."""
        table = self.fingerprint_table()
        return dict(zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True))

    def frontal_paths(self) -> dict[str, str]:
        """identity -> stored path of its frontal image."""
        import pyarrow.compute as pc

        if not self.files:
            return {}
        faces = self._scan(["identity", "image_path"], filter=pc.field("role") == "face")
        return dict(zip(*(faces.column(c).to_pylist() for c in faces.column_names), strict=True))

    def history(self, limit: int | None = None) -> list[Version]:
        """The table's versions up to this one, newest first."""
        with store_errors(str(self.table), self.table.location):
            entries = self.delta.history(limit)
        versions = []
        totals: dict[int, int | None] = {}
        for entry in entries:
            found = parse_version(entry)
            params = entry.get("operationParameters") or {}
            if found.rows_removed is None and params.get("mode") == "Overwrite":
                # delta-rs reports no removed rows for an overwrite (with or without a
                # predicate; files it rewrote count as added): the row totals tell them.
                found = replace(found, rows_removed=self._rows_removed(found, totals))
            versions.append(found)
        return versions

    # -- writing (each moves the snapshot to the version it made) --------------------------

    def commit(self, rows: pa.Table, *, identities: Sequence[str], command: str) -> None:
        """Make `rows` the rows of `identities` in one commit (their old rows, if any, go).

        An overwrite whose predicate names the identities: two writers of the same identity
        conflict instead of doubling its rows. `schema_mode="merge"` lets a table made
        before a column existed (the head pose) take rows that have it.

        On a conflict the snapshot moves to the latest version, the provenance is checked
        again (a concurrent run may have claimed the model with other settings), and the
        commit is retried: nothing is lost and nothing is written twice.
        """
        from deltalake import write_deltalake
        from deltalake.exceptions import CommitFailedError

        data = to_delta(rows)
        predicate = "identity IN (" + ", ".join(map(_sql, identities)) + ")"
        for attempt in range(_COMMIT_ATTEMPTS):
            try:
                with store_errors(str(self.table), self.table.location):
                    write_deltalake(
                        self.delta,
                        data,
                        mode="overwrite",
                        predicate=predicate,
                        schema_mode="merge",
                        writer_properties=writer_properties(),
                        commit_properties=commit_properties(command),
                    )
                return
            except StoreError as exc:
                if not isinstance(exc.__cause__, CommitFailedError):
                    raise
                if attempt + 1 == _COMMIT_ATTEMPTS:
                    raise StoreError(
                        f"{self.table}: gave up committing after {_COMMIT_ATTEMPTS} "
                        "conflicting concurrent commits.\nHint: rerun; what was committed "
                        "is kept."
                    ) from None
                time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
                self.refresh()

    def refresh(self, expected: Mapping[str, Any] | None = None) -> None:
        """Move to the latest version; refuse if its provenance is not `expected` (default:
        the provenance this snapshot held)."""
        expected = dict(self.provenance if expected is None else expected)
        with store_errors(str(self.table), self.table.location):
            self.delta.update_incremental()
        self.provenance = self._read_provenance()
        diffs = provenance_differences(self.provenance, expected)
        if diffs:
            raise self.table.mismatch(diffs, concurrent=True)

    def set_provenance(self, provenance: Mapping[str, Any]) -> None:
        """Record `provenance` in the table's metadata (a metadata commit)."""
        with store_errors(str(self.table), self.table.location):
            self.delta.alter.set_table_description(provenance_json(provenance))
        self.provenance = self._read_provenance()

    def delete_rows(self, command: str) -> None:
        """Remove every row (one commit); the provenance stays."""
        with store_errors(str(self.table), self.table.location):
            self.delta.delete(commit_properties=commit_properties(command))

    def delete_identities(self, identities: Sequence[str], command: str) -> None:
        """Remove every row of `identities` in one commit (the versions before it keep
        them). `commit` with no rows: the same overwrite by predicate, conflicts retried
        and provenance checked (delta-rs' own `delete` rewrites the other rows of a file
        with `string_view` columns, which pyarrow's filters cannot compare)."""
        if identities:
            self.commit(self.schema().empty_table(), identities=identities, command=command)

    def identity_rows(self, identities: Sequence[str]) -> dict[str, int]:
        """identity -> its rows in this version, for `identities` (a scan of one column)."""
        import pyarrow.compute as pc

        if not self.files or not identities:
            return {}
        found = self._scan(["identity"], filter=pc.field("identity").isin(list(identities)))
        counts = found.group_by("identity").aggregate([("identity", "count")])
        names, rows = counts.column("identity"), counts.column("identity_count")
        return dict(zip(names.to_pylist(), rows.to_pylist(), strict=True))

    def compact(self, command: str) -> dict[str, int]:
        """Rewrite the files into large ones sorted by (identity, role, frame_index), in one
        commit (see `featstore.store.compaction`); content unchanged."""
        from featstore.store.compaction import sorted_rewrite

        before = len(self.files)
        if before < 2:
            return {"files_before": before, "files_after": before}
        with store_errors(str(self.table), self.table.location):
            sorted_rewrite(
                self.delta,
                self.files,
                self.table.location,
                writer_properties=writer_properties(),
                commit_properties=commit_properties(command),
            )
            self.delta.update_incremental()
        self.summary()  # the new files' summaries, while their pages are in the cache
        return {"files_before": before, "files_after": len(self.files)}

    def vacuum(
        self, retain_hours: float, *, dry_run: bool, no_writer_running: bool = False
    ) -> list[str]:
        """Delete files no version within `retain_hours` needs (orphans of killed runs too),
        never one newer than this version's commit; see `featstore.store.vacuuming`."""
        from featstore.store.vacuuming import vacuum_table

        removed = vacuum_table(
            self.delta,
            self.table.location,
            self.table.key,
            retain_hours,
            dry_run=dry_run,
            no_writer_running=no_writer_running,
        )
        if not dry_run:
            from featstore.store.summary import forget

            forget(self.table.location, self.table.key, [unquote(p) for p in removed])
        return removed

    # -- internals ------------------------------------------------------------------------

    def _read_provenance(self) -> dict[str, Any]:
        import json

        description = self.delta.metadata().description
        try:
            value = json.loads(description or "")
        except ValueError:
            value = None
        if not isinstance(value, dict) or value.get("model") != self.table.model:
            raise StoreError(
                f"{self.table} is a Delta table that featstore did not write (its description "
                "holds no featstore provenance for this model).\nHint: keep other programs' "
                "tables out of the store's model=<m> folders."
            )
        return value

    def _column(self, name: str) -> list[Any]:
        return add_actions(self.delta, name)

    def _scan(self, columns: list[str], filter: Any = None) -> pa.Table:
        import pyarrow.dataset as pads

        fs = self.table.location.fs
        dataset = pads.dataset(self.files, filesystem=fs, format="parquet")
        return dataset.to_table(columns=columns, filter=filter)

    def _rows_removed(self, found: Version, totals: dict[int, int | None]) -> int | None:
        before, after = (self._row_total(v, totals) for v in (found.version - 1, found.version))
        if before is None or after is None or found.rows_added is None:
            return None
        return before + found.rows_added - after

    def _row_total(self, version: int, totals: dict[int, int | None]) -> int | None:
        """Rows of `version` from its files' statistics (None when it cannot be read)."""
        if version < 0:
            return 0
        if version not in totals:
            try:
                counts = self.table.open_log(version)._column("num_records")
                totals[version] = sum(int(n) for n in counts) if None not in counts else None
            except StoreError:  # vacuumed or damaged: the count stays unknown
                totals[version] = None
        return totals[version]


def _sql(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def add_actions(delta: DeltaTable, name: str) -> list[Any]:
    """Column `name` of a Delta version's add actions (one entry per data file)."""
    actions = pa.table(delta.get_add_actions(flatten=True))
    return actions.column(name).to_pylist() if actions.num_rows else []


def version_files(delta: DeltaTable, location: StoreLocation, key: str) -> list[str]:
    """A Delta version's data files, as paths in the store's filesystem (never a glob)."""
    return [location.path(f"{key}/{unquote(p)}") for p in add_actions(delta, "path")]
