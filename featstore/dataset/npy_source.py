"""face000's npy training directory as the Dataset's source, and the keypoints its
trainers compute, from a store.

A directory's samples are those of the seed's `Aligned3DFaceDataset`: for each person of
the front metadata (in its order), every video row of that person (in video order);
persons on one side only give none. Per sample, as that Dataset computes them:
`input_features` = the video row's feature, `target_features` = the front row's,
`euler_angles` = the video row's `poses` (float32), `keypoints_3d` = its original
landmarks normalised in float32 with the front set's `standard_scale` (or, where the
directory holds no originals, the keypoints file's row), `front_keypoints_3d` likewise
for the front row, `pose_landmarks_3d` = the original landmarks (float32; NaN where the
directory has none). Relative image paths resolve against the working directory (the
seed's script writes them relative to where it ran).

From a store, `keypoints_3d` and `front_keypoints_3d` are computed the same way from the
stored float32 `pose_landmarks_3d` and the `standard_scale` of the directory that
`export-npy` would write (its front rows' poses solved again in float64), so a store and
its export give the same numbers.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from featstore.dataset.cache import FRAME_FIELDS, SampleColumns
from featstore.errors import InputError, StoreError
from featstore.npy_dir.layout import (
    FILE_NAMES,
    ROW_LISTS,
    SIDES,
    standard_info,
    trainer_keypoints,
)
from featstore.npy_dir.npy_blocks import NpyRows
from featstore.npy_dir.reading import (
    Problems,
    SideArrays,
    check_files,
    read_arrays,
    read_metadata,
)
from featstore.store.snapshot import ModelSnapshot

DEFAULT_MODEL = "arcface_buffalo_l"
_BLOCK = 8192


def is_npy_dir(path: Path) -> bool:
    """A folder holding the npy directory's files (and no store marker)."""
    return path.is_dir() and (path / FILE_NAMES[0]).is_file() and (path / FILE_NAMES[4]).is_file()


def describe_npy_dir(path: Path) -> dict[str, Any]:
    """The directory's six files by what git's index compares (see `describe_json`)."""
    signature = []
    for name in FILE_NAMES:
        try:
            st = (path / name).stat()
        except OSError as exc:
            raise InputError(f"cannot read {path / name}: {exc.strerror or exc}.") from exc
        signature.append(f"{name}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}")
    return {
        "source": {"kind": "npy-dir", "path": os.path.abspath(path)},
        "signature": ";".join(signature),
    }


class _Side:
    """One side's metadata rows, read into arrays."""

    def __init__(self, rows: int) -> None:
        self.persons: list[str] = []
        self.paths: list[str] = []
        self.scale: float = 1.0
        self.lists = {key: np.full((rows, *shape), np.nan) for key, shape in ROW_LISTS.items()}
        self.has_originals = False

    def put(self, key: str, index: int, value: Any) -> None:
        if key == "standard_info":
            self.scale = float(value.get("standard_scale", 1.0))
        elif key == "metadata":
            self.persons.append(value["person_name"])
            self.paths.append(value["image_path"])
        else:
            self.lists[key][index] = value
            self.has_originals |= key == "landmarks_3d_original"


def read_npy_dir(path: Path, model: str | None, spool: Path) -> SampleColumns:
    """The samples of the directory at `path` (checked strictly: a bad one is refused)."""
    problems = Problems(path, strict=True)
    check_files(path, problems)
    sides: dict[str, _Side] = {}
    arrays: dict[str, SideArrays] = {}
    for side in SIDES:
        found = read_arrays(path, side, problems)
        assert found is not None
        arrays[side] = found
        rows, dim = found.features.shape
        sides[side] = _Side(rows)
        read_metadata(path, side, rows, dim, problems, sides[side].put)
    front, video = sides["front"], sides["video"]
    scale = front.scale
    first: dict[str, int] = {}
    for index, person in enumerate(front.persons):
        if person in first:
            raise InputError(
                f"{path}/front_metadata.json: metadata[{index}]: expected each person once, "
                f"actual {person!r} again.\nHint: `featstore validate {path}`."
            )
        first[person] = index
    by_person: dict[str, list[int]] = {}
    for index, person in enumerate(video.persons):
        by_person.setdefault(person, []).append(index)
    names = [p for p in front.persons if p in by_person]
    video_rows = np.array([v for p in names for v in by_person[p]], dtype=np.int64)
    counts = [len(by_person[p]) for p in names]
    front_rows = np.array([first[p] for p in names], dtype=np.int64)
    dim = arrays["front"].features.shape[1]
    features_file = _gather(arrays["video"].features, video_rows, spool)
    samples = len(video_rows)
    identity_index = np.repeat(np.arange(len(names), dtype=np.int32), counts)

    def keypoints(side: _Side, stored: NpyRows, rows: NDArray[np.int64]) -> NDArray[np.float32]:
        if side.has_originals:
            return trainer_keypoints(side.lists["landmarks_3d_original"][rows], scale)
        return np.asarray(stored.take(rows), dtype=np.float32)

    nan = {
        name: np.full((samples, *shape), np.nan, np.float32) for name, shape in FRAME_FIELDS.items()
    }
    fields = {
        **nan,
        "euler_angles": video.lists["poses"][video_rows].astype(np.float32),
        "landmarks_2d": video.lists["landmarks_2d"][video_rows].astype(np.float32),
        "box": video.lists["boxes"][video_rows].astype(np.float32),
        "pose_landmarks_3d": video.lists["landmarks_3d_original"][video_rows].astype(np.float32),
        "keypoints_3d": keypoints(video, arrays["video"].keypoints, video_rows),
        "front_keypoints_3d": keypoints(front, arrays["front"].keypoints, front_rows)[
            identity_index
        ],
    }
    return SampleColumns(
        identity_index=identity_index,
        input_features=np.memmap(features_file, np.float32, "r", shape=(samples, dim))
        if samples
        else np.zeros((0, dim), np.float32),
        fields=fields,
        image_path=pa.array([_absolute(video.paths[v]) for v in video_rows], pa.string()),
        identities=names,
        target_features=np.asarray(arrays["front"].features.take(front_rows), np.float32),
        face_image_path=pa.array([_absolute(front.paths[f]) for f in front_rows], pa.string()),
        model=model or DEFAULT_MODEL,
        features_file=features_file if samples else None,
    )


def _gather(features: NpyRows, rows: NDArray[np.int64], spool: Path) -> Path:
    """The video features of the samples, in sample order, written to a spool file a
    block at a time (memory: one block)."""
    spool.mkdir()
    target = spool / "frames.f32"
    with open(target, "wb") as out:
        for start in range(0, len(rows), _BLOCK):
            features.take(rows[start : start + _BLOCK]).tofile(out)
    return target


def _absolute(path: str) -> str:
    return posixpath.normpath(Path(os.path.abspath(path.replace("\\", "/"))).as_posix())


def store_keypoint_fields(
    info: ModelSnapshot,
    frames_posed: NDArray[np.float32],
    faces_posed: NDArray[np.float32],
    identity_index: NDArray[np.int32],
) -> dict[str, NDArray[np.float32]]:
    """`keypoints_3d` and `front_keypoints_3d` of a store's samples (NaN when the model has
    no pose or no image sizes, as stores imported from a JSON)."""
    scale = _export_scale(info)
    if scale is None:
        shape = (len(frames_posed), *FRAME_FIELDS["keypoints_3d"])
        return {"keypoints_3d": np.full(shape, np.nan, np.float32),
                "front_keypoints_3d": np.full(shape, np.nan, np.float32)}  # fmt: skip
    return {
        "keypoints_3d": trainer_keypoints(frames_posed, scale),
        "front_keypoints_3d": trainer_keypoints(faces_posed, scale)[identity_index],
    }


def _export_scale(info: ModelSnapshot) -> float | None:
    """The `standard_scale` that `export-npy` writes for this model (None: cannot)."""
    from featstore.npy_dir.store_scan import NpyScan, Rebase

    with info.connect() as con:
        try:
            scan = NpyScan(con, "true", Rebase(None, None))
        except StoreError:
            return None  # no pose columns
        # No posed frontal row, no scale: asked first because it reads the small pose
        # column only, where `kept_count` reads every frontal row's features too (issue 25:
        # 2 s of a cold open at 10^5 identities).
        if not scan.posed_count("face") or scan.missing_sizes() or not scan.kept_count("face"):
            return None
        originals = [block.arrays(info.dim)["originals"] for block in scan.fronts()]
    return float(standard_info(np.concatenate(originals)).scale)
