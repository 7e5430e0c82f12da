"""The store's on-disk format (version 2): its marker file, model names and row schema.

    <store>/_featstore.json          {"format": "featstore-store", "version": 2}
    <store>/model=<model>/           one Delta Lake table per model (`featstore.store.table`)

Rows are built in memory with fixed-size lists (`FLOAT[768]`, `[5][2]`), which DuckDB and
numpy read without offsets. Delta has no fixed-size list, so tables are written with plain
lists (`delta_schema`) and the views cast them back (`featstore.store.views`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from featstore.errors import StoreError
from featstore.store.fields import FIELDS, FRAME_FIELDS, POSE_COLUMNS, SQPNP_POSE_COLUMNS

STORE_MANIFEST = "_featstore.json"
STORE_FORMAT = "featstore-store"
STORE_FORMAT_VERSION = 2
MANIFEST = {"format": STORE_FORMAT, "version": STORE_FORMAT_VERSION}
# Which of the model files are featstore's stand-ins (`featstore.extraction.stand_in`):
# {"detector": why, "model": why}, present only when one is.
STAND_IN_KEY = "stand_in"
# Recorded but not compared: a newer featstore may extend a store an older one made; the
# stand-in marks follow from the files' SHA-256, which are compared.
UNCOMPARED_PROVENANCE_KEYS = frozenset({"featstore_version", STAND_IN_KEY})
# Compared only when the stored provenance has them: they name columns computed from stored
# ones, which a table made before featstore computed them lacks. Such a table takes rows
# that have them (its older rows get them from `featstore derive`, which records the key).
DERIVED_PROVENANCE_KEYS = frozenset({"sqpnp_pose_definition"})
FINGERPRINT_COLUMN = "input_fingerprint"


def stand_in_warning(provenance: dict[str, Any]) -> str | None:
    """The warning for a model extracted with stand-in models, or None for real ones."""
    marks = provenance.get(STAND_IN_KEY)
    if not marks:
        return None
    which = "; ".join(f"{what}: {why}" for what, why in sorted(marks.items()))
    return (
        "STAND-IN MODELS, NOT REAL ONES: every feature, box, keypoint and score of "
        f"{provenance.get('model', 'this model')} is meaningless ({which}). They exist to try "
        "the pipeline offline; for real data use the real models (README: Quick start with "
        "the real models)."
    )


# Model names become folder names and Delta table paths; delta-rs decodes `%` in paths and
# object stores treat other characters specially, so names stay in this plain alphabet.
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_model_name(model: str) -> str:
    """`model` if it can name a table folder; else a StoreError saying what is allowed."""
    if not isinstance(model, str) or not _MODEL_NAME.match(model):
        raise StoreError(
            f"model name {model!r} cannot name a table: use letters, digits, '_', '.' and "
            "'-' (at most 128, starting with a letter or digit), e.g. dinov2_vitb14."
        )
    return model


def model_key(model: str) -> str:
    """`model=<m>`: the model's table folder, relative to the store's root."""
    return f"model={check_model_name(model)}"


def model_of_key(name: str) -> str | None:
    """The model a `model=<m>` folder name holds, or None for any other name."""
    if not name.startswith("model="):
        return None
    model = name[len("model=") :]
    return model if _MODEL_NAME.match(model) else None


# The values stored since the first format (the head pose came later, at the end).
_FIRST_VALUES = (
    "features",
    "landmarks_2d",
    "landmarks_3d",
    "box",
    "det_score",
    "spherical_angles",
    "avg_angle",
)


def features_type(dim: int) -> pa.DataType:
    return FIELDS["features"].arrow_type(dim)


def store_schema(dim: int) -> pa.Schema:
    """The columns of a model's rows (docs/formats.md), then featstore's extra columns.

    The float values' types come from `featstore.store.fields`; the order is the tables'
    (columns were appended as featstore learnt them, the head pose last).
    """
    value = {f.name: f.arrow_type(dim) for f in FRAME_FIELDS}
    string, int32 = pa.string(), pa.int32()
    return pa.schema(
        [
            ("identity", string),
            ("model", string),
            ("role", string),
            ("image_path", string),
            ("frame_index", int32),
            ("status", string),
            ("error", string),
            *((name, value[name]) for name in _FIRST_VALUES),
            ("width", int32),
            ("height", int32),
            ("file_size", pa.int64()),
            ("extracted_at", pa.timestamp("us", tz="UTC")),
            # The head pose face000-pose-v1 (docs/formats.md), null without a face or a pose.
            *((name, value[name]) for name in POSE_COLUMNS),
            # featstore-pose-sqpnp-v1 (docs/pose.md): the same pose, solved stably.
            *((name, value[name]) for name in SQPNP_POSE_COLUMNS),
        ]
    )


def delta_type(dtype: pa.DataType) -> pa.DataType:
    """`dtype` with every fixed-size list made a plain list (Delta has no fixed size)."""
    if pa.types.is_fixed_size_list(dtype) or pa.types.is_list(dtype):
        return pa.list_(delta_type(dtype.value_type))
    return dtype


def delta_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema([pa.field(f.name, delta_type(f.type), f.nullable) for f in schema])


def to_delta(table: pa.Table) -> pa.Table:
    """`table` as a Delta table stores it (plain lists, no schema metadata)."""
    return table.cast(delta_schema(table.schema)).replace_schema_metadata(None)


def fixed_size_column(
    values: NDArray[np.float32], valid: NDArray[np.bool_], dtype: pa.DataType
) -> pa.Array:
    """A (nested) fixed_size_list column from `[N, ...]` values; rows not `valid` are null."""
    flat: pa.Array = pa.array(np.ascontiguousarray(values, dtype=np.float32).reshape(-1))
    for size in reversed(values.shape[2:]):
        flat = pa.FixedSizeListArray.from_arrays(flat, size)
    column = pa.FixedSizeListArray.from_arrays(flat, values.shape[1], mask=pa.array(~valid))
    return column.cast(dtype)


def manifest_bytes() -> bytes:
    return (json.dumps(MANIFEST, indent=2, sort_keys=True) + "\n").encode()


def check_manifest(data: bytes, where: str, store: str) -> None:
    """Refuse what is not a store of this format, naming the way forward for version 1."""
    try:
        found: Any = json.loads(data)
    except ValueError as exc:
        raise StoreError(f"{where} is not a featstore manifest: {exc}") from exc
    if not isinstance(found, dict) or found.get("format") != STORE_FORMAT:
        raise StoreError(f"{where} is not a featstore manifest (format={found!r}).")
    version = found.get("version")
    if version == 1:
        raise StoreError(
            f"store {store} is in format version 1 (one Parquet file per model and "
            "identity); this featstore reads version 2 (one Delta Lake table per model).\n"
            f"Hint: convert it in place with `featstore migrate {store}` (rows identical, "
            "resumable if interrupted)."
        )
    if version != STORE_FORMAT_VERSION:
        raise StoreError(
            f"{where} says format version {version!r}; this featstore reads version "
            f"{STORE_FORMAT_VERSION}.\nHint: use the featstore that wrote it, or a newer one."
        )


def provenance_json(provenance: Mapping[str, Any]) -> str:
    """A provenance as a table's description holds it (keys sorted, UTF-8 kept)."""
    return json.dumps(dict(provenance), sort_keys=True, ensure_ascii=False)


def provenance_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """`key: stored X -> now Y` for every compared key that differs (nested keys dotted)."""
    flat_old, flat_new = _flatten(old), _flatten(new)
    added = DERIVED_PROVENANCE_KEYS - flat_old.keys()  # the stored table predates them
    keys = sorted((flat_old.keys() | flat_new.keys()) - UNCOMPARED_PROVENANCE_KEYS - added)
    return [
        f"{key}: stored {json.dumps(flat_old.get(key))} -> now {json.dumps(flat_new.get(key))}"
        for key in keys
        if flat_old.get(key) != flat_new.get(key)
    ]


def _flatten(value: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, dict) and item:
            out.update(_flatten(item, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = item
    return out
