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

`ModelTable` is the table's place in the store: whether it exists, claiming it for a run's
provenance, and `open(version)`, which gives the `ModelSnapshot` (`featstore.store.snapshot`)
that reads and writes one version. Every deltalake exception is turned into a StoreError
naming the table and what to do (`featstore.store.delta_errors`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from featstore.errors import ProvenanceMismatchError, StoreError
from featstore.store.delta_errors import store_error, store_errors
from featstore.store.format import (
    check_model_name,
    delta_schema,
    model_key,
    provenance_differences,
    provenance_json,
)
from featstore.store.location import StoreLocation
from featstore.store.properties import commit_properties
from featstore.store.snapshot import Connector, ModelSnapshot

_LOG = "_delta_log"


def has_delta_log(location: StoreLocation, key: str) -> bool:
    """Whether the store's folder `key` holds a Delta log (a table, possibly not featstore's)."""
    try:
        return bool(location.children(f"{key}/{_LOG}"))
    except OSError as exc:
        raise StoreError(
            f"cannot read {location.describe(key)}: {location.scrub(str(exc))}"
        ) from exc


class ModelTable:
    """The Delta table of one model of a store.

    Args:
        location: the store's root.
        model: the model's name (also the table's `name`).
        store: the store it belongs to, which its snapshots connect through (None for a
            table reached without one: `migrate` of a version-1 store).
    """

    def __init__(self, location: StoreLocation, model: str, store: Connector | None = None) -> None:
        self.location = location
        self.model = check_model_name(model)
        self.key = model_key(model)
        self.store = store
        self.uri, self.options = location.delta_target(self.key)

    def __str__(self) -> str:
        return self.location.describe(self.key)

    def exists(self) -> bool:
        """Whether the folder holds a Delta log (a table, possibly not featstore's)."""
        return has_delta_log(self.location, self.key)

    def open(self, version: int | None = None) -> ModelSnapshot:
        """The table at `version` (default: the latest), its log read once.

        A version asked for is checked first: one the log does not have, or one whose data
        files a vacuum removed, is a StoreError naming the versions that exist and those
        that can be read (`featstore.store.missing_files`), not delta-rs' or DuckDB's words.
        """
        if version is None:
            return self.open_log()
        from featstore.store.missing_files import require_files, require_version

        self._require_table()
        require_version(self, version)
        snapshot = self.open_log(version)
        require_files(self, version, snapshot.files)
        return snapshot

    def open_log(self, version: int | None = None) -> ModelSnapshot:
        """The table at `version` as its log says, its data files not looked at (what
        the log alone tells: the files' list and statistics, provenance, history)."""
        from deltalake import DeltaTable

        self._require_table()
        with store_errors(str(self), self.location, version=version):
            delta = DeltaTable(self.uri, version=version, storage_options=self.options or None)
        return ModelSnapshot(self, delta, self.store)

    def _require_table(self) -> None:
        if not self.exists():
            raise StoreError(
                f"{self} holds no Delta table (no {_LOG}): the model's folder was damaged or "
                "written by another program.\nHint: extract the model again into a new "
                "--store, or move the folder away and rerun the command that made it."
            )

    # -- claiming -------------------------------------------------------------------------

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
        snapshot = self.open()
        stored = snapshot.provenance
        diffs = provenance_differences(stored, provenance)
        if not diffs:
            return False
        has_rows = bool(snapshot.files)
        if has_rows and not overwrite:
            raise self.mismatch(diffs)
        if has_rows:
            snapshot.delete_rows("extract --overwrite")
        snapshot.set_provenance(provenance)
        self._check_claim_race(snapshot, stored, diffs)
        return True

    def would_refuse(
        self, provenance: Mapping[str, Any], overwrite: bool, *, rebase: bool = False
    ) -> None:
        """What `claim` would refuse, found without writing anything; with `rebase`, after
        `rebase` recorded the new base dir (what `extract --rebase` does first)."""
        if not self.exists():
            return
        snapshot = self.open()
        stored = dict(snapshot.provenance)
        if rebase:
            stored["base_dir"] = provenance.get("base_dir")
        diffs = provenance_differences(stored, dict(provenance))
        if diffs and not overwrite and snapshot.files:
            raise self.mismatch(diffs)

    def rebase(self, provenance: Mapping[str, Any]) -> str | None:
        """Record a new base dir for the model's rows (the images moved); the old one.

        Only the base dir may differ: rows keep their paths relative to it, so they stay
        true under the new one. None when it was already this base dir.
        """
        snapshot = self.open()
        stored = snapshot.provenance
        if stored.get("base_dir") == provenance.get("base_dir"):
            return None
        others = provenance_differences(
            {**stored, "base_dir": None}, {**provenance, "base_dir": None}
        )
        if others:
            raise self.mismatch(others)
        snapshot.set_provenance({**stored, "base_dir": provenance["base_dir"]})
        return str(stored.get("base_dir"))

    def _check_claim_race(
        self, snapshot: ModelSnapshot, stored: dict[str, Any], diffs: list[str]
    ) -> None:
        """Refuse (and undo) a provenance change that labelled rows it never saw.

        A metadata commit does not conflict with a concurrent append, so a run with other
        settings that committed rows between our check and our change would have its rows
        labelled with our provenance. The version our change made tells: if it holds rows,
        the stored provenance is put back (the other run's next commit then goes through)
        and this run is refused.
        """
        claimed = self.open_log(snapshot.version)
        if claimed.files:
            claimed.set_provenance(stored)
            raise self.mismatch(diffs, concurrent=True)

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
                raise store_error(exc, str(self), self.location) from exc
