"""A model's rows in the seed's order, each kept (with its float64 pose) or failed by kind.

Order (docs/formats.md): front images by file name (all in one folder, so by stored path), video
persons by folder name (the identity), frames by file name (featstore's `frame_index` is
the position by name). Fronts are one row per identity, read in one sorted query; frames
are read a range of identities at a time, `ORDER BY` within the range only (as
`export-json` does), so memory holds one range whatever the number of frames.

The pose is solved again from the stored float32 keypoints and image size with
`face000-pose-v1`'s solver (`featstore.extraction.pose`, `math.atan2`): the float64 values
the seed writes, which the store keeps only as float32.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from featstore.errors import StoreError
from featstore.extraction.pose import HeadPose, solve_pose
from featstore.npy_dir.json_text import require_utf8
from featstore.store.paths import relative_path

if TYPE_CHECKING:
    import duckdb

# Set on rows that import-npy made from a `*_failed_images.json` entry: the seed's kind.
KIND_COLUMN = "npy_failure"
# Rows sorted by DuckDB at a time (a range of identities or of front paths): its sort
# holds the range's features, so the range, not the store, bounds the memory.
_RANGE_ROWS = 8192
_BATCH_ROWS = 2048
_COLUMNS = ("identity", "role", "image_path", "status", "error", "features", "landmarks_2d",
            "box", "width", "height")  # fmt: skip


@dataclass
class Block:
    """Rows of one side in order: the kept ones as arrays, the failed ones by kind."""

    persons: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    sizes: list[tuple[int, int]] = field(default_factory=list)
    features: list[NDArray[np.float32]] = field(default_factory=list)
    landmarks_2d: list[NDArray[np.float32]] = field(default_factory=list)
    boxes: list[NDArray[np.float32]] = field(default_factory=list)
    poses: list[NDArray[np.float64]] = field(default_factory=list)
    originals: list[NDArray[np.float64]] = field(default_factory=list)
    frame_index: list[str] = field(default_factory=list)  # video: each file's stem
    failures: list[tuple[str, str, str, str | None]] = field(default_factory=list)
    rows: int = 0  # every row seen, kept or failed

    def arrays(self, dim: int) -> dict[str, NDArray[np.generic]]:
        def stack(values: list[NDArray[np.generic]], shape: tuple[int, ...], dtype: str):
            return np.array(values, dtype=dtype) if values else np.zeros((0, *shape), dtype)

        return {
            "features": stack(self.features, (dim,), "<f4"),  # type: ignore[arg-type]
            "landmarks_2d": stack(self.landmarks_2d, (5, 2), "<f4"),  # type: ignore[arg-type]
            "boxes": stack(self.boxes, (4,), "<f4"),  # type: ignore[arg-type]
            "poses": stack(self.poses, (3,), "<f8"),  # type: ignore[arg-type]
            "originals": stack(self.originals, (5, 3), "<f8"),  # type: ignore[arg-type]
        }


class Rebase:
    """Stored paths as written: unchanged, or re-based onto `--base-dir`."""

    def __init__(self, source_base: str | None, export_base: Path | None) -> None:
        if export_base is not None and source_base is None:
            raise StoreError("the model records no base_dir, so --base-dir cannot re-base paths.")
        self.source_base, self.export_base = source_base, export_base

    def __call__(self, stored: str) -> str:
        if self.export_base is None or self.source_base is None:
            return stored
        return relative_path(Path(posixpath.join(self.source_base, stored)), self.export_base)


class NpyScan:
    """The rows of one model on `con` (`Store.connect(model=...)`), in the seed's order."""

    def __init__(self, con: duckdb.DuckDBPyConnection, frame_filter: str, rebase: Rebase) -> None:
        self.con, self.frame_filter, self.rebase = con, frame_filter, rebase
        names = {row[0] for row in con.execute("DESCRIBE images").fetchall()}
        self.kind = KIND_COLUMN if KIND_COLUMN in names else "NULL"
        if "euler_angles" not in names:
            raise StoreError(
                "the model has no head pose columns: it was made before featstore computed the "
                "pose.\nHint: `featstore derive --store STORE` adds them from the stored "
                "keypoints (no model, no image read), or extract it again with --overwrite."
            )

    def _where(self, role: str) -> str:
        return "role = 'face'" if role == "face" else f"role = 'frame' AND ({self.frame_filter})"

    def kept_count(self, role: str) -> int:
        """Rows the directory will hold: ok, with features and a head pose."""
        sql = f"""SELECT count(*) FROM images WHERE {self._where(role)} AND status = 'ok'
                  AND features IS NOT NULL AND euler_angles IS NOT NULL AND {self.kind} IS NULL"""
        return int(self.con.execute(sql).fetchall()[0][0])

    def posed_count(self, role: str) -> int:
        """Ok rows with a head pose (`kept_count` or more), without reading the features."""
        sql = f"""SELECT count(*) FROM images WHERE {self._where(role)} AND status = 'ok'
                  AND euler_angles IS NOT NULL"""
        return int(self.con.execute(sql).fetchall()[0][0])

    def missing_sizes(self) -> int:
        sql = (
            "SELECT count(*) FROM images WHERE status = 'ok' AND (width IS NULL OR height IS NULL)"
        )
        return int(self.con.execute(sql).fetchall()[0][0])

    def person_count(self) -> int:
        sql = f"SELECT count(DISTINCT identity) FROM images WHERE {self._where('frame')}"
        return int(self.con.execute(sql).fetchall()[0][0])

    def fronts(self) -> Iterator[Block]:
        """Front rows by stored path (= by file name: one folder), a range of paths at a time."""
        sql = f"SELECT image_path, 1 FROM images WHERE {self._where('face')}"
        ranged = f"""SELECT {self._select()} FROM images WHERE {self._where("face")}
                     AND image_path >= $lo AND image_path <= $hi ORDER BY image_path"""
        for lo, hi in _ranges(self.con.execute(sql).fetchall()):
            relation = self.con.sql(ranged, params={"lo": lo, "hi": hi})
            yield from self._blocks(relation, video=False)

    def frames(self) -> Iterator[Block]:
        """Frame rows by person, then file name, a range of persons at a time."""
        sql = f"SELECT identity, count(*) FROM images WHERE {self._where('frame')} GROUP BY 1"
        ranged = f"""SELECT {self._select()} FROM images WHERE {self._where("frame")}
                     AND identity >= $lo AND identity <= $hi ORDER BY identity, frame_index"""
        for lo, hi in _ranges(self.con.execute(sql).fetchall()):
            relation = self.con.sql(ranged, params={"lo": lo, "hi": hi})
            yield from self._blocks(relation, video=True)

    def _select(self) -> str:
        return ", ".join([*_COLUMNS, f"{self.kind} AS kind"])

    def _blocks(self, relation: duckdb.DuckDBPyRelation, *, video: bool) -> Iterator[Block]:
        reader = getattr(relation, "to_arrow_reader", None) or relation.fetch_arrow_reader
        for batch in reader(_BATCH_ROWS):
            yield self._block(batch, video=video)

    def _block(self, batch: pa.RecordBatch, *, video: bool) -> Block:
        column = {name: batch.column(name) for name in batch.schema.names}
        features, has_features = _fixed(column["features"], None)
        lm2d, has_face = _fixed(column["landmarks_2d"], (5, 2))
        box, _ = _fixed(column["box"], (4,))
        identities, paths = column["identity"].to_pylist(), column["image_path"].to_pylist()
        statuses, errors = column["status"].to_pylist(), column["error"].to_pylist()
        kinds = column["kind"].to_pylist()
        widths, heights = column["width"].to_pylist(), column["height"].to_pylist()
        block = Block(rows=batch.num_rows)
        for i in range(batch.num_rows):
            person = require_utf8(identities[i], "identity")
            path = require_utf8(self.rebase(paths[i]), "image path")
            kind = _failure_kind(statuses[i], kinds[i], bool(has_features[i]))
            pose = None
            if kind is None:
                if not has_face[i]:
                    raise StoreError(
                        f"{paths[i]!r} is ok but has no keypoints; the store is damaged."
                    )
                pose = solve_pose(lm2d[i], widths[i], heights[i])
                if not isinstance(pose, HeadPose):
                    kind = "no_landmarks"
            if kind is not None or not isinstance(pose, HeadPose):
                block.failures.append((kind or "no_landmarks", path, person, errors[i]))
                continue
            if not np.isfinite(features[i]).all():
                raise StoreError(f"{paths[i]!r} has non-finite features; extract it again.")
            block.persons.append(person)
            block.paths.append(path)
            block.sizes.append((int(widths[i]), int(heights[i])))
            block.features.append(features[i])
            block.landmarks_2d.append(lm2d[i])
            block.boxes.append(box[i])
            block.poses.append(pose.euler_angles)
            block.originals.append(pose.landmarks_3d)
        if video:
            block.frame_index = [PurePosixPath(p).stem for p in block.paths]
        return block


def _ranges(counts: list[tuple[str, int]]) -> Iterator[tuple[str, str]]:
    """Consecutive (first, last) keys, in Python's string order (DuckDB's for UTF-8), whose
    rows add up to about `_RANGE_ROWS` each."""
    lo, rows = None, 0
    for key, count in sorted(counts):
        lo = key if lo is None else lo
        rows += count
        if rows >= _RANGE_ROWS:
            yield lo, key
            lo, rows = None, 0
        last = key
    if lo is not None:
        yield lo, last


def _failure_kind(status: str, imported: str | None, has_features: bool) -> str | None:
    """The seed's kind of a row it would not keep, or None for a row to keep."""
    if imported is not None:
        return imported
    if status == "unreadable":
        return "read_error"
    if status == "no_face":
        return "no_face_detected"
    if status != "ok":
        raise StoreError(f"unknown status {status!r}; the store is damaged.")
    return None if has_features else "feature_error"


def _fixed(
    column: pa.Array, shape: tuple[int, ...] | None
) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    """A (nested) fixed-size float32 column as one `[rows, *shape]` array, and which rows
    are present (null rows hold NaN)."""
    present = ~column.is_null().to_numpy(zero_copy_only=False)
    values = column
    sizes = []
    while pa.types.is_fixed_size_list(values.type):
        size = values.type.list_size
        sizes.append(size)
        values = values.values.slice(values.offset * size, len(values) * size)
    array = values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return array.reshape((len(column), *(shape or tuple(sizes)))), present
