"""One model's rows: a Delta Lake table written and read with delta-rs (`deltalake`).

    <store>/model=<m>/_delta_log/   the commits: which Parquet files make each version
    <store>/model=<m>/*.parquet     the data files (also files no version needs, until vacuum)

What lives where:

- Provenance (how every row was made) is the table's metadata `description`, as JSON; the
  table's `name` is the model. delta-rs refuses custom `configuration` keys, and the
  description is part of the same metadata action, so a change of provenance is a metadata
  commit: a writer whose snapshot predates it fails to commit ("Metadata changed since last
  commit"), re-reads the provenance and refuses to mix (`commit`).
- Each row carries its identity's input fingerprint, so a rerun learns what is done from
  the table itself (`fingerprints`), one scan of two small columns.
- An identity's rows are replaced as a whole in one commit: an overwrite whose predicate
  names the batch's identities removes their old rows (if any) and adds the new ones. The
  predicate is what makes two writers of the same identity conflict (a plain append never
  does, and would double its rows); shards write disjoint identities, and files whose
  min/max statistics exclude the batch are not read. A conflicting commit is retried on
  the new snapshot.

Every deltalake exception is turned into a StoreError naming the table and what to do.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import pyarrow as pa

import featstore
from featstore.errors import ProvenanceMismatchError, StoreError
from featstore.store.format import (
    FINGERPRINT_COLUMN,
    check_model_name,
    delta_schema,
    model_key,
    provenance_differences,
    provenance_json,
    to_delta,
)
from featstore.store.location import StoreLocation

if TYPE_CHECKING:
    from deltalake import DeltaTable

# Row groups of this many rows: a one-identity lookup decodes one group (a few MB of
# features), not a whole file; DuckDB and delta-rs skip the others by min/max identity.
ROW_GROUP_ROWS = 4096
_COMMIT_ATTEMPTS = 20
_LOG = "_delta_log"


@dataclass(frozen=True)
class Version:
    """One entry of a table's history."""

    version: int
    timestamp_ms: int
    operation: str
    command: str | None  # the featstore command that committed it
    featstore_version: str | None
    rows_added: int | None
    rows_removed: int | None
    files_added: int | None
    files_removed: int | None


class ModelTable:
    """The Delta table of one model of a store.

    Args:
        location: the store's root.
        model: the model's name (also the table's `name`).
    """

    def __init__(self, location: StoreLocation, model: str) -> None:
        self.location = location
        self.model = check_model_name(model)
        self.key = model_key(model)
        self.uri, self.options = location.delta_target(self.key)

    def __str__(self) -> str:
        return self.location.describe(self.key)

    # -- reading --------------------------------------------------------------------------

    def exists(self) -> bool:
        """Whether the folder holds a Delta log (a table, possibly not featstore's)."""
        try:
            return bool(self.location.children(f"{self.key}/{_LOG}"))
        except OSError as exc:
            raise StoreError(f"cannot read {self}: {self.location.scrub(str(exc))}") from exc

    def open(self, version: int | None = None) -> DeltaTable:
        """The table at `version` (default: the latest), its log read once."""
        from deltalake import DeltaTable

        if not self.exists():
            raise StoreError(
                f"{self} holds no Delta table (no {_LOG}): the model's folder was damaged or "
                "written by another program.\nHint: extract the model again into a new "
                "--store, or move the folder away and rerun the command that made it."
            )
        try:
            return DeltaTable(self.uri, version=version, storage_options=self.options or None)
        except Exception as exc:
            raise self._error(exc, version) from exc

    def provenance(self, table: DeltaTable) -> dict[str, Any]:
        """The provenance recorded in the table's metadata."""
        metadata = table.metadata()
        try:
            value = json.loads(metadata.description or "")
        except ValueError:
            value = None
        if not isinstance(value, dict) or value.get("model") != self.model:
            raise StoreError(
                f"{self} is a Delta table that featstore did not write (its description holds "
                "no featstore provenance for this model).\nHint: keep other programs' tables "
                "out of the store's model=<m> folders."
            )
        return value

    def active_files(self, table: DeltaTable) -> list[str]:
        """The data files of the table's version, as paths in `location.fs` (never a glob)."""
        return [self.location.path(f"{self.key}/{unquote(p)}") for p in self._paths(table)]

    def file_sizes(self, table: DeltaTable) -> list[int]:
        actions = pa.table(table.get_add_actions(flatten=True))
        if not actions.num_rows:
            return []
        return [int(size) for size in actions.column("size_bytes").to_pylist()]

    def fingerprints(self, table: DeltaTable) -> dict[str, str]:
        """identity -> input fingerprint of what the table holds (one scan of two columns)."""
        files = self.active_files(table)
        names = set(table.schema().to_arrow().names) if files else set()
        if FINGERPRINT_COLUMN not in names:
            return {}
        import pyarrow.dataset as pads

        scanned = pads.dataset(files, filesystem=self.location.fs, format="parquet").to_table(
            columns=["identity", FINGERPRINT_COLUMN]
        )
        grouped = scanned.group_by("identity").aggregate([(FINGERPRINT_COLUMN, "min")])
        return dict(
            zip(
                grouped.column("identity").to_pylist(),
                grouped.column(f"{FINGERPRINT_COLUMN}_min").to_pylist(),
                strict=True,
            )
        )

    def history(self, limit: int | None = None) -> list[Version]:
        """The table's versions, newest first."""
        table = self.open()
        try:
            entries = table.history(limit)
        except Exception as exc:
            raise self._error(exc, None) from exc
        versions = []
        totals: dict[int, int | None] = {}
        for entry in entries:
            found = _version(entry)
            params = entry.get("operationParameters") or {}
            if found.rows_removed is None and params.get("mode") == "Overwrite":
                # delta-rs reports no removed rows for an overwrite (with or without a
                # predicate; files it rewrote count as added): the row totals tell them.
                found = replace(found, rows_removed=self._rows_removed(found, totals))
            versions.append(found)
        return versions

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
                table = self.open(version)
                actions = pa.table(table.get_add_actions(flatten=True))
                counts = actions.column("num_records").to_pylist() if actions.num_rows else []
                totals[version] = sum(int(n) for n in counts) if None not in counts else None
            except Exception:  # vacuumed or damaged: the count stays unknown
                totals[version] = None
        return totals[version]

    # -- writing --------------------------------------------------------------------------

    def claim(self, provenance: Mapping[str, Any], schema: pa.Schema, *, overwrite: bool) -> bool:
        """Create the table, or check that its provenance is this run's.

        With `overwrite`, a table of other provenance loses its rows (one commit) and then
        takes the new provenance (a second); killed between the two, it is an empty table
        of the old provenance, which the next claim replaces.

        Returns:
            True when the table's rows were discarded (or there were none yet).
        """
        provenance = dict(provenance)
        if not self.exists():
            self._create(provenance, schema)
        table = self.open()
        stored = self.provenance(table)
        diffs = provenance_differences(stored, provenance)
        if not diffs:
            return False
        has_rows = bool(self._paths(table))
        if has_rows and not overwrite:
            raise self.mismatch(diffs)
        try:
            if has_rows:
                table.delete(commit_properties=commit_properties("extract --overwrite"))
        except Exception as exc:
            raise self._error(exc, None) from exc
        self.set_provenance(table, provenance)
        self._check_claim_race(table, stored, diffs)
        return True

    def rebase(self, provenance: Mapping[str, Any]) -> str | None:
        """Record a new base dir for the model's rows (the images moved); the old one.

        Only the base dir may differ: rows keep their paths relative to it, so they stay
        true under the new one. None when it was already this base dir.
        """
        table = self.open()
        stored = self.provenance(table)
        if stored.get("base_dir") == provenance.get("base_dir"):
            return None
        others = provenance_differences(
            {**stored, "base_dir": None}, {**provenance, "base_dir": None}
        )
        if others:
            raise self.mismatch(others)
        self.set_provenance(table, {**stored, "base_dir": provenance["base_dir"]})
        return str(stored.get("base_dir"))

    def set_provenance(self, table: DeltaTable, provenance: Mapping[str, Any]) -> None:
        """Record `provenance` in the table's metadata (a metadata commit)."""
        try:
            table.alter.set_table_description(provenance_json(provenance))
        except Exception as exc:
            raise self._error(exc, None) from exc

    def _check_claim_race(
        self, table: DeltaTable, stored: dict[str, Any], diffs: list[str]
    ) -> None:
        """Refuse (and undo) a provenance change that labelled rows it never saw.

        A metadata commit does not conflict with a concurrent append, so a run with other
        settings that committed rows between our check and our change would have its rows
        labelled with our provenance. The version our change made tells: if it holds rows,
        the stored provenance is put back (the other run's next commit then goes through)
        and this run is refused.
        """
        claimed = self.open(table.version())
        if self._paths(claimed):
            self.set_provenance(claimed, stored)
            raise self.mismatch(diffs, concurrent=True)

    def commit(
        self,
        table: DeltaTable,
        rows: pa.Table,
        *,
        identities: Sequence[str],
        provenance: Mapping[str, Any],
        command: str,
    ) -> None:
        """Make `rows` the rows of `identities` in one commit (their old rows, if any, go).

        An overwrite whose predicate names the identities: two writers of the same identity
        conflict instead of doubling its rows. `schema_mode="merge"` lets a table made
        before a column existed (the head pose) take rows that have it.

        `table` is the snapshot the caller checked the provenance on; it moves to the new
        version. On a conflict the snapshot is refreshed, the provenance checked again (a
        concurrent run may have claimed the model with other settings), and the commit
        retried: nothing is lost and nothing is written twice.
        """
        from deltalake import write_deltalake
        from deltalake.exceptions import CommitFailedError

        data = to_delta(rows)
        predicate = "identity IN (" + ", ".join(map(_sql, identities)) + ")"
        for attempt in range(_COMMIT_ATTEMPTS):
            try:
                write_deltalake(
                    table,
                    data,
                    mode="overwrite",
                    predicate=predicate,
                    schema_mode="merge",
                    writer_properties=writer_properties(),
                    commit_properties=commit_properties(command),
                )
                return
            except CommitFailedError:
                if attempt + 1 == _COMMIT_ATTEMPTS:
                    raise StoreError(
                        f"{self}: gave up committing after {_COMMIT_ATTEMPTS} conflicting "
                        "concurrent commits.\nHint: rerun; what was committed is kept."
                    ) from None
                time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
                self.refresh(table, provenance)
            except Exception as exc:
                raise self._error(exc, None) from exc

    def refresh(self, table: DeltaTable, provenance: Mapping[str, Any]) -> None:
        """Move `table` to the latest version and refuse if its provenance changed."""
        try:
            table.update_incremental()
        except Exception as exc:
            raise self._error(exc, None) from exc
        diffs = provenance_differences(self.provenance(table), dict(provenance))
        if diffs:
            raise self.mismatch(diffs, concurrent=True)

    def compact(self, table: DeltaTable, command: str) -> dict[str, Any]:
        """Rewrite the table's files into large ones sorted by (identity, role, frame_index),
        in one commit (see `featstore.store.compaction`); content unchanged."""
        from featstore.store.compaction import sorted_rewrite

        files = self.active_files(table)
        if len(files) < 2:
            return {"files_before": len(files), "files_after": len(files)}
        try:
            sorted_rewrite(
                table,
                files,
                self.location,
                writer_properties=writer_properties(),
                commit_properties=commit_properties(command),
            )
        except Exception as exc:
            raise self._error(exc, None) from exc
        table.update_incremental()
        return {"files_before": len(files), "files_after": len(self.active_files(table))}

    def vacuum(self, table: DeltaTable, retain_hours: float, *, dry_run: bool) -> list[str]:
        """Delete files no version within `retain_hours` needs (orphans of killed runs too)."""
        try:
            removed: list[str] = table.vacuum(
                retention_hours=int(retain_hours),
                dry_run=dry_run,
                enforce_retention_duration=False,
                full=True,
                commit_properties=commit_properties("vacuum"),
            )
        except Exception as exc:
            raise self._error(exc, None) from exc
        return removed

    def mismatch(self, diffs: list[str], *, concurrent: bool = False) -> ProvenanceMismatchError:
        if concurrent:
            return ProvenanceMismatchError(
                f"{self} was claimed with other settings by another run while this one "
                "worked:\n  " + "\n  ".join(diffs) + "\nHint: run every shard with the same "
                "settings; run again with the settings you mean to keep (and --overwrite)."
            )
        moved = (
            "\nHint: if only base_dir differs because the images moved (the same folders "
            "under a new parent), pass rebase=True (CLI: --rebase) to keep the rows."
            if any(d.startswith("base_dir:") for d in diffs)
            else ""
        )
        return ProvenanceMismatchError(
            f"{self} holds rows made with other settings (stored -> this run):\n  "
            + "\n  ".join(diffs)
            + "\nHint: use the same settings, another --store, or --overwrite to replace "
            "this model's rows." + moved
        )

    # -- internals ------------------------------------------------------------------------

    def _create(self, provenance: dict[str, Any], schema: pa.Schema) -> None:
        from deltalake import DeltaTable

        try:
            DeltaTable.create(
                self.uri,
                delta_schema(schema),
                mode="ignore",
                name=self.model,
                description=provenance_json(provenance),
                storage_options=self.options or None,
                commit_properties=commit_properties("create"),
            )
        except Exception as exc:
            if not self.exists():  # not a concurrent creator that won: a real failure
                raise self._error(exc, None) from exc

    def _paths(self, table: DeltaTable) -> list[str]:
        actions = pa.table(table.get_add_actions(flatten=True))
        return actions.column("path").to_pylist() if actions.num_rows else []

    def _error(self, exc: BaseException, version: int | None) -> StoreError:
        message = self.location.scrub(str(exc)).strip().splitlines()[0][:500]
        if version is not None and "version" in message.lower():
            return StoreError(
                f"{self} has no version {version}: {message}\nHint: `featstore history "
                "--store ...` lists the versions (old ones go once vacuum removes their files)."
            )
        if type(exc).__name__ in ("DeltaError", "DeltaProtocolError", "PanicException"):
            return StoreError(
                f"cannot read the Delta table {self}: {message}\nHint: its _delta_log is "
                "damaged or from another program; extract the model again into a new --store."
            )
        return StoreError(f"{self}: {message}")


def writer_properties() -> Any:
    from deltalake import WriterProperties

    return WriterProperties(compression="ZSTD", max_row_group_size=ROW_GROUP_ROWS)


def commit_properties(command: str) -> Any:
    from deltalake import CommitProperties

    return CommitProperties(
        custom_metadata={
            "featstore.command": command,
            "featstore.version": featstore.__version__,
        }
    )


def _version(entry: dict[str, Any]) -> Version:
    metrics = entry.get("operationMetrics") or {}

    def metric(*names: str) -> int | None:
        for name in names:
            if name in metrics:
                return int(metrics[name])
        return None

    removed = metric("num_removed_rows", "num_deleted_rows")
    return Version(
        version=int(entry.get("version", -1)),
        timestamp_ms=int(entry.get("timestamp", 0)),
        operation=str(entry.get("operation", "")),
        command=entry.get("featstore.command"),
        featstore_version=entry.get("featstore.version"),
        rows_added=metric("num_added_rows", "num_output_rows", "num_copied_rows"),
        rows_removed=removed,
        files_added=metric("num_added_files", "numFilesAdded"),
        files_removed=metric("num_removed_files", "numFilesRemoved"),
    )


def _sql(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
