"""`featstore migrate`: a version-1 store (one Parquet file per model and identity) into
version 2 (one Delta table per model), in place.

For each model folder, in order:

1. its partition files stream into a Delta table in the same folder, one commit (rows
   identical; the input fingerprint each file recorded becomes a column; the model's
   `_provenance.json` becomes the table's provenance);
2. only once that commit exists are the old `identity=*` folders and `_provenance.json`
   deleted (the table's log never lists them, so no reader sees them in between);
3. the store's marker says version 2 only when every model is done.

A kill at any point leaves a store that every command refuses as version 1 and that the
same `featstore migrate` finishes: a model whose table is committed is only cleaned up,
one whose commit never happened starts again (its uncommitted data files are deleted).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from featstore.errors import StoreError
from featstore.store.format import (
    FINGERPRINT_COLUMN,
    STORE_FORMAT,
    STORE_MANIFEST,
    check_model_name,
    delta_schema,
    manifest_bytes,
    provenance_json,
    store_schema,
    to_delta,
)
from featstore.store.location import StoreLocation, resolve_store
from featstore.store.migrate_checks import V1_DATA, V1_PROVENANCE, check_partitions, read_partition
from featstore.store.properties import commit_properties, writer_properties
from featstore.store.table import ModelTable

_V1_PROVENANCE = V1_PROVENANCE
_V1_DATA = V1_DATA
_V1_FINGERPRINT = b"featstore.input_fingerprint"


@dataclass(frozen=True)
class Migration:
    """What `migrate` did to one model."""

    model: str
    identities: int
    rows: int
    already_done: bool  # committed by an earlier, interrupted run


def migrate(store: str | os.PathLike[str]) -> list[Migration]:
    """Convert the version-1 store `store` to version 2 in place (see the module docstring).

    Raises:
        StoreError: not a featstore store, or a model that version 2 cannot name.
    """
    location = resolve_store(store)
    version = _manifest_version(location)
    if version == 2:
        return []
    done = []
    for folder in location.children():
        if folder.startswith("model="):
            done.append(_migrate_model(location, folder))
    location.write_atomic(STORE_MANIFEST, manifest_bytes())
    for leftover in location.children():  # an old --overwrite killed midway
        if leftover.startswith("_trash-"):
            location.remove_tree(leftover)
    return done


def _manifest_version(location: StoreLocation) -> int:
    try:
        found: Any = json.loads(location.read_bytes(STORE_MANIFEST))
    except FileNotFoundError:
        raise StoreError(f"{location} is not a featstore store (no {STORE_MANIFEST}).") from None
    except (OSError, ValueError) as exc:
        raise StoreError(f"cannot read {location.describe(STORE_MANIFEST)}: {exc}") from exc
    if not isinstance(found, dict) or found.get("format") != STORE_FORMAT:
        raise StoreError(f"{location.describe(STORE_MANIFEST)} is not a featstore manifest.")
    version = found.get("version")
    if version not in (1, 2):
        raise StoreError(f"{location}: unknown store format version {version!r}.")
    return int(version)


def _migrate_model(location: StoreLocation, folder: str) -> Migration:
    files = sorted(
        key
        for key, _ in location.list_files(folder)
        if key.startswith("identity=") and key.endswith(f"/{_V1_DATA}") and key.count("/") == 1
    )
    provenance = _v1_provenance(location, folder)
    model = check_model_name(str(provenance.get("model", folder[len("model=") :])))
    if f"model={model}" != folder:
        raise StoreError(
            f"{location.describe(folder)} holds model {model!r}, whose version-2 folder would "
            f"be model={model}.\nHint: rename the folder to model={model}, then migrate again."
        )
    table = ModelTable(location, model)
    already = table.exists()
    rows = 0
    if not already:
        check_partitions(location, folder, files)  # before anything is written or deleted
        for key, _ in location.list_files(folder):  # data files of a killed migration
            if "/" not in key and key.endswith(".parquet"):
                location.delete_file(f"{folder}/{key}")
        rows = _write_table(location, table, folder, files, provenance)
    # The migrated partitions' files, then their folders once empty (also one a killed
    # cleanup left empty). Anything else stays: nothing that was not migrated is deleted.
    for key in files:
        location.delete_file(f"{folder}/{key}")
    for name in location.children(folder):
        if name.startswith("identity=") and not location.children(f"{folder}/{name}"):
            location.remove_tree(f"{folder}/{name}")
    if location.is_file(f"{folder}/{_V1_PROVENANCE}"):
        location.delete_file(f"{folder}/{_V1_PROVENANCE}")
    return Migration(model, len(files), rows, already)


def _v1_provenance(location: StoreLocation, folder: str) -> dict[str, Any]:
    key = f"{folder}/{_V1_PROVENANCE}"
    try:
        value = json.loads(location.read_bytes(key))
    except FileNotFoundError:
        if location.children(f"{folder}/_delta_log"):  # migrated, marker not yet written
            table = ModelTable(location, folder[len("model=") :])
            return table.open().provenance
        raise StoreError(
            f"{location.describe(key)} is missing: the model's settings are unknown.\n"
            "Hint: extract the model again into a new store."
        ) from None
    except (OSError, ValueError) as exc:
        raise StoreError(f"cannot read {location.describe(key)}: {exc}") from exc
    if not isinstance(value, dict):
        raise StoreError(f"{location.describe(key)} is not a provenance object.")
    return value


def _write_table(
    location: StoreLocation,
    table: ModelTable,
    folder: str,
    files: list[str],
    provenance: dict[str, Any],
) -> int:
    """All partitions of the model as one Delta commit; the number of rows written."""
    from deltalake import write_deltalake

    if files:
        first = pq.read_schema(location.path(f"{folder}/{files[0]}"), filesystem=location.fs)
        schema = pa.schema([f for f in first if f.name != FINGERPRINT_COLUMN])
    else:
        schema = store_schema(int(provenance.get("feature_dim", 1)))
    schema = schema.append(pa.field(FINGERPRINT_COLUMN, pa.string())).remove_metadata()
    counted = [0]

    def batches() -> Iterator[pa.RecordBatch]:
        for key in files:
            rows, metadata = read_partition(location, folder, key)
            fingerprint = metadata.get(_V1_FINGERPRINT, b"").decode()
            rows = rows.append_column(
                pa.field(FINGERPRINT_COLUMN, pa.string()),
                pa.array([fingerprint] * rows.num_rows, pa.string()),
            )
            columns = [
                rows.column(f.name) if f.name in rows.column_names else pa.nulls(len(rows), f.type)
                for f in schema
            ]
            counted[0] += rows.num_rows
            yield from to_delta(pa.Table.from_arrays(columns, schema=schema)).to_batches()

    try:
        write_deltalake(
            table.uri,
            pa.RecordBatchReader.from_batches(delta_schema(schema), batches()),
            mode="error",
            name=table.model,
            description=provenance_json(provenance),
            storage_options=table.options or None,
            writer_properties=writer_properties(),
            commit_properties=commit_properties("migrate"),
        )
    except Exception as exc:
        raise StoreError(f"cannot write {table}: {location.scrub(str(exc))}") from exc
    return counted[0]
