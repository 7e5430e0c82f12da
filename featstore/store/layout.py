"""The on-disk store (docs/formats.md): layout, schema, provenance, atomic partition writes.

    <store>/_featstore.json                          marks the folder as a store
    <store>/model=<m>/_provenance.json               how model m's rows were made
    <store>/model=<m>/identity=<i>/data.parquet      one file per (model, identity)

The store is a local folder or a prefix on any filesystem pyarrow supports
(`featstore.store.location`). Locally each file is written under a temporary name beside its
final one and renamed; on object storage it is uploaded in one piece. Either way a
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
from typing import Any, overload
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

from featstore.errors import ProvenanceMismatchError, StoreError
from featstore.store.location import StoreLocation, local_location, resolve_store, temporary_suffix

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


def model_key(model: str) -> str:
    """`model=<m>`: the model's folder, relative to the store's root."""
    return f"model={encode_segment(model)}"


def partition_key(model: str, identity: str) -> str:
    """`model=<m>/identity=<i>/data.parquet`, relative to the store's root."""
    return f"{model_key(model)}/identity={encode_segment(identity)}/{DATA_FILE}"


def model_dir(store: Path, model: str) -> Path:
    return store / model_key(model)


def partition_file(store: Path, model: str, identity: str) -> Path:
    return store / partition_key(model, identity)


def features_type(dim: int) -> pa.DataType:
    return pa.list_(pa.float32(), dim)


def store_schema(dim: int) -> pa.Schema:
    """The columns of docs/formats.md, then featstore's extra columns."""
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


StoreLike = Path | StoreLocation  # a local folder, or where `resolve_store` points


@overload
def open_store(store: Path) -> Path: ...
@overload
def open_store(store: StoreLocation) -> StoreLocation: ...
def open_store(store: StoreLike) -> StoreLike:
    """Create the store (or accept an existing store) and check it is writable.

    A local folder is created if needed; on object storage nothing needs creating, and an
    existing prefix that holds other objects is refused the same way as a local folder.
    """
    loc = resolve_store(store)
    if loc.local is not None:
        _open_local(loc.local)
    else:
        _open_remote(loc)
    return store


def _open_local(store: Path) -> None:
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
            _check_manifest(manifest.read_bytes(), str(manifest))
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


def _open_remote(loc: StoreLocation) -> None:
    try:
        if loc.is_file(STORE_MANIFEST):
            _check_manifest(loc.read_bytes(STORE_MANIFEST), loc.describe(STORE_MANIFEST))
            probe = f".write-probe-{uuid.uuid4().hex}"
            loc.write_atomic(probe, b"")
            loc.delete_file(probe)
            return
        if loc.children():
            raise StoreError(
                f"--store {loc} holds objects but no {STORE_MANIFEST}, so it is not a featstore "
                "store.\nHint: pick a new or empty prefix; featstore will not mix its objects "
                "with others."
            )
        loc.write_atomic(STORE_MANIFEST, _json_bytes(_MANIFEST))
    except OSError as exc:
        raise StoreError(
            f"cannot write to --store {loc}: {loc.scrub(str(exc))}\n"
            "Hint: check the bucket exists, and the credentials (AWS_ACCESS_KEY_ID, "
            "AWS_SECRET_ACCESS_KEY) and endpoint (AWS_ENDPOINT_URL) this process sees."
        ) from exc


def _check_manifest(data: bytes, where: str) -> None:
    try:
        found = json.loads(data)
    except ValueError as exc:
        raise StoreError(f"{where} is not a featstore manifest: {exc}") from exc
    if not isinstance(found, dict) or found.get("format") != STORE_FORMAT:
        raise StoreError(f"{where} is not a featstore manifest (format={found!r}).")


_MANIFEST = {"format": STORE_FORMAT, "version": STORE_FORMAT_VERSION}


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True) + "\n").encode()


def write_json_atomic(path: Path, value: Any) -> None:
    local_location(path.parent).write_atomic(path.name, _json_bytes(value))


def remove_stale_temporaries(store: StoreLike) -> int:
    """Delete temporary files left by killed runs of this host (not by live ones).

    Also deletes model folders that an overwrite moved aside (`_trash-*`) but was killed
    before it finished deleting: their rows would otherwise show up in `**/*.parquet`.
    Object storage has neither (objects are uploaded whole, overwrites delete in place).
    """
    loc = resolve_store(store)
    if loc.local is None:
        return 0
    removed = 0
    for trash in loc.local.glob("_trash-*"):
        shutil.rmtree(trash, ignore_errors=True)
        removed += 1
    host = socket.gethostname()
    for path in loc.local.glob("model=*/**/*.tmp-*"):
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


def read_provenance(store: StoreLike, model: str) -> dict[str, Any] | None:
    loc = resolve_store(store)
    key = f"{model_key(model)}/{PROVENANCE_FILE}"
    try:
        value: dict[str, Any] = json.loads(loc.read_bytes(key))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StoreError(f"cannot read {loc.describe(key)}: {loc.scrub(str(exc))}") from exc
    return value


def provenance_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """`key: stored X -> now Y` lines for every compared setting that differs.

    Nested objects (detector, preprocessing) are compared key by key and named with dots
    (`detector.det_thresh`), so only what differs is printed, never a whole object.
    """
    keys = (old.keys() | new.keys()) - UNCOMPARED_PROVENANCE_KEYS
    flat_old = _flatten({k: old.get(k) for k in keys})
    flat_new = _flatten({k: new.get(k) for k in keys})
    return [
        f"{key}: stored {json.dumps(flat_old.get(key))} -> now {json.dumps(flat_new.get(key))}"
        for key in sorted(flat_old.keys() | flat_new.keys())
        if flat_old.get(key) != flat_new.get(key)
    ]


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def claim_model(
    store: StoreLike, model: str, provenance: Mapping[str, Any], *, overwrite: bool
) -> bool:
    """Record `provenance` for `model`, refusing to mix with rows made differently.

    Safe against concurrent claims (shards): two runs with the same settings write the
    same content; when the model has no provenance yet, a local store creates the file
    exclusively and the loser compares with the winner's, and object storage reads its
    write back (see `check_claim` for the check at the end of a run).

    Returns:
        True when existing rows of the model were discarded (overwrite of a different
        provenance), so every identity must be extracted again.
    """
    loc = resolve_store(store)
    stored = read_provenance(loc, model)
    if stored is not None:
        diffs = provenance_differences(stored, provenance)
        # A claim without rows (a run that failed before its first partition, e.g. on a
        # wrong checkpoint) has nothing to mix with: replace it instead of refusing.
        if diffs and not overwrite and present_identities(loc, model):
            raise _mismatch(loc, model, diffs)
        if diffs:
            _discard_model(loc, model)
            stored = None
    if stored is None:
        _create_provenance(loc, model, provenance)
    elif stored != provenance:  # only uncompared keys differ (featstore_version)
        _write_provenance(loc, model, provenance)
    return stored is None


def rebase_model(store: StoreLike, model: str, provenance: Mapping[str, Any]) -> str | None:
    """Record a new base dir for the model's rows (the images moved); the old one, or None.

    Only the base dir may differ: rows keep their relative paths, and partitions are
    compared without it (see `partition_is_current`), so unchanged identities are kept.
    """
    loc = resolve_store(store)
    stored = read_provenance(loc, model)
    if stored is None or stored.get("base_dir") == provenance.get("base_dir"):
        return None
    diffs = provenance_differences({**stored, "base_dir": None}, {**provenance, "base_dir": None})
    if diffs:
        raise _mismatch(loc, model, diffs)
    _write_provenance(loc, model, provenance)
    return str(stored.get("base_dir"))


def check_claim(store: StoreLike, model: str, provenance: Mapping[str, Any]) -> None:
    """Refuse when the model's provenance changed under a run (a concurrent run's claim)."""
    loc = resolve_store(store)
    stored = read_provenance(loc, model)
    diffs = provenance_differences(stored or {}, provenance)
    if diffs:
        raise _mismatch(loc, model, diffs, concurrent=True)


def _mismatch(
    loc: StoreLocation, model: str, diffs: list[str], *, concurrent: bool = False
) -> ProvenanceMismatchError:
    where = loc.describe(model_key(model))
    if concurrent:
        return ProvenanceMismatchError(
            f"{where} was claimed with other settings by another run while this one "
            "extracted:\n  " + "\n  ".join(diffs) + "\nHint: run every shard with the same "
            "settings; extract again with the settings you mean to keep (and --overwrite)."
        )
    moved = any(d.startswith("base_dir:") for d in diffs)
    return ProvenanceMismatchError(
        f"{where} holds rows extracted differently from this run:\n  "
        + "\n  ".join(diffs)
        + "\nHint: use the same settings, another --store, or --overwrite to "
        "replace this model's rows."
        + (
            "\nIf only the images moved (same folders below the base dir), keep the rows: "
            "rebase=True (CLI: --rebase)."
            if moved
            else ""
        )
    )


def _provenance_key(model: str) -> str:
    return f"{model_key(model)}/{PROVENANCE_FILE}"


def _write_provenance(loc: StoreLocation, model: str, provenance: Mapping[str, Any]) -> None:
    try:
        loc.write_atomic(_provenance_key(model), _json_bytes(dict(provenance)))
    except OSError as exc:
        raise StoreError(f"cannot write {loc.describe(_provenance_key(model))}: {exc}") from exc


def _create_provenance(loc: StoreLocation, model: str, provenance: Mapping[str, Any]) -> None:
    """Write the model's first provenance; a concurrent first claim must agree with it."""
    if loc.local is not None:
        path = loc.local / _provenance_key(model)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{temporary_suffix()}")
        tmp.write_bytes(_json_bytes(dict(provenance)))
        try:
            os.link(tmp, path)  # fails if another run created it first: exclusive
        except FileExistsError:
            pass
        except OSError:  # a filesystem without hard links: plain atomic replace
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    else:
        _write_provenance(loc, model, provenance)
    check_claim(loc, model, provenance)


def _discard_model(loc: StoreLocation, model: str) -> None:
    """Delete a model's rows and provenance (for --overwrite with other settings)."""
    if loc.local is not None:
        # Move aside first so a crash never leaves old and new rows side by side.
        trash = loc.local / f"_trash-{uuid.uuid4().hex}"
        os.replace(model_dir(loc.local, model), trash)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        # No rename on object storage: delete in place. A run killed meanwhile leaves old
        # partitions whose own provenance differs, so the next run redoes them.
        loc.remove_tree(model_key(model))


def present_identities(store: StoreLike, model: str) -> set[str]:
    """The identity folder names (`identity=<encoded>`) that hold a partition file."""
    loc = resolve_store(store)
    if loc.local is not None:
        folder = model_dir(loc.local, model)
        return {p.parent.name for p in folder.glob(f"identity=*/{DATA_FILE}")}
    return {
        key.split("/")[0]
        for key, _ in loc.list_files(model_key(model))
        if key.endswith(f"/{DATA_FILE}") and key.count("/") == 1
    }


def partition_is_current(
    store: StoreLike, model: str, identity: str, fingerprint: str, provenance: Mapping[str, Any]
) -> bool:
    """True when the identity's file exists and was made from these inputs and settings."""
    loc = resolve_store(store)
    try:
        path = loc.path(partition_key(model, identity))
        metadata = pq.read_schema(path, filesystem=loc.fs).metadata or {}
        stored = json.loads(metadata.get(META_PROVENANCE, b"null"))
    except (OSError, ValueError, pa.ArrowInvalid):
        return False  # missing, or a torn file from an old crash: extract again
    # The base dir is the model's (claim_model and rebase_model check it), not the rows':
    # rows keep relative paths, so a rebased model's partitions stay current.
    return (
        metadata.get(META_FINGERPRINT) == fingerprint.encode()
        and isinstance(stored, dict)
        and not provenance_differences(
            {**stored, "base_dir": None}, {**provenance, "base_dir": None}
        )
    )


def write_partition(
    store: StoreLike,
    model: str,
    identity: str,
    table: pa.Table,
    *,
    fingerprint: str,
    provenance: Mapping[str, Any],
) -> str:
    """Write one (model, identity) partition atomically; replaces a previous version.

    Returns:
        Where it was written, as users see it (a local path or the scrubbed URI).
    """
    loc = resolve_store(store)
    key = partition_key(model, identity)
    metadata = dict(table.schema.metadata or {})
    metadata[META_FINGERPRINT] = fingerprint.encode()
    metadata[META_PROVENANCE] = json.dumps(provenance, sort_keys=True).encode()
    sink = pa.BufferOutputStream()
    pq.write_table(table.replace_schema_metadata(metadata), sink, compression="zstd")
    try:
        loc.write_atomic(key, memoryview(sink.getvalue()))
    except OSError as exc:
        message = exc.strerror if loc.local is not None and exc.strerror else loc.scrub(str(exc))
        raise StoreError(f"cannot write {loc.describe(key)}: {message}") from exc
    return loc.describe(key)
