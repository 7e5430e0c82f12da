"""The Dataset's samples, materialised once into uncompressed Arrow IPC files and mapped.

    <cache_dir>/<key>/frames.arrow          one row per sample, in sample order
    <cache_dir>/<key>/input_features.f32    the samples' input features: raw float32,
                                            [samples, feature_dim], row-major
    <cache_dir>/<key>/identities.arrow      one row per identity: name, target features
    <cache_dir>/<key>/in_use.lock           shared-locked (flock) by every Dataset using it
    <cache_dir>/<key>/manifest.json         written last: what the folder was made from,
                                            and each file's size and XXH3-128 checksum
    <cache_dir>/<key>.lock                  the build lock (only a build takes it)

`key` digests the source and everything that changes the samples (model, `where`, the
store's files or the JSON file's size and time), so a changed source gets a new folder
and never reads stale samples. When a new folder is written, the folders of other versions
of the same source are deleted, except those a Dataset still uses (a job on `version=3`
beside one on the latest): each Dataset holds a shared lock on its folder's `in_use.lock`
while it lives, and eviction takes the exclusive lock without waiting or skips the folder.

Opening checks the files against the manifest's checksums (XXH3 hashes several GB/s, cheap
next to reading the features once): a damaged cache is rebuilt, or refused with StoreError
where it cannot be, never served or parsed. A complete cache is opened without the build
lock, so one on a read-only mount is read as it is.

Why IPC and a memory map: every DataLoader worker maps the same file read-only, so the
features live once, in the OS page cache, whatever the number of workers; nothing is
parsed or copied to open it (a few milliseconds), and a batch is a numpy gather from the
mapped columns. Each file holds a single record batch, so every column is one contiguous
buffer that numpy can view without a copy. The input features, nearly all of the bytes,
are a raw file of their own: a JSON source's features, spooled to disk as they are read,
become that file by a rename, never read back through memory (which would make the
first construction's memory grow with the file).
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import xxhash
from numpy.typing import NDArray

from featstore.errors import StoreError
from featstore.store.fields import FIELDS, FrameField
from featstore.store.paths import AtomicPath

CACHE_FORMAT = "featstore-dataset-cache"
# 2: the head pose (euler_angles) joined the per-frame fields; 3: input_features.f32;
# 4: pose_landmarks_3d, keypoints_3d, front_keypoints_3d (face000's 3D trainers);
# 5: checksums in the manifest, in_use.lock
CACHE_VERSION = 5
FRAMES_FILE = "frames.arrow"
FEATURES_FILE = "input_features.f32"
IDENTITIES_FILE = "identities.arrow"
MANIFEST_FILE = "manifest.json"
IN_USE_FILE = "in_use.lock"
CHECKED_FILES = (FRAMES_FILE, FEATURES_FILE, IDENTITIES_FILE)
_HASH_CHUNK = 16 << 20

# What a sample's `position_encoding` holds: the spherical angles or the head pose
# (docs/formats.md).
PositionEncoding = Literal["spherical_angles", "euler_angles"]
POSITION_ENCODINGS: tuple[str, ...] = ("spherical_angles", "euler_angles")
# A sample's per-frame fields: the store's value behind each (featstore.store.fields).
SAMPLE_FIELDS: dict[str, FrameField] = {
    "position_encoding": FIELDS["spherical_angles"],
    "euler_angles": FIELDS["euler_angles"],  # face000-pose-v1 (docs/formats.md); NaN if none
    "landmarks_2d": FIELDS["landmarks_2d"],
    "landmarks_3d": FIELDS["landmarks_3d"],
    "box": FIELDS["box"],
    "avg_angle": FIELDS["avg_angle"],
    "det_score": FIELDS["det_score"],
    # face000-pose-v1's posed mean face (the 3D JSON's landmarks_3d, the npy directory's
    # landmarks_3d_original).
    "pose_landmarks_3d": FIELDS["pose_landmarks_3d"],
}
# The shape of one sample's value of each ([] for a scalar).
FRAME_FIELDS: dict[str, tuple[int, ...]] = {
    name: field.shape for name, field in SAMPLE_FIELDS.items()
} | {
    # Derived, not stored: face000-pose-v1's posed mean face normalised as face000's npy
    # trainers do it (the frame's and its identity's frontal image's).
    "keypoints_3d": (5, 3),
    "front_keypoints_3d": (5, 3),
}
# Fields a store's samples compute from a scale that export-npy derives by solving every
# frontal image's head pose again (issue 25: 12 s of a 22 s cold open at 10^5 identities):
# made only for a Dataset that asks for them, in a cache folder of their own.
STORE_KEYPOINT_FIELDS = ("keypoints_3d", "front_keypoints_3d")


@dataclass
class SampleColumns:
    """Every sample's values as numpy arrays (views of the mapped files once opened).

    Rows are samples (ok frames of valid identities, by identity then frame);
    `identity_index` points into `identities` and `target_features`.
    """

    identity_index: NDArray[np.int32]  # [N]
    input_features: NDArray[np.float32]  # [N, D]
    # FRAME_FIELDS; NaN where the source has none. A store's samples leave out
    # STORE_KEYPOINT_FIELDS unless asked for them (`featstore.dataset.sources.read_store`).
    fields: dict[str, NDArray[np.float32]]
    image_path: pa.Array  # [N] strings: absolute paths, forward slashes
    identities: list[str]  # [I]
    target_features: NDArray[np.float32]  # [I, D]
    face_image_path: pa.Array  # [I] strings
    model: str  # the DINOv2 model that made the features
    # A file holding exactly `input_features` (raw float32, row-major) that the cache may
    # move in rather than write them again (a JSON source's spool); None: write them.
    features_file: Path | None = None

    def __len__(self) -> int:
        return len(self.identity_index)

    @functools.cached_property
    def identity_names(self) -> NDArray[np.object_]:
        """`identities` as a numpy array, so a batch's names are one `np.take`."""
        return np.array(self.identities, dtype=object)

    @property
    def dim(self) -> int:
        return int(self.input_features.shape[1])


def cache_key(description: Mapping[str, Any]) -> str:
    """A stable digest of what the samples are made from."""
    payload = json.dumps(
        {"format": CACHE_FORMAT, "version": CACHE_VERSION, **description},
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/featstore/datasets`, i.e. `~/.cache/featstore/datasets` by default."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "featstore" / "datasets"


class CacheLease:
    """A cache folder a Dataset uses: a shared lock on its `in_use.lock` while this lives,
    so no build of another version deletes it (spawned workers map it later)."""

    def __init__(self, folder: Path, fd: int | None) -> None:
        self.folder = folder
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops its lock
            self._fd = None

    def __del__(self) -> None:
        self.release()


def cached_folder(cache_dir: Path, description: Mapping[str, Any]) -> CacheLease | None:
    """The complete, undamaged cache folder of `description` if one was built, leased."""
    return _lease(cache_dir / cache_key(description), verify=True)


def materialise(
    cache_dir: Path,
    description: Mapping[str, Any],
    build: Callable[[], SampleColumns],
) -> CacheLease:
    """The folder holding `description`'s samples, built with `build()` if not there yet
    (or damaged), leased to the caller.

    Concurrent constructions (DataLoader-less scripts started side by side, one per
    DDP rank) wait on a lock, so the samples are built once and the others map them.

    Args:
        cache_dir: where cache folders live (created if needed).
        description: what the samples are made from; must identify them completely.
            Its `source` entry names the selection (path, model, filter) independently
            of the source's version: folders of the same `source` are older versions.
        build: makes the samples; called at most once.
    """
    key = cache_key(description)
    folder = cache_dir / key
    found = _lease(folder, verify=True)  # no lock, no write: a read-only mount works
    if found is not None:
        return found
    damaged = (folder / MANIFEST_FILE).is_file()
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        lock = _lock_exclusive(cache_dir / f"{key}.lock")
    except OSError as exc:
        state = "is damaged (its files do not match their checksums)" if damaged else "is absent"
        raise StoreError(
            f"the dataset cache {folder} {state}, and it cannot be built in {cache_dir}: "
            f"{exc.strerror or exc}.\nHint: pass cache_dir= a folder you can write to"
            + (f", or delete {folder} (as its owner)." if damaged else ".")
        ) from exc
    try:
        found = _lease(folder, verify=True)
        if found is not None:
            return found
        # Under the lock, a temporary of this key is a killed build's: never used, removed.
        for stale in cache_dir.glob(f"{key}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        columns = build()
        try:
            with AtomicPath(folder) as target:
                target.tmp.mkdir()
                _write(target.tmp, columns, dict(description))
                if folder.exists():  # torn or damaged: readers keep their mapping of it
                    _discard(folder)
        except OSError as exc:
            raise StoreError(
                f"cannot write the dataset cache {folder}: {exc.strerror or exc}.\n"
                "Hint: free some disk space or pass cache_dir= another folder."
            ) from exc
        built = _lease(folder, verify=False)  # just written and checked by the build
        _remove_older_versions(cache_dir, key, description.get("source"))
    finally:
        os.close(lock)  # drops the lock
    if built is None:
        raise StoreError(f"the dataset cache {folder} vanished as it was built.\nHint: rerun.")
    return built


def open_columns(folder: Path) -> SampleColumns:
    """Map a materialised folder's files and view their columns (no copy, no parsing)."""
    frames = _read_single_batch(folder / FRAMES_FILE)
    identities = _read_single_batch(folder / IDENTITIES_FILE)
    dim = identities.schema.field("target_features").type.list_size
    return SampleColumns(
        identity_index=frames.column("identity_index").to_numpy(),
        input_features=_map_features(folder / FEATURES_FILE, frames.num_rows, dim),
        fields={
            name: _fixed_size_view(frames.column(name), s)
            for name, s in FRAME_FIELDS.items()
            if name in frames.schema.names
        },
        image_path=frames.column("image_path"),
        identities=identities.column("identity").to_pylist(),
        target_features=_fixed_size_view(identities.column("target_features"), (dim,)),
        face_image_path=identities.column("face_image_path"),
        model=read_manifest(folder)["model"],
    )


def read_manifest(folder: Path) -> dict[str, Any]:
    value: dict[str, Any] = json.loads((folder / MANIFEST_FILE).read_text("utf-8"))
    return value


def _complete(folder: Path) -> bool:
    return (folder / MANIFEST_FILE).is_file()


def _lease(folder: Path, *, verify: bool) -> CacheLease | None:
    """Share-lock `folder`'s in_use.lock; None unless the folder is complete (and, with
    `verify`, its files match the manifest's checksums)."""
    try:
        fd = os.open(folder / IN_USE_FILE, os.O_RDONLY)  # read-only: works on any mount
    except OSError:
        return None
    lease = CacheLease(folder, fd)
    fcntl.flock(fd, fcntl.LOCK_SH)
    try:
        # Evicted between our open and our lock: the folder was renamed away first.
        if os.fstat(fd).st_ino != (folder / IN_USE_FILE).stat().st_ino:
            return None
        if not _complete(folder) or (verify and not _intact(folder)):
            return None
    except (OSError, ValueError):
        return None
    return lease


def _intact(folder: Path) -> bool:
    """Whether each file has the size and checksum the manifest (written last) records."""
    recorded = read_manifest(folder).get("files")
    if not isinstance(recorded, dict) or sorted(recorded) != sorted(CHECKED_FILES):
        return False
    return all(_checksum(folder / name) == recorded[name] for name in CHECKED_FILES)


def _checksum(path: Path) -> dict[str, Any]:
    digest = xxhash.xxh3_128()
    size = 0
    with open(path, "rb", buffering=0) as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return {"bytes": size, "xxh3_128": digest.hexdigest()}


def _discard(folder: Path) -> None:
    """Remove `folder`: renamed away first, so no reader opens it while it goes."""
    doomed = folder.with_name(f"{folder.name}.tmp-discard-{uuid.uuid4().hex[:8]}")
    os.replace(folder, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def _lock_exclusive(path: Path) -> int:
    """Open (creating) `path` and wait for its exclusive lock; the descriptor holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _write(folder: Path, columns: SampleColumns, description: dict[str, Any]) -> None:
    features = folder / FEATURES_FILE
    if columns.features_file is not None:
        os.replace(columns.features_file, features)
    else:
        np.ascontiguousarray(columns.input_features, dtype=np.float32).tofile(features)
    frames = {
        "identity_index": pa.array(columns.identity_index.astype(np.int32, copy=False)),
        **{name: _fixed_size_array(values) for name, values in columns.fields.items()},
        "image_path": columns.image_path,
    }
    identities = {
        "identity": pa.array(columns.identities, pa.string()),
        "target_features": _fixed_size_array(columns.target_features),
        "face_image_path": columns.face_image_path,
    }
    _write_single_batch(folder / FRAMES_FILE, pa.record_batch(frames))
    _write_single_batch(folder / IDENTITIES_FILE, pa.record_batch(identities))
    (folder / IN_USE_FILE).touch()
    manifest = {
        **description,
        "files": {name: _checksum(folder / name) for name in CHECKED_FILES},
        "samples": len(columns),
        "identities": len(columns.identities),
        "feature_dim": columns.dim,
        "model": columns.model,
    }
    (folder / MANIFEST_FILE).write_text(
        json.dumps(manifest, indent=2, ensure_ascii=False, sort_keys=True) + "\n", "utf-8"
    )


def _write_single_batch(path: Path, batch: pa.RecordBatch) -> None:
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, batch.schema) as writer:
        writer.write_batch(batch)


def _map_features(path: Path, samples: int, dim: int) -> NDArray[np.float32]:
    """The input features file, mapped read-only as `[samples, dim]`."""
    try:
        size = path.stat().st_size
        if size != samples * dim * 4:
            raise ValueError(f"{size} bytes, expected {samples} x {dim} float32")
        if not samples:
            return np.zeros((0, dim), np.float32)  # an empty file cannot be mapped
        mapped = np.memmap(path, dtype=np.float32, mode="r", shape=(samples, dim))
        # A plain ndarray view: indexing a np.memmap runs Python code for every row.
        return mapped.view(np.ndarray)
    except (OSError, ValueError) as exc:
        raise StoreError(
            f"cannot read the dataset cache file {path}: {exc}.\n"
            f"Hint: delete the folder {path.parent}; it is rebuilt on next use."
        ) from exc


def _read_single_batch(path: Path) -> pa.RecordBatch:
    try:
        reader = pa.ipc.open_file(pa.memory_map(str(path), "r"))
        if reader.num_record_batches != 1:
            raise ValueError(f"expected 1 record batch, found {reader.num_record_batches}")
        return reader.get_batch(0)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise StoreError(
            f"cannot read the dataset cache file {path}: {exc}.\n"
            f"Hint: delete the folder {path.parent}; it is rebuilt on next use."
        ) from exc


def _fixed_size_array(values: NDArray[np.float32]) -> pa.Array:
    """`[N, *shape]` float32 as a flat fixed_size_list column (zero-copy from numpy)."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    flat = pa.array(values.reshape(-1))
    size = int(np.prod(values.shape[1:], dtype=np.int64))
    return flat if values.ndim == 1 else pa.FixedSizeListArray.from_arrays(flat, size)


def _fixed_size_view(column: pa.Array, shape: tuple[int, ...]) -> NDArray[np.float32]:
    flat = column
    if pa.types.is_fixed_size_list(column.type):  # `.values`, not flatten(): no compute import
        size = column.type.list_size
        flat = column.values.slice(column.offset * size, len(column) * size)
    values: NDArray[np.float32] = flat.to_numpy(zero_copy_only=True)
    return values.reshape(len(column), *shape)


def _remove_older_versions(cache_dir: Path, key: str, source: object) -> None:
    """Delete complete cache folders of the same source made from another version of it,
    unless a Dataset uses them (its shared lock on in_use.lock)."""
    if source is None:
        return
    for manifest_path in cache_dir.glob(f"*/{MANIFEST_FILE}"):
        folder = manifest_path.parent
        if folder.name == key or ".tmp-" in folder.name:  # another process's build
            continue
        try:
            if read_manifest(folder).get("source") != source:
                continue
            fd = os.open(folder / IN_USE_FILE, os.O_RDONLY)
        except FileNotFoundError:  # made before in_use.lock existed: nobody can hold it
            fd = None
        except (OSError, ValueError):
            continue
        try:
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            _discard(folder)
            (cache_dir / f"{folder.name}.lock").unlink(missing_ok=True)
        except OSError:  # in use (BlockingIOError), or already gone
            continue
        finally:
            if fd is not None:
                os.close(fd)
