"""SQL over the store: DuckDB in-process, with the views users query.

    images        every row of every model
    faces         role = 'face'
    frames        role = 'frame'
    identities    one row per (model, identity): frontal status, frame counts, valid
    valid_frames  `ok` frames of valid identities, with the frontal image's columns
                  alongside (`face_features`, `face_landmarks_2d`, ...)

`identity` is read from the files (VARCHAR, never cast: `007` stays `007`), not from
directory names. Fixed-size columns come out as DuckDB arrays (`FLOAT[768]`,
`FLOAT[2][5]`), so `array_cosine_similarity` and friends work directly.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featstore.errors import QueryError, StoreError
from featstore.store.consistency import create_identity_consistency, is_arcface_model
from featstore.store.layout import (
    DATA_FILE,
    PROVENANCE_FILE,
    STORE_MANIFEST,
    model_dir,
    model_key,
    present_identities,
    store_schema,
)
from featstore.store.location import StoreLocation, resolve_store

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa
    import pyarrow.dataset as pads

VIEWS = ("images", "faces", "frames", "identities", "valid_frames")


@dataclass(frozen=True)
class ModelInfo:
    """One model in the store, as its provenance records it."""

    name: str
    dim: int
    provenance: dict[str, Any]


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class Store:
    """A featstore store opened for reading.

    Args:
        path: the store folder (made by `featstore extract` or `import-json`), or its URI
            on a filesystem pyarrow supports (`s3://bucket/prefix`, see `featstore.store.location`).

    Raises:
        StoreError: the folder does not exist or is not a featstore store.
    """

    def __init__(self, path: str | os.PathLike[str] | StoreLocation) -> None:
        self.location = resolve_store(path)
        where = self.location
        if where.local is not None and not where.local.is_dir():
            raise StoreError(f"store {where} does not exist or is not a folder.")
        try:
            is_store = where.is_file(STORE_MANIFEST)
        except OSError as exc:
            raise StoreError(f"cannot read store {where}: {where.scrub(str(exc))}") from exc
        if not is_store:
            raise StoreError(
                f"{where} is not a featstore store (no {STORE_MANIFEST}).\n"
                "Hint: point --store at a folder written by `featstore extract`."
            )

    @property
    def path(self) -> Path:
        """The store's local folder (a store on object storage has none: see `location`)."""
        if self.location.local is None:
            raise StoreError(
                f"store {self.location} is not on the local filesystem; use `Store.location`."
            )
        return self.location.local

    def models(self) -> list[ModelInfo]:
        """The models whose provenance is recorded, sorted by name."""
        found = []
        where = self.location
        for name in where.children():
            key = f"{name}/{PROVENANCE_FILE}"
            if not name.startswith("model=") or not where.is_file(key):
                continue
            try:
                provenance = json.loads(where.read_bytes(key))
                found.append(
                    ModelInfo(provenance["model"], int(provenance["feature_dim"]), provenance)
                )
            except (OSError, ValueError, KeyError) as exc:
                raise StoreError(f"cannot read {where.describe(key)}: {exc}") from exc
        return found

    def model(self, name: str | None) -> ModelInfo:
        """The named model, or the only one when `name` is None."""
        models = self.models()
        names = ", ".join(m.name for m in models) or "none"
        if name is None:
            if len(models) != 1:
                raise StoreError(
                    f"store {self.location} holds {len(models)} models ({names}); "
                    "choose one with --model."
                )
            return models[0]
        for info in models:
            if info.name == name:
                return info
        raise StoreError(f"store {self.location} has no model {name!r}; it holds: {names}.")

    def partition_files(self, model: str) -> list[str]:
        """The paths (in `location.fs`) of the model's partition files, sorted."""
        key = model_key(model)
        return [
            self.location.path(f"{key}/{name}/{DATA_FILE}")
            for name in sorted(present_identities(self.location, model))
        ]

    def connect(self, *, model: str | None = None) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with the views of this module over the store.

        Args:
            model: restrict every view to one model (default: all models).
        """
        import duckdb

        models = [self.model(model)] if model is not None else self.models()
        con = duckdb.connect()
        dims = {m.dim for m in models}
        source = self._source(con, models)
        if source is None:
            con.register("_empty_store", _empty_table(next(iter(dims), 0)))
            source = "_empty_store"
        features = f"features::FLOAT[{dims.pop()}]" if len(dims) == 1 else "features"
        con.execute(
            f"""CREATE VIEW images AS SELECT * REPLACE (
                    {features} AS features,
                    landmarks_2d::FLOAT[2][5] AS landmarks_2d,
                    landmarks_3d::FLOAT[3][5] AS landmarks_3d,
                    box::FLOAT[4] AS box,
                    spherical_angles::FLOAT[5] AS spherical_angles)
                FROM {source}"""
        )
        con.execute("CREATE VIEW faces AS SELECT * FROM images WHERE role = 'face'")
        con.execute("CREATE VIEW frames AS SELECT * FROM images WHERE role = 'frame'")
        con.execute(
            """CREATE VIEW identities AS
               SELECT model, identity,
                      any_value(status) FILTER (role = 'face') AS face_status,
                      count(*) FILTER (role = 'frame') AS frames_total,
                      count(*) FILTER (role = 'frame' AND status = 'ok') AS frames_ok,
                      count(*) FILTER (role = 'frame' AND status = 'no_face') AS frames_no_face,
                      count(*) FILTER (role = 'frame' AND status = 'unreadable')
                          AS frames_unreadable,
                      coalesce(bool_or(role = 'face' AND status = 'ok'), false)
                          AND count(*) FILTER (role = 'frame' AND status = 'ok') > 0 AS valid
               FROM images GROUP BY model, identity"""
        )
        con.execute(
            """CREATE VIEW valid_frames AS
               SELECT f.*, face.image_path AS face_image_path, face.features AS face_features,
                      face.landmarks_2d AS face_landmarks_2d,
                      face.landmarks_3d AS face_landmarks_3d, face.box AS face_box
               FROM frames f
               JOIN faces face ON face.model = f.model AND face.identity = f.identity
               -- an ok frame of an identity whose frontal image is ok: the identity has
               -- at least one ok frame, so it is valid (no aggregate over all rows needed)
               WHERE f.status = 'ok' AND face.status = 'ok'"""
        )
        create_identity_consistency(con, self._arcface_source(con, models, source))
        return con

    def _source(
        self, con: duckdb.DuckDBPyConnection, models: list[ModelInfo], prefix: str = "_store"
    ) -> str | None:
        if self.location.local is not None:
            return self._local_source(models)
        return self._remote_source(con, models, prefix)

    def _arcface_source(
        self, con: duckdb.DuckDBPyConnection, models: list[ModelInfo], source: str
    ) -> str | None:
        """The ArcFace rows for `identity_consistency`, also when `images` has only one model."""
        if any(is_arcface_model(m.name) for m in models):
            return source
        found = [m for m in self.models() if is_arcface_model(m.name)]
        return self._source(con, found, "_arcface") if found else None

    def _local_source(self, models: list[ModelInfo]) -> str | None:
        """DuckDB's own Parquet reader over the model folders' glob (the fast path)."""
        folders = [model_dir(self.path, m.name) for m in models]
        files = [f for f in folders if any(f.glob(f"identity=*/{DATA_FILE}"))]
        if not files:
            return None
        sources = ", ".join(_sql_string((f / f"identity=*/{DATA_FILE}").as_posix()) for f in files)
        # union_by_name reads every file's schema up front: only pay for it when models
        # (extracted vs imported) may differ in their extra columns.
        union = ", union_by_name = true" if len(files) > 1 else ""
        return f"read_parquet([{sources}], hive_partitioning = false{union})"

    def _remote_source(
        self, con: duckdb.DuckDBPyConnection, models: list[ModelInfo], prefix: str = "_store"
    ) -> str | None:
        """pyarrow datasets over the listed files, one per model, registered in DuckDB.

        DuckDB's httpfs extension is not needed (nor downloaded): pyarrow's filesystem reads
        the objects, and DuckDB pushes projections and filters into the dataset scan.
        """
        names = []
        for i, m in enumerate(models):
            files = self.partition_files(m.name)
            if files:
                names.append(f"{prefix}_{i}")
                con.register(names[-1], scan_files(self.location, files))
        if not names:
            return None
        if len(names) == 1:
            return names[0]
        return "(" + " UNION ALL BY NAME ".join(f"SELECT * FROM {n}" for n in names) + ")"

    def sql(self, query: str, *, model: str | None = None) -> pa.Table:
        """Run `query` over the views and return the result as an Arrow table."""
        with self.connect(model=model) as con:
            relation = con.sql(query)
            return relation.to_arrow_table() if relation is not None else _empty_result()


def scan_files(location: StoreLocation, files: list[str]) -> pads.Dataset:
    """A lazy pyarrow dataset over partition files of one model, in the order given."""
    import pyarrow.dataset as pads

    return pads.dataset(files, filesystem=location.fs, format="parquet")


def _empty_table(dim: int) -> pa.Table:
    return store_schema(max(dim, 1)).empty_table()


def _empty_result() -> pa.Table:
    import pyarrow as pa

    return pa.table({})


def describe_views(con: duckdb.DuckDBPyConnection) -> str:
    """`view(col type, ...)` lines, shown when a query fails so users see what exists."""
    lines = []
    for view in VIEWS:
        columns = con.execute(f"DESCRIBE {view}").fetchall()
        lines.append(f"  {view}: " + ", ".join(f"{c[0]} {c[1]}" for c in columns))
    return "\n".join(lines)


def run_query(store: Store, query: str, *, model: str | None = None) -> pa.Table:
    """`store.sql` with DuckDB's errors turned into a StoreError that lists the views."""
    import duckdb

    with store.connect(model=model) as con:
        try:
            relation = con.sql(query)
        except duckdb.Error as exc:
            raise QueryError(f"{exc}\nViews and their columns:\n{describe_views(con)}") from exc
        return relation.to_arrow_table() if relation is not None else _empty_result()


@dataclass(frozen=True)
class StoreCounts:
    """One model's rows counted by role and status."""

    identities: int = 0
    valid_identities: int = 0  # frontal image ok and at least one frame ok (SPEC §3)
    faces: dict[str, int] = field(default_factory=dict)
    frames: dict[str, int] = field(default_factory=dict)

    @property
    def frame_total(self) -> int:
        return sum(self.frames.values())


def count_rows(store: Store, *, model: str | None = None) -> dict[str, StoreCounts]:
    """Per model: identities, valid identities, images by role and status.

    One scan of the three small columns (DuckDB pushes the projection down, so the
    feature columns are never read), grouped per identity, then rolled up per model.
    """
    names = [model] if model is not None else [m.name for m in store.models()]
    totals = {name: [0, 0] for name in names}
    by_role: dict[str, dict[str, dict[str, int]]] = {n: {"face": {}, "frame": {}} for n in names}
    with store.connect(model=model) as con:
        con.execute(
            """CREATE TEMP TABLE per_identity AS
               SELECT model, identity, role, status, count(*) AS n FROM images GROUP BY ALL"""
        )
        for name, n, n_valid in con.execute(
            """SELECT model, count(*), count(*) FILTER (face_ok AND frames_ok > 0) FROM (
                   SELECT model, identity,
                          bool_or(role = 'face' AND status = 'ok') AS face_ok,
                          sum(n) FILTER (role = 'frame' AND status = 'ok') AS frames_ok
                   FROM per_identity GROUP BY model, identity) GROUP BY model"""
        ).fetchall():
            totals[name] = [n, n_valid]
        for name, role, status, n in con.execute(
            "SELECT model, role, status, sum(n) FROM per_identity GROUP BY ALL ORDER BY ALL"
        ).fetchall():
            by_role[name][role][status] = int(n)
    return {
        name: StoreCounts(
            totals[name][0], totals[name][1], by_role[name]["face"], by_role[name]["frame"]
        )
        for name in names
    }


@dataclass(frozen=True)
class StoreInfo:
    """What `featstore info` shows; computed without reading the feature columns."""

    path: Path | str  # the folder, or the URI (credentials scrubbed)
    models: list[ModelInfo]
    counts: dict[str, StoreCounts]
    disk_bytes: int

    @property
    def identities(self) -> dict[str, int]:
        return {name: c.identities for name, c in self.counts.items()}

    @property
    def valid_identities(self) -> dict[str, int]:
        return {name: c.valid_identities for name, c in self.counts.items()}

    @property
    def images_by_status(self) -> dict[str, dict[str, int]]:
        """model -> "role/status" -> count."""
        return {
            name: {
                **{f"face/{s}": n for s, n in c.faces.items()},
                **{f"frame/{s}": n for s, n in c.frames.items()},
            }
            for name, c in self.counts.items()
        }


def store_info(store: Store) -> StoreInfo:
    """Models, row counts and disk size of a store."""
    where = store.location
    if where.local is not None:
        disk = sum(p.stat().st_size for p in where.local.rglob("*") if p.is_file())
    else:
        disk = sum(size for _, size in where.list_files())
    return StoreInfo(where.local or where.display, store.models(), count_rows(store), disk)
