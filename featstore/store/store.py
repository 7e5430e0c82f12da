"""`Store`: a store resolved once, at the door, and asked for everything after.

    store = Store("faces-store")                     # read: must exist, format 2
    store = Store("s3://bucket/faces", create=True)  # write: created when absent
    store.models()                                   # ModelInfo per table, from its log
    snap = store.model("dinov2_vitb14", version=3)   # ModelSnapshot: one version, owned
    snap.files, snap.fingerprints(), snap.commit(...), snap.compact(...), snap.history()
    con = store.connect(model="dinov2_vitb14", version=3)   # DuckDB with the views
    store.table("dinov2_vitb14")                     # the model's ModelTable (claiming)

Commands, engines, readers and the Dataset receive this object; none of them resolves a
path again.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from featstore.errors import QueryError, StoreError
from featstore.store.consistency import create_identity_consistency, is_arcface_model
from featstore.store.delta_errors import damaged_store
from featstore.store.format import (
    STORE_MANIFEST,
    check_manifest,
    manifest_bytes,
    model_of_key,
    store_schema,
)
from featstore.store.location import StoreLocation, resolve_store
from featstore.store.missing_files import require_files
from featstore.store.neighbors import SCHEMA as NEIGHBORS_SCHEMA
from featstore.store.neighbors import create_neighbor_views, stored_neighbors
from featstore.store.snapshot import ModelInfo, ModelSnapshot
from featstore.store.table import ModelTable
from featstore.store.views import (
    array_hint,
    create_views,
    describe_views,
    lock_down,
    sql_string,
)

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa


_PROBE = ".write-probe-"  # a file written and deleted to check the store is writable


class Store:
    """A featstore store (format version 2).

    Args:
        path: the store folder, or its URI on a filesystem pyarrow and delta-rs both reach
            (`s3://bucket/prefix`; see `featstore.store.location`).
        create: create the store when absent (writers); readers need an existing one.

    Raises:
        StoreError: not a store (or a version-1 store: the message names `featstore
            migrate`), not readable, or not writable when `create`.
    """

    def __init__(
        self, path: str | os.PathLike[str] | StoreLocation | Store, *, create: bool = False
    ) -> None:
        if isinstance(path, Store):
            self.location: StoreLocation = path.location
            if not create:
                return  # checked when it came through the door
        else:
            self.location = resolve_store(path)
        self.location.delta_target("")  # refuses a path delta-rs would misread, up front
        if create:
            self._create()
        else:
            self._check()

    def __repr__(self) -> str:
        return f"Store({self.location.display!r})"

    @property
    def path(self) -> Path:
        """The store's local folder (a store on object storage has none: see `location`)."""
        if self.location.local is None:
            raise StoreError(
                f"store {self.location} is not on the local filesystem; use `Store.location`."
            )
        return self.location.local

    # -- models ---------------------------------------------------------------------------

    def model_names(self) -> list[str]:
        """The models whose folder holds a table, sorted."""
        try:
            children = self.location.children()
        except OSError as exc:
            message = self.location.scrub(str(exc))
            raise StoreError(f"cannot list {self.location}: {message}") from exc
        names = []
        for child in children:
            model = model_of_key(child)
            if model is None:
                continue
            table = self.table(model)
            if table.exists():
                names.append(model)
            elif self.location.children(child):  # files, but no log saying which count
                raise StoreError(
                    f"{table} holds files but no _delta_log: the model's table is damaged "
                    "(its log was deleted) or was not written by featstore.\nHint: move the "
                    "folder out of the store and extract the model again (`featstore "
                    "extract`, or `import-json` for an imported model)."
                )
        return names

    def table(self, model: str) -> ModelTable:
        """The model's table, existing or not (`ModelTable.claim` creates it)."""
        return ModelTable(self.location, model, self)

    def models(self) -> list[ModelInfo]:
        """The models of the store at their latest versions, sorted by name."""
        return [self.table(name).open().info for name in self.model_names()]

    def model(self, name: str | None = None, version: int | None = None) -> ModelSnapshot:
        """The named model (the only one when `name` is None) at `version` (default: the
        latest): a `ModelSnapshot`, which owns that version's provenance and files."""
        return self.table(self.choose(name)).open(version)

    def require_models(self) -> list[str]:
        """The store's models; refuses an empty store, with what to do."""
        names = self.model_names()
        if not names:
            raise StoreError(
                f"store {self.location} is empty: it holds no model yet.\n"
                "Hint: run `featstore extract` (or `featstore import-json`) into it first."
            )
        return names

    def feature_model(self, name: str | None, version: int | None = None) -> ModelSnapshot:
        """The model a trainer reads (export-json, report, FeatureDataset): `name`, else the
        only model, else the only DINOv2 model beside ArcFace ones (which are never exported,
        docs/formats.md), so a store extracted with `--model arcface` needs no `--model`."""
        if name is None:
            names = self.model_names()
            features = [n for n in names if not is_arcface_model(n)]
            if len(names) > 1 and len(features) == 1:
                name = features[0]
        return self.model(name, version)

    def choose(self, name: str | None, names: list[str] | None = None) -> str:
        """`name` when the store has it; the only model when None; else a clear error.

        `names`: the store's models when the caller has listed them already.
        """
        names = self.model_names() if names is None else names
        listed = ", ".join(names) or "none"
        if name is None:
            if len(names) != 1:
                raise StoreError(
                    f"store {self.location} holds {len(names)} models ({listed}); "
                    "choose one with model= (CLI: --model)."
                )
            return names[0]
        if name not in names:
            raise StoreError(f"store {self.location} has no model {name!r}; it holds: {listed}.")
        return name

    # -- reading --------------------------------------------------------------------------

    def connect(
        self, *, model: str | None = None, version: int | None = None
    ) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with the views (`featstore.store.views`) over the store.

        The views read one committed version of each table: the files its log lists,
        never a glob of the folder (which also holds removed and uncommitted files). The
        connection can read those files and nothing else, and write no file.

        Args:
            model: restrict every view to one model (default: all models).
            version: read this version of the model's table (needs `model`, or a store
                with a single model).
        """
        stored = self.model_names()  # listed once: on object storage each listing is a request
        if version is not None:
            model = self.choose(model, stored)
        names = [self.choose(model, stored)] if model is not None else stored
        return self.connect_snapshots([self.table(n).open(version) for n in names], stored)

    def connect_snapshots(
        self,
        snapshots: list[ModelSnapshot],
        stored: list[str] | None = None,
        *,
        located: bool = False,
    ) -> duckdb.DuckDBPyConnection:
        """A locked DuckDB connection whose views read exactly `snapshots` (see `connect`).

        `stored`: the store's models when the caller has listed them already.
        `located`: the rows carry `_file` and `_row` (`ModelSnapshot.connect`); a store on
        object storage, read through pyarrow, has no such columns.
        """
        import duckdb

        stored = self.model_names() if stored is None else stored
        for snap in snapshots:  # a vacuumed version is said to be one, before DuckDB trips
            require_files(snap.table, snap.version, snap.files)
        con = duckdb.connect()
        dims = {s.dim for s in snapshots}
        source, columns, readable = self._source(con, snapshots, located=located)
        try:  # DuckDB reads the first file's footer to type the views
            create_views(con, source, dim=dims.pop() if len(dims) == 1 else None, columns=columns)
            readable += self._consistency(con, snapshots, stored, source)
            readable += self._neighbors(con)
        except duckdb.Error as exc:
            con.close()
            raise read_failure(exc, self) from exc
        lock_down(con, readable)
        return con

    def _consistency(
        self,
        con: duckdb.DuckDBPyConnection,
        snapshots: list[ModelSnapshot],
        stored: list[str],
        source: str,
    ) -> list[str]:
        """The `identity_consistency` view (`featstore.store.consistency`) when the store
        has an ArcFace model, also on a connection restricted to another model; the files
        it reads beyond `source`'s."""
        if any(is_arcface_model(s.name) for s in snapshots):
            dims = [s.dim for s in snapshots if is_arcface_model(s.name)]
            create_identity_consistency(con, source, dim=max(dims))
            return []
        arcface = [n for n in stored if is_arcface_model(n)]
        if not arcface:
            return []
        extra = [self.table(name).open() for name in arcface]
        arc_source, _, readable = self._source(con, extra, prefix="_arcface")
        create_identity_consistency(con, arc_source, dim=max(s.dim for s in extra))
        return readable

    def _neighbors(self, con: duckdb.DuckDBPyConnection) -> list[str]:
        """The neighbors views (`featstore.store.neighbors`) over every neighbors table of
        the store, whatever model the connection is restricted to (image paths match
        across models extracted together); the files they read."""
        tables = stored_neighbors(self.location)
        if not tables:
            return []
        files = [f for t in tables for f in t.files]
        if not files:
            con.register("_neighbors_empty", NEIGHBORS_SCHEMA.empty_table())
            source = "_neighbors_empty"
        elif self.location.local is not None:
            listed = ", ".join(sql_string(f) for f in files)
            source = f"read_parquet([{listed}], hive_partitioning = false)"
        else:
            import pyarrow.dataset as pads

            dataset = pads.dataset(files, filesystem=self.location.fs, format="parquet")
            con.register("_neighbors_rows", dataset)
            source = "_neighbors_rows"
        create_neighbor_views(con, source)
        return files if self.location.local is not None else []

    def sql(self, query: str, *, model: str | None = None, version: int | None = None) -> pa.Table:
        """Run `query` over the views and return the result as an Arrow table.

        Raises:
            QueryError: DuckDB refused the query (the message lists the views' columns).
            StoreError: a data file of the store cannot be read.
        """
        import duckdb
        import pyarrow as pa

        with self.connect(model=model, version=version) as con:
            try:
                relation = con.sql(query)
                return relation.to_arrow_table() if relation is not None else pa.table({})
            except duckdb.Error as exc:
                if ".parquet" in str(exc) and isinstance(
                    exc, (duckdb.IOException, duckdb.InvalidInputException)
                ):
                    raise read_failure(exc, self) from exc
                raise QueryError(
                    f"{exc}\nViews and their columns:\n{describe_views(con)}"
                    + array_hint(exc, model)
                ) from exc

    def _source(
        self,
        con: duckdb.DuckDBPyConnection,
        snapshots: list[ModelSnapshot],
        prefix: str = "_store",
        located: bool = False,
    ) -> tuple[str, set[str], list[str]]:
        """The rows of `snapshots` as one table expression, its columns, the files it reads.

        Local tables go through DuckDB's own Parquet reader (the fast path); object storage
        through pyarrow datasets registered into DuckDB (its filesystem reads the objects,
        DuckDB pushes projections and filters into the scan).
        """

        parts: list[str] = []
        columns: set[str] = set()
        readable: list[str] = []
        for i, snap in enumerate(snapshots):
            schema = snap.schema()
            columns |= set(schema.names)
            if not snap.files:
                parts.append(f"{prefix}_empty_{i}")
                con.register(parts[-1], schema.empty_table())
            elif self.location.local is not None:
                listed = ", ".join(sql_string(f) for f in snap.files)
                scan = f"read_parquet([{listed}], hive_partitioning = false)"
                if located:  # DuckDB's virtual columns, named so no stored column clashes
                    scan = f"(SELECT *, file_index AS _file, file_row_number AS _row FROM {scan})"
                parts.append(scan)
                readable += snap.files
            else:
                import pyarrow.dataset as pads

                parts.append(f"{prefix}_{i}")
                dataset = pads.dataset(snap.files, filesystem=self.location.fs, format="parquet")
                con.register(parts[-1], dataset)
        if not parts:  # a store without models: the views exist, empty
            con.register("_empty_store", _delta_empty(store_schema(1)))
            return "_empty_store", set(store_schema(1).names), readable
        if len(parts) == 1:
            return parts[0], columns, readable
        union = " UNION ALL BY NAME ".join(f"SELECT * FROM {p}" for p in parts)
        return f"({union})", columns, readable

    # -- opening --------------------------------------------------------------------------

    def _check(self) -> None:
        where = self.location
        if where.local is not None and not where.local.is_dir():
            raise StoreError(f"store {where} does not exist or is not a folder.")
        try:
            data = where.read_bytes(STORE_MANIFEST)
        except FileNotFoundError:
            raise StoreError(
                f"{where} is not a featstore store (no {STORE_MANIFEST}).\n"
                "Hint: point --store at a folder written by `featstore extract` or "
                "`featstore import-json`."
            ) from None
        except OSError as exc:
            raise StoreError(f"cannot read store {where}: {where.scrub(str(exc))}") from exc
        check_manifest(data, where.describe(STORE_MANIFEST), where.display)

    def _create(self) -> None:
        where = self.location
        try:
            if where.is_file(STORE_MANIFEST):
                self._check()
            elif holds_entries(where):
                # Read again: a concurrent run (another shard) may have just made the store.
                if not where.is_file(STORE_MANIFEST):
                    raise StoreError(
                        f"--store {where} holds files but no {STORE_MANIFEST}, so it is not a "
                        "featstore store.\nHint: pick a new or empty folder (or prefix); "
                        "featstore will not mix its files with others."
                    )
                self._check()
            else:
                where.write_atomic(STORE_MANIFEST, manifest_bytes())
            probe = f"{_PROBE}{uuid.uuid4().hex}"
            where.write_atomic(probe, b"")
            where.delete_file(probe)
        except OSError as exc:
            raise StoreError(
                f"cannot write to --store {where}: {where.scrub(str(exc))}\nHint: choose a "
                "folder you can write to; on object storage check the bucket, the "
                "credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) and the endpoint "
                "(AWS_ENDPOINT_URL) this process sees."
            ) from exc


def holds_entries(location: StoreLocation) -> bool:
    """Whether the folder (or prefix) holds anything; creates nothing.

    Raises:
        StoreError: the path exists and is not a folder.
    """
    if location.local is not None and location.local.exists() and not location.local.is_dir():
        raise StoreError(f"--store {location} exists and is not a folder.")
    # A concurrent run creating the same store leaves these for an instant: not "others".
    transient = (f"{STORE_MANIFEST}.tmp-", _PROBE)
    return any(not name.startswith(transient) for name in location.children())


def read_failure(exc: BaseException, store: Store | StoreLocation) -> StoreError:
    """A StoreError for a DuckDB error met while reading the store's rows.

    A data file that cannot be parsed (truncated, overwritten outside featstore) is named,
    with what can be done; anything else keeps DuckDB's first line.
    """
    location = store.location if isinstance(store, Store) else store
    first = location.scrub(str(exc)).strip().splitlines()[0] if str(exc).strip() else repr(exc)
    if ".parquet" in first:
        return damaged_store(location, first)
    return StoreError(f"cannot read the store {location}: {first}")


def _delta_empty(schema: pa.Schema) -> pa.Table:
    from featstore.store.format import delta_schema

    return delta_schema(schema).empty_table()
