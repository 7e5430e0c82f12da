"""`import-npy`: an existing npy training directory into a store, without extracting again.

What becomes of it (docs/formats.md; decisions where it is silent):

- Each kept row becomes an `ok` row of the model: `features`, `landmarks_2d`, `box`, the
  image size as `width` / `height`, `poses` as `euler_angles` and `landmarks_3d_original`
  as `pose_landmarks_3d` (float32). Where the originals are absent (the video side of a
  fresh run of the seed's script writes `[]`), they are solved again from `landmarks_2d`
  and `image_size` (`face000-pose-v1`), which also gives `rotation_matrix`; otherwise
  `rotation_matrix` is null (the directory does not hold it). The pseudo-3D `landmarks_3d`,
  spherical angles, detector score and file size are null. The stable head pose
  `featstore-pose-sqpnp-v1` (docs/pose.md; the `sqpnp_*` columns) is solved from
  `landmarks_2d` and `image_size`, as extraction does.
- Each `*_failed_images.json` entry becomes a row too: `read_error` -> `unreadable` with
  the recorded text, `no_face_detected` -> `no_face`, `no_landmarks` and `feature_error`
  -> `unreadable` with a reason, the kind kept in the column `npy_failure`; so
  `export-npy` writes the same lists back.
- `frame_index` is the frame's position by file name among its person's frames, failed
  ones included (the seed's order). Paths are stored as written; `--base-dir` (default:
  the working directory, where the seed's script ran) is recorded as the base dir, so
  `export-npy` writes them back unchanged, and `--base-dir` there re-bases them.
- The model defaults to `arcface_buffalo_l` for 512-dim features (the seed's
  `normed_embedding`); other dims need `--model`. Provenance: `source: npy`.

Checked before the store is touched (`reading`): the eight files and nothing else, dtypes
and shapes, `num_samples` and every list against the npy rows, finite numbers, strings,
UTF-8, each person's frames once and in order. The rows go to a scratch Arrow file, then
into the model's table in one commit (`store.bulk_write`), as `import-json` does: a failure
leaves the store as it was. Memory holds a block of rows.
"""

from __future__ import annotations

import bisect
import os
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pyarrow as pa
from numpy.lib.format import open_memmap

import featstore
from featstore.errors import InputError, StoreError
from featstore.extraction.pose import SQPNP_POSE, HeadPose, solve_pose
from featstore.npy_dir.layout import LAYOUTS, ROW_LISTS, SIDES, Side
from featstore.npy_dir.reading import (
    Problems,
    SideArrays,
    check_files,
    failures,
    read_arrays,
    read_failed,
    read_metadata,
)
from featstore.npy_dir.store_scan import KIND_COLUMN
from featstore.store.bulk_write import replace_rows
from featstore.store.format import STORE_MANIFEST, delta_schema, fixed_size_column, store_schema
from featstore.store.location import resolve_store
from featstore.store.store import Store

DEFAULT_MODEL = "arcface_buffalo_l"
_BLOCK = 4096
_STATUS = {
    "read_error": "unreadable",
    "no_face_detected": "no_face",
    "no_landmarks": "unreadable",
    "feature_error": "unreadable",
}


@dataclass(frozen=True)
class NpyImportSummary:
    folder: Path
    store: str
    model: str
    feature_dim: int
    rows: dict[str, int]
    failed: dict[str, int]

    def format(self) -> str:
        return (
            f"imported {self.rows['front']} front and {self.rows['video']} video rows "
            f"({self.failed['front']} + {self.failed['video']} failed images) of {self.folder} "
            f"into model {self.model} ({self.feature_dim} dims) of {self.store}"
        )


def import_npy(
    path: str | os.PathLike[str],
    *,
    store: str | os.PathLike[str],
    model: str | None = None,
    base_dir: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> NpyImportSummary:
    """Load face000's npy training directory into `store` as the rows of one model.

    Raises:
        InputError: the directory is not usable (file, field, expected, actual).
        ProvenanceMismatchError: the model holds rows made differently (see `overwrite`).
    """
    folder = Path(path)
    problems = Problems(folder, strict=True)
    check_files(folder, problems)
    base = Path(os.path.abspath(base_dir if base_dir is not None else os.getcwd()))
    location = resolve_store(store)
    if location.is_file(STORE_MANIFEST):
        Store(location)  # refuses another format before a long read
    arrays = {side: read_arrays(folder, side, problems) for side in SIDES}
    front, video = arrays["front"], arrays["video"]
    assert front is not None and video is not None  # strict: raised otherwise
    dim = front.features.shape[1]
    if video.features.shape[1] != dim:
        raise InputError(
            f"{folder}/video_feature.npy: feature columns expected {dim} (as "
            f"front_feature.npy), actual {video.features.shape[1]}."
        )
    name = model or _default_model(dim, folder)
    schema = delta_schema(store_schema(dim).append(pa.field(KIND_COLUMN, pa.string())))
    now = pa.scalar(datetime.now(timezone.utc), pa.timestamp("us", "UTC"))
    rows: dict[str, int] = {}
    failed: dict[str, int] = {}
    persons = 0
    with tempfile.TemporaryDirectory(prefix="featstore-import-npy-") as scratch:
        spill = Path(scratch) / "rows.arrow"
        with pa.ipc.new_stream(str(spill), schema) as writer:
            for side in SIDES:
                builder = _SideRows(folder, side, arrays[side], name, schema, now)  # type: ignore[arg-type]
                for table in builder.tables(Path(scratch), problems):
                    writer.write_table(table)
                rows[side], failed[side] = builder.kept, builder.failed
                persons = builder.processed_persons if side == "video" else persons
        provenance = {
            "model": name,
            "feature_dim": dim,
            "source": "npy",
            SQPNP_POSE.provenance_key: SQPNP_POSE.name,
            "npy_dir": folder.name,
            "processed_persons": persons,
            "base_dir": base.as_posix(),
            "featstore_version": featstore.__version__,
        }
        opened = Store(location, create=True)
        table = opened.table(name)
        with pa.OSFile(str(spill), "rb") as source:
            reader = pa.ipc.open_stream(source)
            table.claim(provenance, reader.schema, overwrite=overwrite)
            try:
                replace_rows(table, reader.schema, reader, "import-npy")
            except Exception as exc:  # delta-rs raises several kinds
                raise StoreError(f"cannot write {table}: {location.scrub(str(exc))}") from exc
    return NpyImportSummary(folder, location.display, name, dim, rows, failed)


def _default_model(dim: int, folder: Path) -> str:
    if dim == 512:
        return DEFAULT_MODEL
    raise InputError(
        f"{folder}/front_feature.npy holds {dim}-dim features, not the seed's 512-dim ArcFace "
        "embeddings.\nHint: name the model with --model (e.g. dinov2_vitb14)."
    )


class _SideRows:
    """One side's kept rows and failed entries as the store's rows, block by block."""

    def __init__(
        self,
        folder: Path,
        side: Side,
        arrays: SideArrays,
        model: str,
        schema: pa.Schema,
        now: pa.Scalar,
    ) -> None:
        self.folder, self.side, self.arrays = folder, side, arrays
        self.model, self.schema, self.now = model, schema, now
        self.kept = len(arrays.features)
        self.failed = 0
        self.processed_persons = 0

    def tables(self, scratch: Path, problems: Problems) -> Iterator[pa.Table]:
        found = read_failed(self.folder, self.side, problems)
        self.processed_persons = int(found.get("processed_persons") or 0)
        entries = list(failures(found))
        self.failed = len(entries)
        failed_names: dict[str, list[str]] = defaultdict(list)
        for _, entry in entries:
            failed_names[entry["person_name"]].append(_file_name(entry["path"]))
        for names in failed_names.values():
            names.sort()
        spool = _Spool(scratch, self.side, self.kept)
        read_metadata(
            self.folder, self.side, self.kept, self.arrays.features.shape[1], problems, spool.put
        )
        order = _Order(self.folder, self.side, failed_names)
        start = 0
        for meta in spool.metadata_blocks():
            yield self._kept_block(spool, order, meta, start)
            start += meta.num_rows
        if entries:
            yield self._failed_rows(entries, order)

    def _kept_block(
        self, spool: _Spool, order: _Order, meta: pa.RecordBatch, start: int
    ) -> pa.Table:
        n = meta.num_rows
        stop = start + n
        lm2d = np.asarray(spool.lists["landmarks_2d"][start:stop], np.float32)
        widths, heights = meta.column("width").to_pylist(), meta.column("height").to_pylist()
        solved = np.zeros((n, 5, 3)), np.zeros((n, 3, 3))
        has_rotation = np.zeros(n, bool)
        if not spool.has_originals:
            for i in range(n):
                pose = solve_pose(lm2d[i], widths[i], heights[i])
                if not isinstance(pose, HeadPose):
                    raise InputError(
                        f"{self.folder}/{LAYOUTS[self.side].metadata}: "
                        f"landmarks_3d_original[{start + i}]: expected a pose solvable from "
                        f"landmarks_2d and image_size, actual none ({pose.reason})."
                    )
                solved[0][i], solved[1][i] = pose.landmarks_3d, pose.rotation_matrix
                has_rotation[i] = True
        originals = spool.lists["landmarks_3d_original"]
        posed = np.asarray(originals[start:stop]) if spool.has_originals else solved[0]
        paths = meta.column("image_path").to_pylist()
        persons = meta.column("person_name").to_pylist()
        frame_index = [order.kept(p, path) for p, path in zip(persons, paths, strict=True)]
        columns = {
            "identity": persons,
            "role": ["face" if self.side == "front" else "frame"] * n,
            "image_path": paths,
            "frame_index": frame_index,
            "status": ["ok"] * n,
            "error": [None] * n,
            "features": self.arrays.features.read(start, stop),
            "landmarks_2d": lm2d,
            "box": np.asarray(spool.lists["boxes"][start:stop], np.float32),
            "width": widths,
            "height": heights,
            "euler_angles": np.asarray(spool.lists["poses"][start:stop], np.float32),
            "rotation_matrix": (solved[1], has_rotation),
            "pose_landmarks_3d": posed,
            **_stable_pose(lm2d, widths, heights),
        }
        return self._table(columns, n, np.ones(n, bool))

    def _failed_rows(self, entries: list[tuple[str, dict[str, str]]], order: _Order) -> pa.Table:
        n = len(entries)
        errors = []
        for kind, entry in entries:
            if kind == "no_landmarks":
                errors.append("imported: the seed's script found a face but no head pose")
            elif kind == "no_face_detected":
                errors.append("imported: the seed's script found no face")
            else:
                errors.append(entry["error"])
        columns = {
            "identity": [e["person_name"] for _, e in entries],
            "role": ["face" if self.side == "front" else "frame"] * n,
            "image_path": [e["path"] for _, e in entries],
            "frame_index": [order.failed(e["person_name"], e["path"]) for _, e in entries],
            "status": [_STATUS[kind] for kind, _ in entries],
            "error": errors,
            KIND_COLUMN: [
                kind if kind in ("no_landmarks", "feature_error") else None for kind, _ in entries
            ],
        }
        return self._table(columns, n, np.zeros(n, bool))

    def _table(self, columns: dict[str, Any], n: int, present: np.ndarray) -> pa.Table:
        out = {}
        for field in self.schema:
            value = columns.get(field.name)
            if field.name == "model":
                out[field.name] = pa.array([self.model] * n, pa.string())
            elif field.name == "extracted_at":
                out[field.name] = pa.repeat(self.now, n)
            elif value is None:
                out[field.name] = pa.nulls(n, field.type)
            elif isinstance(value, tuple):  # (values, which rows have one)
                out[field.name] = fixed_size_column(value[0], value[1], _fixed(value[0]))
            elif isinstance(value, np.ndarray):
                out[field.name] = fixed_size_column(value, present, _fixed(value))
            else:
                out[field.name] = pa.array(value, field.type)
        arrays = [out[f.name].cast(f.type) for f in self.schema]
        return pa.Table.from_arrays(arrays, schema=self.schema)


def _stable_pose(
    lm2d: np.ndarray, widths: list[int | None], heights: list[int | None]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """featstore-pose-sqpnp-v1's columns of a block, as `(values, which rows have one)`."""
    n = len(lm2d)
    values = np.zeros((n, 3)), np.zeros((n, 3, 3)), np.zeros((n, 5, 3))
    solved = np.zeros(n, bool)
    for i in range(n):
        pose = SQPNP_POSE.solve(lm2d[i], widths[i], heights[i])
        if isinstance(pose, HeadPose):
            values[0][i], values[1][i], values[2][i] = (
                pose.euler_angles,
                pose.rotation_matrix,
                pose.landmarks_3d,
            )
            solved[i] = True
    return {
        name: (v.astype(np.float32), solved)
        for name, v in zip(SQPNP_POSE.columns, values, strict=True)
    }


def _fixed(values: np.ndarray) -> pa.DataType:
    dtype: pa.DataType = pa.float32()
    for size in reversed(values.shape[1:]):
        dtype = pa.list_(dtype, size)
    return dtype


class _Spool:
    """A side's rows as the JSON is read: metadata rows to a scratch Arrow stream a block
    at a time, number lists to memory-mapped scratch files (memory: one block)."""

    def __init__(self, scratch: Path, side: Side, rows: int) -> None:
        self.meta_path = scratch / f"{side}_metadata.arrow"
        self.meta_writer = pa.ipc.new_stream(str(self.meta_path), _META_SCHEMA)
        self.pending: list[dict[str, Any]] = []
        self.lists = {
            key: open_memmap(scratch / f"{side}_{key}.npy", "w+", np.float64, (rows, *shape))
            for key, shape in ROW_LISTS.items()
        }
        self.filled = dict.fromkeys(ROW_LISTS, 0)

    def put(self, key: str, index: int, value: Any) -> None:
        if key == "standard_info":
            return  # computed again from the originals at export
        if key == "metadata":
            self.pending.append(value)
            if len(self.pending) == _BLOCK:
                self._flush()
        else:
            self.lists[key][index] = value
            self.filled[key] += 1

    def _flush(self) -> None:
        if self.pending:
            rows = self.pending
            self.meta_writer.write_batch(
                pa.record_batch(
                    {
                        "person_name": [r["person_name"] for r in rows],
                        "image_path": [r["image_path"] for r in rows],
                        "width": [r["image_size"][0] for r in rows],
                        "height": [r["image_size"][1] for r in rows],
                    },
                    schema=_META_SCHEMA,
                )
            )
            self.pending = []

    def metadata_blocks(self) -> Iterator[pa.RecordBatch]:
        """The metadata rows, `_BLOCK` a batch, in file order."""
        self._flush()
        self.meta_writer.close()
        with pa.OSFile(str(self.meta_path), "rb") as source:
            yield from pa.ipc.open_stream(source)

    @property
    def has_originals(self) -> bool:
        return self.filled["landmarks_3d_original"] > 0


_META_SCHEMA = pa.schema(
    [
        ("person_name", pa.string()),
        ("image_path", pa.string()),
        ("width", pa.int64()),
        ("height", pa.int64()),
    ]  # fmt: skip
)


class _Order:
    """`frame_index` by file name among a person's frames, failed ones included; and the
    check that each person's kept frames come once, together, in name order."""

    def __init__(self, folder: Path, side: Side, failed_names: dict[str, list[str]]) -> None:
        self.folder, self.side, self.failed_names = folder, side, failed_names
        self.kept_names: dict[str, list[str]] = defaultdict(list)
        self.done: set[str] = set()
        self.person: str | None = None
        self.last = ""
        self.count = 0

    def kept(self, person: str, path: str) -> int | None:
        name = _file_name(path)
        if self.side == "front":
            if person in self.done:
                self._twice(person, path)
            self.done.add(person)
            return None
        if person != self.person:
            if person in self.done:
                self._twice(person, path)
            if self.person is not None:
                self.done.add(self.person)
            self.person, self.last, self.count = person, "", 0
        elif name <= self.last:
            self._twice(person, path)
        self.last = name
        before = bisect.bisect_left(self.failed_names.get(person, []), name)
        if person in self.failed_names:
            self.kept_names[person].append(name)
        index = self.count + before
        self.count += 1
        return index

    def failed(self, person: str, path: str) -> int | None:
        if self.side == "front":
            return None
        name = _file_name(path)
        failed = self.failed_names.get(person, [])
        kept = self.kept_names.get(person, [])
        return bisect.bisect_left(failed, name) + bisect.bisect_left(kept, name)

    def _twice(self, person: str, path: str) -> None:
        raise InputError(
            f"{self.folder}/{LAYOUTS[self.side].metadata}: metadata: expected each "
            f"{'person' if self.side == 'front' else 'frame of a person'} once, together and "
            f"in file-name order (a fresh run of the seed's script), actual {person!r} again "
            f"at {path!r} (the seed's rerun damage).\nHint: `featstore validate {self.folder}` "
            "names every problem; run the seed's script with --force_reprocess, or extract "
            "with featstore and export-npy."
        )


def _file_name(path: str) -> str:
    return PurePosixPath(path.replace("\\", "/")).name
