"""Who is who: the neighbors table of a model, its views and its `--where` macros.

`featstore neighbors` (`featstore.neighbors`) searches a model's embeddings and keeps the
result beside the model's own table, as a Delta table of its own:

    <store>/neighbors=<model>/             one Delta table per model searched
    <store>/neighbors=<model>/_delta_log/  its commits: one per run that found a change

Its rows (`SCHEMA`), rewritten whole by each run that has something new:

    kind='identity'  vector 'face' (frontal embeddings) or 'mean' (normalised mean of the
                     identity's `ok` frames): `identity`'s K nearest identities `neighbor`
    kind='image'     scope 'other' (nearest images of other identities) or 'same' (of its
                     own identity, itself excluded): rank 1 always, further ranks up to K
                     only at or above the copy threshold

Every commit records in its commit info (`featstore.neighbors`) the settings of the run
and the model table's id and version it read, so a rerun on an unchanged store finds them
equal and commits nothing (`stored_settings`).

Views (created by `Store.connect` when the store has such a table; `model` is the model
searched):

    identity_neighbors  model, vector, identity, neighbor, cosine, rank, threshold,
                        above_threshold
    duplicate_images    model, image_path, other_path, identity, other_identity, cosine,
                        rank, same_identity, threshold     (pairs at or above the threshold)
    image_neighbors     every stored image row (the nearest image in each scope included)

Macros for `--where` (like `suspicious_frame`): `duplicate_identity(identity, min_cosine
:= NULL)` is true for both ends of an identity edge at or above the threshold (NULL: the
threshold of the run), `duplicate_image(image_path, min_cosine := NULL)` for both images
of a copied pair. Both use a one-row list subquery (see `featstore.store.consistency`:
an `IN` may reorder export's stream).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from featstore.errors import StoreError
from featstore.store.delta_errors import store_errors
from featstore.store.format import check_model_name
from featstore.store.location import StoreLocation
from featstore.store.properties import commit_properties, writer_properties
from featstore.store.snapshot import version_files
from featstore.store.table import has_delta_log

if TYPE_CHECKING:
    import duckdb
    from deltalake import DeltaTable

PREFIX = "neighbors="
FORMAT = "featstore-neighbors"
SETTINGS_KEY = "featstore.neighbors"
IDENTITY_VIEW = "identity_neighbors"
DUPLICATE_VIEW = "duplicate_images"
IMAGE_VIEW = "image_neighbors"
VIEWS = (IDENTITY_VIEW, DUPLICATE_VIEW, IMAGE_VIEW)
IDENTITY_MACRO = "duplicate_identity"
IMAGE_MACRO = "duplicate_image"

SCHEMA = pa.schema(
    [
        ("model", pa.string()),
        ("kind", pa.string()),  # 'identity' | 'image'
        ("vector", pa.string()),  # identity: 'face' | 'mean'; image: 'other' | 'same'
        ("identity", pa.string()),
        ("neighbor", pa.string()),  # the other end's identity
        ("image_path", pa.string()),  # image rows only
        ("other_path", pa.string()),
        ("cosine", pa.float32()),
        ("rank", pa.int32()),  # 1 = nearest
        ("threshold", pa.float32()),  # the run's threshold for this kind of row
    ]
)


@dataclass(frozen=True)
class StoredNeighbors:
    """One model's neighbors table at its latest version."""

    model: str
    version: int
    files: list[str]
    settings: dict[str, Any]


class NeighborsTable:
    """The Delta table `<store>/neighbors=<model>/`."""

    def __init__(self, location: StoreLocation, model: str) -> None:
        self.location = location
        self.model = check_model_name(model)
        self.key = f"{PREFIX}{model}"
        self.uri, self.options = location.delta_target(self.key)

    def __str__(self) -> str:
        return self.location.describe(self.key)

    def exists(self) -> bool:
        return has_delta_log(self.location, self.key)

    def open(self) -> DeltaTable:
        from deltalake import DeltaTable

        try:
            with store_errors(str(self), self.location):
                return DeltaTable(self.uri, storage_options=self.options or None)
        except StoreError as exc:  # the store's message, and what is special here
            raise StoreError(
                f"{exc}\nThe neighbors table holds only results computed from the model's "
                f"table: deleting {self.key}/ and running `featstore neighbors` again also "
                "mends it."
            ) from exc

    def read(self) -> StoredNeighbors | None:
        """The table's latest version, its files and the settings it was computed with."""
        if not self.exists():
            return None
        table = self.open()
        return StoredNeighbors(self.model, table.version(), self._files(table), _settings(table))

    def _files(self, table: DeltaTable) -> list[str]:
        return version_files(table, self.location, self.key)

    def write(self, rows: pa.Table, settings: dict[str, Any]) -> int:
        """Make `rows` the table's rows in one commit that records `settings`; the version."""
        from deltalake import write_deltalake

        properties = commit_properties(
            "neighbors", extra={SETTINGS_KEY: json.dumps(settings, sort_keys=True)}
        )

        with store_errors(str(self), self.location):
            write_deltalake(
                self.uri,
                rows.cast(SCHEMA),
                mode="overwrite",
                schema_mode="overwrite",
                name=self.key,
                description=json.dumps({"format": FORMAT, "model": self.model}),
                storage_options=self.options or None,
                writer_properties=writer_properties(),
                commit_properties=properties,
            )
        return int(self.open().version())

    def compact(self, command: str) -> dict[str, int]:
        """Rewrite the latest version's files into one (a large result written in parts);
        rows unchanged, one commit, none when there is a single file already."""
        table = self.open()
        before = len(self._files(table))
        if before < 2:
            return {"files_before": before, "files_after": before}
        with store_errors(str(self), self.location):
            table.optimize.compact(
                writer_properties=writer_properties(),
                commit_properties=commit_properties(command),
            )
            table.update_incremental()
        return {"files_before": before, "files_after": len(self._files(table))}

    def vacuum(
        self, retain_hours: float, *, dry_run: bool, no_writer_running: bool = False
    ) -> list[str]:
        """Delete the files of replaced results (each rerun overwrites the table) that no
        version within `retain_hours` needs; see `featstore.store.vacuuming`."""
        from featstore.store.vacuuming import vacuum_table

        return vacuum_table(
            self.open(),
            self.location,
            self.key,
            retain_hours,
            dry_run=dry_run,
            no_writer_running=no_writer_running,
        )

    def delete_identities(self, identities: Sequence[str], command: str) -> None:
        """Remove the rows naming `identities` at either end, in one commit (an overwrite by
        predicate with no rows, as `ModelSnapshot.delete_identities`). The commit records
        no settings, so the next `featstore neighbors` run computes the table again."""
        from deltalake import write_deltalake

        if not identities or not self.exists():
            return
        listed = ", ".join("'" + i.replace("'", "''") + "'" for i in sorted(identities))
        try:
            write_deltalake(
                self.open(),
                SCHEMA.empty_table(),
                mode="overwrite",
                predicate=f"identity IN ({listed}) OR neighbor IN ({listed})",
                writer_properties=writer_properties(),
                commit_properties=commit_properties(command),
            )
        except Exception as exc:
            raise StoreError(
                f"cannot write the neighbors table {self}: {self.location.scrub(str(exc))}"
            ) from exc


def _settings(table: DeltaTable) -> dict[str, Any]:
    """The settings the latest commit recorded (empty when it recorded none)."""
    for entry in table.history(1):
        text = entry.get(SETTINGS_KEY)
        if isinstance(text, str):
            try:
                value = json.loads(text)
            except ValueError:
                return {}
            return value if isinstance(value, dict) else {}
    return {}


def neighbor_models(location: StoreLocation) -> list[str]:
    """The models that have a neighbors table in the store, sorted."""
    try:
        children = location.children()
    except OSError as exc:
        raise StoreError(f"cannot list {location}: {location.scrub(str(exc))}") from exc
    names = [c[len(PREFIX) :] for c in children if c.startswith(PREFIX)]
    return sorted(n for n in names if NeighborsTable(location, n).exists())


def stored_neighbors(location: StoreLocation) -> list[StoredNeighbors]:
    found = (NeighborsTable(location, name).read() for name in neighbor_models(location))
    return [s for s in found if s is not None]


def neighbors_sql(source: str) -> dict[str, str]:
    """Each view's query over `source` (the neighbors tables' rows, `SCHEMA`)."""
    return {
        IDENTITY_VIEW: f"""
            SELECT model, vector, identity, neighbor, cosine::DOUBLE AS cosine, rank,
                   threshold::DOUBLE AS threshold, cosine >= threshold AS above_threshold
            FROM {source} WHERE kind = 'identity'""",
        DUPLICATE_VIEW: f"""
            SELECT model, image_path, other_path, identity, neighbor AS other_identity,
                   cosine::DOUBLE AS cosine, rank, identity = neighbor AS same_identity,
                   threshold::DOUBLE AS threshold
            FROM {source} WHERE kind = 'image' AND cosine >= threshold""",
        IMAGE_VIEW: f"""
            SELECT model, vector AS scope, identity, image_path, neighbor AS other_identity,
                   other_path, cosine::DOUBLE AS cosine, rank, threshold::DOUBLE AS threshold
            FROM {source} WHERE kind = 'image'""",
    }


def create_neighbor_views(con: duckdb.DuckDBPyConnection, source: str) -> None:
    for view, sql in neighbors_sql(source).items():
        con.execute(f"CREATE OR REPLACE VIEW {view} AS {sql}")
    create_macros(con)


def create_macros(con: duckdb.DuckDBPyConnection) -> None:
    """`duplicate_identity` and `duplicate_image` over the views (or tables so named)."""
    con.execute(
        f"""CREATE OR REPLACE MACRO {IDENTITY_MACRO}(name, min_cosine := NULL) AS
            list_contains((SELECT coalesce(flatten(list([identity, neighbor])),
                                           []::VARCHAR[])
                           FROM {IDENTITY_VIEW}
                           WHERE cosine >= coalesce(min_cosine, threshold)), name)"""
    )
    con.execute(
        f"""CREATE OR REPLACE MACRO {IMAGE_MACRO}(path, min_cosine := NULL) AS
            list_contains((SELECT coalesce(flatten(list([image_path, other_path])),
                                           []::VARCHAR[])
                           FROM {IMAGE_VIEW}
                           WHERE cosine >= coalesce(min_cosine, threshold)), path)"""
    )


@dataclass(frozen=True)
class IdentityPair:
    """Two identities joined by an edge at or above the threshold (either direction)."""

    identity: str
    other: str
    cosine: float
    vectors: str  # which searches found it: 'face', 'mean' or 'face,mean'


@dataclass(frozen=True)
class ImagePair:
    """Two images at or above the copy threshold."""

    path: str
    identity: str
    other_path: str
    other_identity: str
    cosine: float


def suspected_pairs(
    con: duckdb.DuckDBPyConnection, model: str, limit: int | None = None
) -> tuple[list[IdentityPair], int]:
    """Identity pairs above the threshold, most similar first (each pair once); the total."""
    sql = f"""
        SELECT least(identity, neighbor) AS a, greatest(identity, neighbor) AS b,
               max(cosine) AS cosine, string_agg(DISTINCT vector, ',' ORDER BY vector)
        FROM {IDENTITY_VIEW} WHERE model = ? AND above_threshold
        GROUP BY ALL ORDER BY cosine DESC, a, b"""
    return _pairs(con, sql, model, limit, IdentityPair)


def copied_images(
    con: duckdb.DuckDBPyConnection, model: str, *, same_identity: bool, limit: int | None = None
) -> tuple[list[ImagePair], int]:
    """Image pairs above the copy threshold, across identities or within one (each once)."""
    sql = f"""
        SELECT least(image_path, other_path) AS a,
               CASE WHEN image_path < other_path THEN identity ELSE other_identity END,
               greatest(image_path, other_path) AS b,
               CASE WHEN image_path < other_path THEN other_identity ELSE identity END,
               max(cosine) AS cosine
        FROM {DUPLICATE_VIEW} WHERE model = ? AND same_identity = {bool(same_identity)}
        GROUP BY ALL ORDER BY cosine DESC, a, b"""
    return _pairs(con, sql, model, limit, ImagePair)


def _pairs(con: duckdb.DuckDBPyConnection, sql: str, model: str, limit: int | None, kind: Any):
    total = con.execute(f"SELECT count(*) FROM ({sql})", [model]).fetchone()
    shown = con.execute(f"{sql} LIMIT {int(limit) if limit is not None else 'ALL'}", [model])
    return [kind(*row) for row in shown.fetchall()], int(total[0]) if total else 0


def has_views(con: duckdb.DuckDBPyConnection) -> bool:
    found = con.execute(
        "SELECT count(*) FROM duckdb_views() WHERE view_name = ?", [IDENTITY_VIEW]
    ).fetchone()
    return bool(found and found[0])
