"""An imported identity's values as the store's rows, in Delta's column types.

A `face` row, then one `frame` row per frame, all `ok`, `frame_index` 0..n-1 in file
order. What the trainer's JSON does not hold is null: the detector score, image and file
sizes; the pose in the new format; the spherical angles and pseudo-3D landmarks in the 3D
format. The recorded `total_video_images` goes in an extra column of the frontal row.

The lists are built as Delta stores them (plain lists, not fixed-size ones), straight
from the numpy arrays: no cast per identity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from featstore.store.fields import FRAME_FIELDS
from featstore.store.format import delta_schema, store_schema
from featstore.trainer_json.export import TOTAL_COLUMN
from featstore.trainer_json.identity_values import IdentityValues


def rows_schema(dim: int) -> pa.Schema:
    """The store's columns plus the recorded frame total, in Delta's types."""
    return delta_schema(store_schema(dim).append(pa.field(TOTAL_COLUMN, pa.int32())))


@dataclass(frozen=True)
class RowTarget:
    """What every row of an import shares: the model, the import's time, the schema."""

    model: str
    extracted_at: pa.Scalar  # timestamp[us, UTC]
    schema: pa.Schema  # `rows_schema(dim)`


def store_rows(values: IdentityValues, target: RowTarget) -> pa.Table:
    """The identity's rows: its frontal image first, then its frames in file order."""
    rows, n = len(values.paths), values.frames
    face_row = np.arange(rows) == 0

    def value(name: str) -> pa.Array:
        array = getattr(values, name, None)  # det_score: never in the JSON
        if array is None:  # a field the identity's format does not have
            return pa.nulls(rows, target.schema.field(name).type)
        if len(array) == n < rows:  # frames only: the frontal row is null
            padding = np.zeros((1, *array.shape[1:]), np.float32)
            return _lists(np.concatenate([padding, array]), face_row)
        return _lists(array)

    columns = {
        "identity": pa.array([values.name] * rows, pa.string()),
        "model": pa.array([target.model] * rows, pa.string()),
        "role": pa.array(["face"] + ["frame"] * n, pa.string()),
        "image_path": pa.array(values.paths, pa.string()),
        "frame_index": pa.array([None, *range(n)], pa.int32()),
        "status": pa.array(["ok"] * rows, pa.string()),
        "error": pa.nulls(rows, pa.string()),
        **{field.name: value(field.name) for field in FRAME_FIELDS},  # featstore.store.fields
        "width": pa.nulls(rows, pa.int32()),
        "height": pa.nulls(rows, pa.int32()),
        "file_size": pa.nulls(rows, pa.int64()),
        "extracted_at": pa.repeat(target.extracted_at, rows),
        TOTAL_COLUMN: pa.array([values.total] + [None] * n, pa.int32()),
    }
    # In the schema's column order (`store_schema`).
    return pa.Table.from_arrays(
        [columns[name] for name in target.schema.names], schema=target.schema
    )


def _lists(values: NDArray[np.float32], null_rows: NDArray[np.bool_] | None = None) -> pa.Array:
    """`[rows, a, b, ...]` float32 as nested plain lists; `null_rows` are null."""
    if values.ndim == 1:  # one number a row
        return pa.array(np.asarray(values, dtype=np.float32), pa.float32(), mask=null_rows)
    array: pa.Array = pa.array(np.ascontiguousarray(values, dtype=np.float32).reshape(-1))
    # From the innermost level out: `count` lists of `size` numbers (or lists) each.
    levels = list(zip(values.shape[1:], np.cumprod(values.shape[:-1]), strict=True))
    for depth, (size, count) in enumerate(reversed(levels)):
        offsets = pa.array(np.arange(0, (int(count) + 1) * size, size, dtype=np.int32))
        outermost = depth == len(levels) - 1
        mask = pa.array(null_rows) if outermost and null_rows is not None else None
        array = pa.ListArray.from_arrays(offsets, array, mask=mask)
    return array
