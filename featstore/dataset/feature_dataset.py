"""`FeatureDataset`: the trainer's samples, from a store or from the trainer's JSON.

    dataset = featstore.FeatureDataset("store/", model="dinov2_vitb14")
    loader = DataLoader(dataset, batch_size=128, shuffle=True, num_workers=2)
    train, val = featstore.split_by_identity(dataset, val_fraction=0.1, seed=0)

One sample per `ok` frame of a valid identity, by identity then frame, with the seed
trainer's keys: `input_features` (the frame's DINOv2 features), `position_encoding` (its
`spherical_angles`), `target_features` (the identity's frontal features),
`target_residual` (target - input) and `person_name`.

The constructor does all the checking and the heavy lifting once: it turns the source
into uncompressed Arrow IPC files (`featstore.dataset.cache`) and memory-maps them, so
a sample is a numpy index into mapped columns and a batch (`__getitems__`, which the
DataLoader calls with a batch's indices) is a few numpy gathers. DataLoader workers,
forked or spawned, map the same files again on first use: nothing but paths is pickled
into them, and the features are held once, in the OS page cache, whatever the workers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch.utils.data import Dataset, default_collate, get_worker_info
from torch.utils.data._utils.collate import default_collate_fn_map

from featstore.dataset.cache import (
    POSITION_ENCODINGS,
    STORE_KEYPOINT_FIELDS,
    CacheLease,
    PositionEncoding,
    SampleColumns,
    open_columns,
)
from featstore.dataset.npy_source import is_npy_dir
from featstore.dataset.opening import from_json, from_npy_dir, from_store
from featstore.dataset.split import split_by_identity  # noqa: F401 - its public home
from featstore.errors import InputError

if TYPE_CHECKING:
    from featstore.extraction.detection import DetectorSettings
    from featstore.extraction.pipeline import RuntimeOptions

EXTRA_FIELDS = (
    "landmarks_2d",
    "landmarks_3d",
    "box",
    "avg_angle",
    "det_score",
    "euler_angles",
    "image_path",
    "pose_landmarks_3d",
    "keypoints_3d",
    "front_keypoints_3d",
)
log = logging.getLogger(__name__)
_from_numpy = torch.from_numpy  # a module global: one lookup, four times a sample
SAMPLE_KEYS = (
    "input_features",
    "position_encoding",
    "target_features",
    "target_residual",
    "person_name",
)


class FeatureBatch(dict[str, Any]):
    """A batch: each key maps to a `[B, ...]` tensor, or a list of B strings.

    `__getitems__` returns it already collated. It also answers `batch[0]` (an int) with
    the first sample, which is all torch's `default_collate` looks at before it picks a
    collate function by that element's type: featstore registers one for that type in
    `default_collate_fn_map` (torch's documented extension point), which hands the
    batch back as it is. So `DataLoader(dataset, batch_size=B)` with the default collate
    costs one lookup more than `collate_fn=featstore.collate`, and gives the same batch.
    """

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return super().__getitem__(key)
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            return _SampleOfBatch(self, int(key))
        raise TypeError(
            f"a FeatureBatch is indexed by a field name (or a sample number), not {key!r}"
        )


class _SampleOfBatch(dict[str, Any]):
    """One sample of a collated batch (views of its rows); remembers the batch."""

    def __init__(self, batch: FeatureBatch, index: int) -> None:
        size = len(batch["person_name"])
        if not -size <= index < size:
            raise IndexError(f"sample {index} out of range for a batch of {size}")
        super().__init__({key: value[index] for key, value in batch.items()})
        self.batch = batch


def _collate_batch(batch: Any, *, collate_fn_map: dict[Any, Any] | None = None) -> Any:
    """default_collate's function for `_SampleOfBatch`: the batch is collated already."""
    if isinstance(batch, FeatureBatch):
        return batch
    # Samples picked from batches one by one (a wrapper's own list): stack them.
    return FeatureBatch(default_collate([dict(sample) for sample in batch]))


default_collate_fn_map[_SampleOfBatch] = _collate_batch


def collate(batch: FeatureBatch | Sequence[Mapping[str, Any]]) -> FeatureBatch:
    """A `collate_fn` for FeatureDataset (torch's default collate gives the same batches).

    Batches from `__getitems__` arrive collated and pass through; a list of samples (from
    a wrapper that calls `dataset[i]` one at a time) is stacked like `default_collate`.
    """
    if isinstance(batch, FeatureBatch):
        return batch
    return FeatureBatch(default_collate(list(batch)))


class FeatureDataset(Dataset[dict[str, Any]]):
    """The trainer's samples from a featstore store or a trainer's JSON file.

    Args:
        source: a store folder, face000's npy training directory (the eight files of
            `export-npy`: samples paired as its Aligned3DFaceDataset pairs them), or a
            JSON file in the new format (features inside) or
            the old one (image paths only: the images are extracted once, into
            `extraction_store`, with the model options below, and served from there).
        model: the DINOv2 model; required for a store holding several. For a new-format
            JSON it must match the file's `dinov2_model`; for an old-format JSON it is the
            model to extract with (default dinov2_vitb14).
        where: SQL predicate over the `frames` columns (store sources), the same as
            `featstore export-json --where`, e.g. `"abs(avg_angle) < 30"`.
        position_encoding: what a sample's `position_encoding` holds: "spherical_angles"
            (`[5]`, the `face000-v1` angles of docs/formats.md, as the first trainer) or
            "euler_angles" (`[3]`, the head pose `face000-pose-v1` of docs/formats.md in degrees,
            the seed's (yaw, pitch, roll), as the 3D trainer). From a store, euler_angles
            keeps the samples `export-json --format 3d` keeps (frames with a pose, of
            identities whose frontal image has one). A new-format JSON has only the angles,
            a 3D JSON (`valid_images_3d.json`) only the pose.
        extra_fields: any of landmarks_2d, landmarks_3d, box, avg_angle, det_score
            (stores only), euler_angles (the head pose; NaN where the source has none),
            image_path (absolute, forward slashes), pose_landmarks_3d (the posed mean face:
            the 3D JSON's landmarks_3d, the npy directory's landmarks_3d_original),
            keypoints_3d and front_keypoints_3d (as face000's npy trainers normalise them;
            stores and npy directories) to add to samples. From a store, the keypoints
            are made only when asked for (their scale, export-npy's, solves every frontal
            image's head pose again), into a cache folder of their own.
        cache_dir: where the memory-mapped sample files go; default `<store>/_cache/datasets`
            for a store you can write to, else `~/.cache/featstore/datasets`.
        extraction_store: old-format JSON only: the store the images are extracted into;
            default `<json file>.featstore` beside it.
        weights, detector, runtime: old-format JSON only: as for `featstore.extract`.
        version: store sources: read this version of the model's table (default: the
            latest). `dataset.version` is the version read, whichever it was: record it
            to read exactly the same samples again.

    Raises:
        InputError: a bad source, option, JSON content or an empty selection.
        StoreError: the store cannot be read, holds several models and no `model` was
            given, or the cache cannot be written.
    """

    def __init__(
        self,
        source: str | os.PathLike[str],
        *,
        model: str | None = None,
        where: str | None = None,
        position_encoding: PositionEncoding = "spherical_angles",
        extra_fields: Sequence[str] = (),
        cache_dir: str | os.PathLike[str] | None = None,
        extraction_store: str | os.PathLike[str] | None = None,
        weights: Mapping[str, str | os.PathLike[str]] | None = None,
        detector: DetectorSettings | None = None,
        runtime: RuntimeOptions | None = None,
        version: int | None = None,
    ) -> None:
        from featstore.store.location import is_uri, scrub_uri

        self.extra_fields = _check_extra_fields(extra_fields)
        if position_encoding not in POSITION_ENCODINGS:
            raise InputError(
                f"position_encoding={position_encoding!r}: choose one of "
                f"{', '.join(map(repr, POSITION_ENCODINGS))}."
            )
        self.position_encoding = position_encoding
        # The cached per-frame field behind `position_encoding`.
        self._encoding = (
            "euler_angles" if position_encoding == "euler_angles" else "position_encoding"
        )
        path = Path(source)
        # What to show: a URI may hold secrets (`?secret_key=...`), never shown.
        self.source = scrub_uri(str(source)) if is_uri(source) else str(path)
        self.version: int | None
        self.store_source: Any = None  # the store, for split_by_identity's neighbors
        if not is_uri(source) and is_npy_dir(path):  # face000's npy training directory
            if version is not None:
                raise InputError(f"version={version}: an npy directory has no versions.")
            self.source_format, self.version = "npy-dir", None
            self.model, lease = from_npy_dir(path, model, where, cache_dir)
        elif is_uri(source) or path.is_dir():  # a store folder, or one on object storage
            self.source_format = "store"
            self.store_source = source
            self.model, self.version, lease = from_store(
                source,
                model,
                where,
                cache_dir,
                version,
                position_encoding,
                keypoints=bool(set(STORE_KEYPOINT_FIELDS) & set(self.extra_fields)),
            )
        elif path.is_file():
            if version is not None:
                raise InputError(
                    f"version={version}: a JSON file has no versions; pass version= only "
                    "with a store."
                )
            from featstore.extraction.detection import DetectorSettings
            from featstore.extraction.options import ExtractOptions
            from featstore.extraction.pipeline import RuntimeOptions

            self.version = None
            # Used only when the file is old-format (image paths to extract first).
            extraction = ExtractOptions(
                weights=weights,
                detector=detector or DetectorSettings(),
                runtime=runtime or RuntimeOptions(),
            )
            self.model, lease, self.source_format = from_json(
                path, model, where, cache_dir, extraction_store, extraction, position_encoding
            )
        else:
            raise InputError(
                f"source {path} does not exist.\nHint: give a store folder or a trainer's "
                "JSON file (from `featstore export-json`)."
            )
        if self.source_format == "new-json" and "det_score" in self.extra_fields:
            raise InputError(
                f"extra_fields: det_score is not in the trainer's JSON ({path}).\n"
                "Hint: read the store the file was exported from instead."
            )
        # Held while the Dataset lives: no build of another version deletes the folder.
        self._lease: CacheLease | None = lease
        self.cache_folder = lease.folder
        self._columns: SampleColumns | None = None
        self._sample_columns: tuple[Any, ...] | None = None
        columns = self._open()
        if not len(columns):
            raise InputError(
                f"{self.source} gives no samples"
                + (f" after where={where!r}" if where else "")
                + " (no ok frame of a valid identity).\nHint: check the store with "
                "`featstore info`, or loosen the filter."
            )
        self._check_encoding(columns)

    # --- the torch Dataset protocol ---------------------------------------------------

    def __len__(self) -> int:
        return len(self._open())

    def __getitem__(self, index: int | Sequence[int] | NDArray[np.integer]) -> Any:
        """One sample (a dict of tensors and `person_name`), or a batch for a list of indices.

        The tensors are the sample's own copies, as the seed's Dataset's were
        (`torch.FloatTensor` of its arrays): change them in place freely.
        """
        # Every step counts here: it runs once per sample in a plain loop.
        if type(index) is not int:  # numpy integers, bools, lists of indices
            if not isinstance(index, (int, np.integer)):
                return self.__getitems__(index)
            index = int(index)  # numpy would read True as a mask, not as 1
        if self._sample_columns is None:
            self._open()
        identity_index, inputs, positions, targets, names = self._sample_columns  # type: ignore[misc]
        try:
            who = identity_index[index]  # negative indices count from the end
        except IndexError:
            raise IndexError(f"sample {index} out of range for {len(inputs)} samples") from None
        # numpy copies of the mapped rows (read-only, shared), wrapped by torch.from_numpy:
        # a third of the time of torch.tensor().
        frame = inputs[index].copy()
        target = targets[who].copy()
        sample: dict[str, Any] = {
            "input_features": _from_numpy(frame),
            "position_encoding": _from_numpy(positions[index].copy()),
            "target_features": _from_numpy(target),
            "target_residual": _from_numpy(target - frame),
            "person_name": names[who],
        }
        if not self.extra_fields:
            return sample
        columns, i = self._open(), index
        for name in self.extra_fields:
            sample[name] = (
                columns.image_path[i].as_py()
                if name == "image_path"
                else torch.tensor(columns.fields[name][i])
            )
        return sample

    def __getitems__(self, indices: Sequence[int] | NDArray[np.integer]) -> FeatureBatch:
        """A collated batch: each tensor is one numpy gather from the mapped columns."""
        columns = self._open()
        rows = _checked_rows(indices, len(columns))
        who = np.take(columns.identity_index, rows)
        size, dim = len(rows), columns.dim
        width = columns.fields[self._encoding].shape[1]
        out = _batch_tensors([(size, dim)] * 3 + [(size, width)])
        frames, targets, residual, angles = (tensor.numpy() for tensor in out)
        # np.take, not fancy indexing: a third faster for row gathers; "clip" lets it write
        # into `out` directly (rows are already checked).
        np.take(columns.input_features, rows, axis=0, out=frames, mode="clip")
        np.take(columns.target_features, who, axis=0, out=targets, mode="clip")
        np.subtract(targets, frames, out=residual)
        np.take(columns.fields[self._encoding], rows, axis=0, out=angles, mode="clip")
        batch = FeatureBatch(
            input_features=out[0],
            position_encoding=out[3],
            target_features=out[1],
            target_residual=out[2],
            person_name=np.take(columns.identity_names, who).tolist(),
        )
        for name in self.extra_fields:
            batch[name] = (
                columns.image_path.take(rows).to_pylist()
                if name == "image_path"
                else torch.from_numpy(np.take(columns.fields[name], rows, axis=0))
            )
        return batch

    # --- what split_by_identity and users need to know --------------------------------

    @property
    def dim(self) -> int:
        """The features' dimension."""
        return self._open().dim

    @property
    def identities(self) -> list[str]:
        """The identities with samples, in sample order."""
        return self._open().identities

    @property
    def sample_identity(self) -> NDArray[np.int32]:
        """For each sample, its identity's index into `identities`."""
        return self._open().identity_index

    def __repr__(self) -> str:
        return (
            f"FeatureDataset({self.source!r}, model={self.model!r}, "
            f"samples={len(self)}, identities={len(self.identities)}, dim={self.dim})"
        )

    # --- opening, once per process -----------------------------------------------------

    def _check_encoding(self, columns: SampleColumns) -> None:
        """Every sample has the position encoding asked for (a JSON file has one kind)."""
        values = columns.fields[self._encoding]
        if not np.isnan(values).any():
            return
        first = int(np.flatnonzero(np.isnan(values).any(axis=1))[0])
        other = next(e for e in POSITION_ENCODINGS if e != self.position_encoding)
        raise InputError(
            f"{self.source}: sample {first} ({columns.image_path[first].as_py()}) has no "
            f"{self.position_encoding}"
            + (
                " (a 3D JSON holds the head pose, not the spherical angles; a new-format "
                "JSON the angles, not the pose)"
                if self.source_format == "new-json"
                else ""
            )
            + f".\nHint: pass position_encoding={other!r}, or export the file in the "
            "format that has it (`featstore export-json --format 3d` for the pose)."
        )

    def _open(self) -> SampleColumns:
        # A spawned DataLoader worker receives the dataset without its mapping
        # (__getstate__) and maps the files on first use; a forked one shares the
        # parent's read-only mapping.
        if self._columns is None:
            columns = open_columns(self.cache_folder)
            self._columns = columns
            # What __getitem__ reads, in one tuple: one attribute lookup, not eight.
            self._sample_columns = (
                columns.identity_index,
                columns.input_features,
                columns.fields[self._encoding],
                columns.target_features,
                columns.identities,
            )
        return self._columns

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_columns"] = None  # paths travel to spawned workers, never mapped buffers
        state["_lease"] = None  # the parent's lock stays the parent's
        state["_sample_columns"] = None
        return state


def _checked_rows(indices: Sequence[int] | NDArray[np.integer], size: int) -> NDArray[np.intp]:
    """`indices` as row numbers in [0, size), negative ones counted from the end."""
    rows = np.asarray(indices, dtype=np.intp)
    if rows.ndim != 1:
        raise IndexError(f"indices must be a flat list, got shape {list(rows.shape)}")
    if rows.size and (rows.min() < -size or rows.max() >= size):
        bad = rows[(rows < -size) | (rows >= size)][0]
        raise IndexError(f"sample {bad} out of range for {size} samples")
    return np.where(rows < 0, rows + size, rows)


def _batch_tensors(shapes: list[tuple[int, int]]) -> list[torch.Tensor]:
    """Empty float32 tensors for a batch; in a DataLoader worker, in shared memory.

    A worker's batch must reach the main process through shared memory. Allocating it
    there at once, as one block (as torch's default_collate does, with the same storage
    call), saves copying each tensor into a block of its own: twice the throughput with
    workers. In the main process, separate ordinary arrays are quicker to allocate.
    """
    if get_worker_info() is None:
        return [torch.from_numpy(np.empty(shape, dtype=np.float32)) for shape in shapes]
    sizes = [rows * cols for rows, cols in shapes]
    storage = torch.UntypedStorage._new_shared(4 * sum(sizes))
    block = torch.empty(0, dtype=torch.float32).set_(storage)
    return [part.view(shape) for part, shape in zip(torch.split(block, sizes), shapes, strict=True)]


def _check_extra_fields(fields: Sequence[str]) -> tuple[str, ...]:
    if isinstance(fields, str):
        fields = (fields,)
    unknown = [f for f in fields if f not in EXTRA_FIELDS]
    if unknown:
        raise InputError(
            f"extra_fields: unknown {', '.join(map(repr, unknown))}; choose from "
            f"{', '.join(EXTRA_FIELDS)}."
        )
    return tuple(dict.fromkeys(fields))
