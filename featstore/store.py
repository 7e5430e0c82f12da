"""The on-disk store (SPEC §3): layout, schema, provenance, atomic partition writes.

    <store>/_featstore.json                          marks the folder as a store
    <store>/model=<m>/_provenance.json               how model m's rows were made
    <store>/model=<m>/identity=<i>/data.parquet      one file per (model, identity)

Each file is written under a temporary name beside its final one and renamed, so a
partition appears whole or not at all. `identity` and `model` are also real columns
in every file (exact strings; readers need not trust or decode directory names).
Directory names percent-encode the characters that filesystems, URLs or the Hive
`key=value` convention would mangle, so `50%` lives in `identity=50%25`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

from featstore.errors import ProvenanceMismatchError, StoreError

STORE_MANIFEST = "_featstore.json"
PROVENANCE_FILE = "_provenance.json"
DATA_FILE = "data.parquet"
STORE_FORMAT = "featstore-store"
STORE_FORMAT_VERSION = 1
META_PROVENANCE = b"featstore.provenance"
META_FINGERPRINT = b"featstore.input_fingerprint"
# Recorded but not compared: a newer featstore may extend a store an older one made.
UNCOMPARED_PROVENANCE_KEYS = frozenset({"featstore_version"})
_UNSAFE = '%/\\:*?"<>|=#'


def encode_segment(value: str) -> str:
    """Percent-encode what a path segment cannot hold as is (like Hive/pyarrow 'uri')."""
    encoded = "".join(
        quote(ch, safe="") if ch in _UNSAFE or ord(ch) < 32 or ord(ch) == 127 else ch
        for ch in value
    )
    # "." and ".." are not names a folder can have; a leading dot would hide the folder.
    return "%2E" + encoded[1:] if encoded.startswith(".") else encoded


def model_dir(store: Path, model: str) -> Path:
    return store / f"model={encode_segment(model)}"


def partition_file(store: Path, model: str, identity: str) -> Path:
    return model_dir(store, model) / f"identity={encode_segment(identity)}" / DATA_FILE


def features_type(dim: int) -> pa.DataType:
    return pa.list_(pa.float32(), dim)


def store_schema(dim: int) -> pa.Schema:
    """The columns of SPEC §3, then featstore's extra columns."""
    point2, point3 = pa.list_(pa.float32(), 2), pa.list_(pa.float32(), 3)
    return pa.schema(
        [
            ("identity", pa.string()),
            ("model", pa.string()),
            ("role", pa.string()),
            ("image_path", pa.string()),
            ("frame_index", pa.int32()),
            ("status", pa.string()),
            ("error", pa.string()),
            ("features", features_type(dim)),
            ("landmarks_2d", pa.list_(point2, 5)),
            ("landmarks_3d", pa.list_(point3, 5)),
            ("box", pa.list_(pa.float32(), 4)),
            ("det_score", pa.float32()),
            ("spherical_angles", pa.list_(pa.float32(), 5)),
            ("avg_angle", pa.float32()),
            ("width", pa.int32()),
            ("height", pa.int32()),
            ("file_size", pa.int64()),
            ("extracted_at", pa.timestamp("us", tz="UTC")),
        ]
    )


def fixed_size_column(
    values: NDArray[np.float32], valid: NDArray[np.bool_], dtype: pa.DataType
) -> pa.Array:
    """A (nested) fixed_size_list column from `[N, ...]` values; rows not `valid` are null."""
    flat: pa.Array = pa.array(np.ascontiguousarray(values, dtype=np.float32).reshape(-1))
    for size in reversed(values.shape[2:]):
        flat = pa.FixedSizeListArray.from_arrays(flat, size)
    column = pa.FixedSizeListArray.from_arrays(flat, values.shape[1], mask=pa.array(~valid))
    return column.cast(dtype)


def open_store(store: Path) -> Path:
    """Create the store folder (or accept an existing store) and check it is writable."""
    store = Path(store)
    manifest = store / STORE_MANIFEST
    if store.exists() and not store.is_dir():
        raise StoreError(f"--store {store} exists and is not a folder.")
    if store.is_dir() and not manifest.exists() and any(store.iterdir()):
        raise StoreError(
            f"--store {store} is a non-empty folder without {STORE_MANIFEST}, so it is not a "
            "featstore store.\nHint: pick a new or empty folder; featstore will not mix its "
            "files with others."
        )
    try:
        store.mkdir(parents=True, exist_ok=True)
        if manifest.exists():
            found = json.loads(manifest.read_text("utf-8"))
            if found.get("format") != STORE_FORMAT:
                raise StoreError(f"{manifest} is not a featstore manifest (format={found!r}).")
        else:
            write_json_atomic(manifest, {"format": STORE_FORMAT, "version": STORE_FORMAT_VERSION})
        probe = store / f".write-probe-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise StoreError(
            f"cannot write to --store {store}: {exc.strerror or exc}.\n"
            "Hint: choose a folder you can write to, or fix its permissions."
        ) from exc
    return store


def write_json_atomic(path: Path, value: Any) -> None:
    tmp = path.with_name(f"{path.name}.{_tmp_suffix()}")
    tmp.write_text(json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True) + "\n", "utf-8")
    os.replace(tmp, path)


def _tmp_suffix() -> str:
    return f"tmp-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def remove_stale_temporaries(store: Path) -> int:
    """Delete temporary files left by killed runs of this host (not by live ones).

    Also deletes model folders that an overwrite moved aside (`_trash-*`) but was killed
    before it finished deleting: their rows would otherwise show up in `**/*.parquet`.
    """
    removed = 0
    for trash in store.glob("_trash-*"):
        shutil.rmtree(trash, ignore_errors=True)
        removed += 1
    host = socket.gethostname()
    for path in store.glob("model=*/**/*.tmp-*"):
        parts = path.name.rsplit(".tmp-", 1)[1].split("-")
        if len(parts) < 3 or "-".join(parts[:-2]) != host:
            continue
        pid = int(parts[-2]) if parts[-2].isdigit() else -1
        if pid == os.getpid() or pid_alive(pid):
            continue
        path.unlink(missing_ok=True)
        removed += 1
    return removed


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs on this host (a temporary of a live run is not stale)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_provenance(store: Path, model: str) -> dict[str, Any] | None:
    path = model_dir(store, model) / PROVENANCE_FILE
    if not path.exists():
        return None
    try:
        value: dict[str, Any] = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise StoreError(f"cannot read {path}: {exc}") from exc
    return value


def provenance_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Human-readable `key: stored X, now Y` lines for every compared key that differs."""
    keys = sorted((old.keys() | new.keys()) - UNCOMPARED_PROVENANCE_KEYS)
    return [
        f"{key}: stored {json.dumps(old.get(key))}, now {json.dumps(new.get(key))}"
        for key in keys
        if old.get(key) != new.get(key)
    ]


def claim_model(store: Path, model: str, provenance: Mapping[str, Any], *, overwrite: bool) -> bool:
    """Record `provenance` for `model`, refusing to mix with rows made differently.

    Returns:
        True when existing rows of the model were discarded (overwrite of a different
        provenance), so every identity must be extracted again.
    """
    stored = read_provenance(store, model)
    folder = model_dir(store, model)
    if stored is not None:
        diffs = provenance_differences(stored, provenance)
        # A claim without rows (a run that failed before its first partition, e.g. on a
        # wrong checkpoint) has nothing to mix with: replace it instead of refusing.
        has_rows = any(folder.glob(f"identity=*/{DATA_FILE}"))
        if diffs and not overwrite and has_rows:
            raise ProvenanceMismatchError(
                f"{folder} holds rows extracted differently from this run:\n  "
                + "\n  ".join(diffs)
                + "\nHint: use the same settings, another --store, or --overwrite to "
                "replace this model's rows."
            )
        if diffs:
            # Move aside first so a crash never leaves old and new rows side by side.
            trash = store / f"_trash-{uuid.uuid4().hex}"
            os.replace(folder, trash)
            shutil.rmtree(trash, ignore_errors=True)
            stored = None
    folder.mkdir(parents=True, exist_ok=True)
    if stored != provenance:
        write_json_atomic(folder / PROVENANCE_FILE, dict(provenance))
    return stored is None


def partition_is_current(
    store: Path, model: str, identity: str, fingerprint: str, provenance: Mapping[str, Any]
) -> bool:
    """True when the identity's file exists and was made from these inputs and settings."""
    path = partition_file(store, model, identity)
    try:
        metadata = pq.read_schema(path).metadata or {}
        stored = json.loads(metadata.get(META_PROVENANCE, b"null"))
    except (OSError, ValueError, pa.ArrowInvalid):
        return False  # missing, or a torn file from an old crash: extract again
    return (
        metadata.get(META_FINGERPRINT) == fingerprint.encode()
        and isinstance(stored, dict)
        and not provenance_differences(stored, provenance)
    )


def write_partition(
    store: Path,
    model: str,
    identity: str,
    table: pa.Table,
    *,
    fingerprint: str,
    provenance: Mapping[str, Any],
) -> Path:
    """Write one (model, identity) partition atomically; replaces a previous version."""
    path = partition_file(store, model, identity)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = dict(table.schema.metadata or {})
    metadata[META_FINGERPRINT] = fingerprint.encode()
    metadata[META_PROVENANCE] = json.dumps(provenance, sort_keys=True).encode()
    tmp = path.with_name(f"{path.name}.{_tmp_suffix()}")
    try:
        pq.write_table(table.replace_schema_metadata(metadata), tmp, compression="zstd")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return path
