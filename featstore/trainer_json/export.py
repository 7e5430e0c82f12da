"""`export-json`: the store out as the trainer's JSON (docs/formats.md), streamed.

    {"<identity>": {"face_image_path": ..., "face_features": [...], ..., "video_data": [...],
                    "total_video_images": n, "valid_video_images": k,
                    "feature_dim": D, "dinov2_model": "<model>"}, ...}

How it is written:

- The valid identities come from the data files' summaries (`ModelSnapshot.
  valid_identities`), as one Arrow array sorted by UTF-8 bytes, i.e. by Unicode code
  point, Python's string order. The model's Delta table is then read a range of
  identities at a time (`_RANGE_IDENTITIES`), `ORDER BY` within the range only: the range
  is a filter on `identity` that DuckDB pushes into the Parquet scan, skipping row groups
  by their min/max statistics (tables are clustered by identity), so no sort materialises
  the store (the merge checks the order it gets).
- Each identity is assembled from its rows, serialised by orjson and written before the
  next is read: memory holds one range's rows (Arrow) and names (Python), a batch of rows
  as Python values (`_BATCH_ROWS`) and one identity, never the document nor a Python
  object per identity of the store (a dict of a million names was 300 MB).
- Floats are numpy float32 values handed to orjson, which writes the shortest decimal
  that parses back to the same float32.
- The document is written to `<out>.tmp-<pid>` beside `out`, then renamed over it: an
  interrupted export never leaves a truncated file under the final name.

Decisions (docs/formats.md does not fix these):

- `total_video_images` is the identity's frame count in the store, all statuses (the
  seed counted the images of the video folder); `--where` does not change it. For rows
  imported from a JSON file it is the count that file recorded (see
  `featstore.trainer_json.importer`).
  `valid_video_images` is the number of frames written, after `--where`.
- An identity whose frames `--where` removes entirely is left out.
- `--format 3d` writes the seed's `valid_images_3d.json` (docs/formats.md,
  `featstore.trainer_json.formats`): the same scan, frames and frontal images without a
  pose left out, identities without a posed frontal image or frame left out.
- `--indent N` writes what `json.dumps(..., indent=N)` would (newlines, N spaces a level,
  `": "` after keys); without it the file is compact (orjson's, no spaces).
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa

from featstore.errors import InputError, StoreError, plural
from featstore.store.consistency import is_arcface_model
from featstore.store.fields import DIM, FIELDS, JSON_FORMATS
from featstore.store.paths import output_path, relative_path
from featstore.store.store import read_failure
from featstore.store.where import check_where_with, columns_of, duckdb_error, where_failed
from featstore.trainer_json.formats import identity_object
from featstore.trainer_json.json_writer import AtomicWriter, check_indent, document

if TYPE_CHECKING:
    import duckdb

    from featstore.store import ModelInfo, ModelSnapshot, Store

ExportFormat = Literal["new", "old", "3d"]
EXPORT_FORMATS: tuple[str, ...] = ("new", "old", "3d")
# Set on the frontal row of identities imported from a JSON file (featstore.trainer_json.importer):
# the file's total_video_images, i.e. frames of any status, which the JSON does not list.
TOTAL_COLUMN = "total_video_images"
# Rows turned into Python objects at a time: a range is sorted by DuckDB (Arrow memory),
# but only this many rows at once become numpy arrays and dicts.
_BATCH_ROWS = 256
# Identities read and sorted at a time: about 20,000 rows at the usual ~10 frames each.
_RANGE_IDENTITIES = 2048


@dataclass(frozen=True)
class ExportSummary:
    """What `export_json` wrote."""

    path: Path
    model: str
    json_format: str  # "new", "old" or "3d"
    identities: int
    frames: int
    bytes: int
    base_dir: Path  # the paths in the file are relative to it

    def format(self) -> str:
        """One line for people."""
        mib = self.bytes / (1 << 20)
        line = (
            f"wrote {plural(self.identities, 'identity')}, {plural(self.frames, 'frame')} "
            f"of {self.model} "
            f"({self.json_format} format, {mib:.1f} MiB) to {self.path}; "
            f"paths relative to {self.base_dir}"
        )
        if not self.identities:
            line += "\nwarning: no identity to export (no valid identity, or --where kept no frame"
            line += (
                ", or no frontal image and frame with a head pose)"
                if self.json_format == "3d"
                else ")"
            )
        return line


def export_json(
    store: str | os.PathLike[str] | Store,
    *,
    out: str | os.PathLike[str],
    model: str | None = None,
    base_dir: str | os.PathLike[str] | None = None,
    where: str | None = None,
    format: ExportFormat = "new",
    indent: int | None = None,
    version: int | None = None,
) -> ExportSummary:
    """Write the trainer's JSON for one model of `store` to `out`.

    Valid identities only, sorted by Python's string order (Unicode code points); `ok`
    frames only, in frame order; paths re-based from the extraction's base dir onto
    `base_dir`. Written to a temporary file beside `out` and renamed over it.

    Args:
        store: the store folder, or an open `featstore.store.query.Store`.
        out: the JSON file to write (its folder must exist); replaced if present.
        model: the model to export; required when the store holds several.
        base_dir: paths in the file are relative to it; default: `out`'s folder.
        where: an SQL predicate over the columns of the `frames` view (e.g.
            `abs(avg_angle) < 30`); frames it rejects are left out, and so are
            identities left without a frame. `total_video_images` is not affected.
        format: "new" (features, landmarks, angles), "old" (paths only) or "3d" (the
            seed's `valid_images_3d.json`: features, landmarks, head pose; docs/formats.md).
        indent: None for a compact file, else spaces per level, like `json.dumps`.
        version: export this version of the model's table (default: the latest).

    Returns:
        An `ExportSummary`.

    Raises:
        StoreError: not a store, no model or no rows, several models and no `model`.
        InputError: a bad `format`, `indent`, `where` or output path.
    """
    from featstore.store import Store

    if format not in EXPORT_FORMATS:
        raise InputError(f"--format {format!r}: choose one of {', '.join(EXPORT_FORMATS)}.")
    check_indent(indent)
    opened = Store(store)
    snap = _exportable(opened, model, version)
    source_base = snap.provenance.get("base_dir")
    if not isinstance(source_base, str):
        raise StoreError(
            f"the provenance of model {snap.name} in {opened.location} records no base_dir, so "
            "its image paths cannot be re-based.\nHint: extract again with this featstore."
        )
    out_path = output_path(Path(out))
    export_base = Path(os.path.abspath(base_dir)) if base_dir is not None else out_path.parent

    snap.require_rows()
    if format == "3d":
        snap.require_pose()
    with snap.connect() as con:
        columns = columns_of(con, "frames")  # for messages: the result streams hold `con`
        frame_filter = check_where_with(con, where, columns)
        scan = _Scan(con, snap.info, frame_filter, format, snap.valid_identities())
        rebase = _Rebaser(source_base, export_base)
        writer = AtomicWriter(out_path)
        try:
            entries = (
                (identity, _identity_object(face, frames, total, snap.info, format, rebase))
                for identity, face, frames, total in scan.identities()
            )
            written = writer.write(document(entries, indent))
        except BaseException as exc:
            writer.discard()
            # DuckDB's errors while rows are read reach us through Arrow as OSError.
            if not isinstance(exc, (duckdb_error(), OSError)):
                raise
            # A cast that fails on some value shows only now; DuckDB quotes the line.
            if where and where.strip().splitlines()[0] in str(exc):
                raise where_failed(where, exc, columns) from exc
            raise read_failure(exc, opened) from exc
    size = writer.commit()
    return ExportSummary(
        path=out_path,
        model=snap.name,
        json_format=format,
        identities=written.identities,
        frames=written.frames,
        bytes=size,
        base_dir=export_base,
    )


def _exportable(store: Store, model: str | None, version: int | None) -> ModelSnapshot:
    store.require_models()
    snap = store.feature_model(model, version)
    if is_arcface_model(snap.name):
        raise InputError(
            f"model {snap.name} holds ArcFace identity embeddings, which never replace DINOv2 "
            "features in the trainer's JSON (docs/formats.md).\nHint: export a DINOv2 model "
            "with --model, and use the ArcFace model through --where "
            "'NOT suspicious_frame(image_path)'."
        )
    return snap


class _Rebaser:
    """Stored paths (relative to the extraction's base dir) re-based onto the export's."""

    def __init__(self, source_base: str, export_base: Path) -> None:
        self.source_base = source_base
        self.export_base = export_base

    def __call__(self, stored: str) -> str:
        # A stored absolute path (one that could not be made relative) stays as it is.
        return relative_path(Path(posixpath.join(self.source_base, stored)), self.export_base)


class _Scan:
    """The rows to export, identity by identity, in identity order, streamed.

    The valid identities (`valid`, sorted by Python's string order) are taken a range at a
    time; the range's rows are read with `ORDER BY` within the range only. The range is a
    filter on `identity`, which DuckDB pushes into the Parquet scan, skipping row groups
    by their min/max statistics (tables are clustered by identity), so memory holds one
    range, whatever the number of identities.
    """

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        info: ModelInfo,
        frame_filter: str,
        format: ExportFormat,
        valid: pa.ChunkedArray,
    ) -> None:
        self.con, self.info, self.valid = con, info, valid
        self.values = [field.name for field, _ in JSON_FORMATS[format].fields()]
        self.pose = format == "3d"  # only rows with a head pose
        self.frame_filter = frame_filter
        self.types = {row[0]: row[1] for row in con.execute("DESCRIBE images").fetchall()}

    def identities(
        self,
    ) -> Iterator[tuple[str, dict[str, Any], list[dict[str, Any]], int]]:
        """(identity, frontal row, ok frames in frame order, total_video_images)."""
        for start in range(0, len(self.valid), _RANGE_IDENTITIES):
            names = self.valid.slice(start, _RANGE_IDENTITIES).to_pylist()
            totals = self._frames_total(names[0], names[-1])
            wanted, expected = set(names), iter(names)
            for identity, rows in _grouped(self._rows(names[0], names[-1])):
                if identity not in wanted:  # inside a range of valid ones, but not valid itself
                    continue
                if identity != next(expected, None):
                    raise StoreError(
                        f"the store scan returned identity {identity!r} out of order.\n"
                        "Hint: a --where with `x IN (SELECT ...)` can reorder rows; write it as "
                        "list_contains((SELECT list(x) FROM ...), x), or "
                        "suspicious_frame(image_path)."
                    )
                face = next((r for r in rows if r["role"] == "face"), None)
                frames = sorted((r for r in rows if r["role"] == "frame"), key=_frame_index)
                if self.pose and face is not None and face["euler_angles"] is None:
                    continue  # a frontal image without a pose: not in the 3D file
                if face is None:
                    raise StoreError(f"identity {identity!r} is valid but has no ok frontal row.")
                if frames:  # none left when --where rejected them all
                    total = face.get(TOTAL_COLUMN)
                    yield identity, face, frames, int(totals[identity] if total is None else total)

    def _frames_total(self, lo: str, hi: str) -> dict[str, int]:
        """The frames (all statuses) of each identity from `lo` to `hi`."""
        rows = self.con.execute(
            """SELECT identity, count(*) FILTER (role = 'frame') FROM images
               WHERE identity >= $lo AND identity <= $hi GROUP BY identity""",
            {"lo": lo, "hi": hi},
        ).fetchall()
        return {str(identity): int(n) for identity, n in rows}

    def _rows(self, lo: str, hi: str) -> Iterator[dict[str, Any]]:
        columns = ["role", "identity", "frame_index", "image_path", *self.values]
        frame_filter = self.frame_filter
        if self.pose:
            frame_filter = f"({frame_filter}) AND euler_angles IS NOT NULL"
        if TOTAL_COLUMN in self.types:
            columns.append(TOTAL_COLUMN)
        sql = f"""SELECT {", ".join(map(_quote, columns))} FROM images AS frames
                  WHERE identity >= $lo AND identity <= $hi AND status = 'ok'
                    AND (role = 'face' OR {frame_filter})
                  ORDER BY identity, role, frame_index"""
        batch_rows = _BATCH_ROWS if self.values else 65536  # the old format: paths only
        relation = self.con.sql(sql, params={"lo": lo, "hi": hi})
        # duckdb >= 1.4 names it to_arrow_reader (and warns on the older name).
        reader = getattr(relation, "to_arrow_reader", None) or relation.fetch_arrow_reader
        for batch in reader(batch_rows):
            yield from _batch_rows(batch)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _frame_index(row: dict[str, Any]) -> int:
    return int(row["frame_index"])


def _batch_rows(batch: pa.RecordBatch) -> Iterator[dict[str, Any]]:
    """A batch's rows as dicts: str, int, and numpy float32 arrays (None where null)."""
    columns: dict[str, list[Any]] = {}
    for name in batch.schema.names:
        column = batch.column(name)
        if name in FIELDS:
            columns[name] = _floats(column, FIELDS[name].shape, batch, name)
        else:
            columns[name] = column.to_pylist()
    for i in range(batch.num_rows):
        yield {name: values[i] for name, values in columns.items()}


def _floats(
    column: pa.Array, shape: tuple[int, ...], batch: pa.RecordBatch, name: str
) -> list[Any]:
    """A (nested) fixed-size float32 column as one numpy value per row (None if null)."""
    present = ~column.is_null().to_numpy(zero_copy_only=False)
    values = column
    while pa.types.is_fixed_size_list(values.type):
        # `.values` is the whole child array (null rows included): slice this array's part.
        size = values.type.list_size
        shape = (size,) if shape == (DIM,) else shape  # features: [D]
        values = values.values.slice(values.offset * size, len(values) * size)
    array = values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    array = array.reshape((len(column), *shape))
    finite = np.isfinite(array.reshape(len(column), -1)).all(axis=1)  # null elements: NaN
    bad = present & ~finite
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise StoreError(
            f"image {batch.column('image_path')[row].as_py()!r} of identity "
            f"{batch.column('identity')[row].as_py()!r} has a non-finite or incomplete "
            f"{name}, which JSON cannot hold.\n"
            "Hint: extract that identity again, or leave it out with --where."
        )
    return [array[i] if present[i] else None for i in range(len(column))]


def _grouped(rows: Iterable[dict[str, Any]]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Consecutive rows of one identity, as (identity, rows)."""
    current: str | None = None
    group: list[dict[str, Any]] = []
    for row in rows:
        if row["identity"] != current:
            if current is not None:
                yield current, group
            current, group = row["identity"], []
        group.append(row)
    if current is not None:
        yield current, group


def _identity_object(
    face: dict[str, Any],
    video: list[dict[str, Any]],
    total: int,
    info: ModelInfo,
    format: ExportFormat,
    rebase: _Rebaser,
) -> dict[str, Any]:
    """One identity's JSON object, keys in the order of docs/formats.md (the 3D format's for 3d)."""
    json_format = JSON_FORMATS[format]
    fields = json_format.fields()
    _require(face, [field.name for field, key in fields if key.face is not None])
    frame_values = [field.name for field, _ in fields]
    for frame in video:
        _require(frame, frame_values)
    return identity_object(
        json_format, face, video, total, model=info.name, dim=info.dim, rebase=rebase
    )


def _require(row: dict[str, Any], names: list[str]) -> None:
    """An `ok` row of a valid identity has every value the JSON needs."""
    missing = [name for name in names if row[name] is None]
    if missing:
        raise StoreError(
            f"{row['role']} {row['image_path']!r} of identity {row['identity']!r} is ok but has "
            f"no {', '.join(missing)}; the store is damaged.\n"
            "Hint: extract that identity again (featstore extract --overwrite)."
        )
