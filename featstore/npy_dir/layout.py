"""The eight files of the seed's npy training directory, declared once (docs/formats.md).

Every reader, writer and checker of the directory derives its names, dtypes, shapes and
JSON key orders from here. The normalisation is the seed's `Landmark3DAligner`, in the
same numpy calls, so its float64 results are the seed's bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

Side = Literal["front", "video"]
SIDES: tuple[Side, Side] = ("front", "video")
FEATURE_DTYPE = np.dtype("<f4")
KEYPOINTS_DTYPE = np.dtype("<f8")
KEYPOINTS_SHAPE = (5, 3)
# The seed's failure kinds, in the order of its `failed_details` object.
FAILURE_KINDS = ("no_face_detected", "no_landmarks", "read_error", "feature_error")
# Kinds whose entries carry an `error` text.
KINDS_WITH_ERROR = frozenset({"read_error", "feature_error"})
NOTE = "现在使用每张图片自己的中心点作为零点进行归一化"
STANDARD_INFO_KEYS = (
    "standard_center",
    "standard_scale",
    "standard_landmarks",
    "mean_landmarks",
    "num_samples",
    "note",
)
# The per-row lists of a metadata file besides `metadata`, with each row's shape.
ROW_LISTS: dict[str, tuple[int, ...]] = {
    "poses": (3,),
    "boxes": (4,),
    "landmarks_2d": (5, 2),
    "landmarks_3d_original": (5, 3),
}


@dataclass(frozen=True)
class SideLayout:
    """One side's four files and the keys of its JSON files, in the seed's order."""

    side: Side

    @property
    def feature(self) -> str:
        return f"{self.side}_feature.npy"

    @property
    def keypoints(self) -> str:
        return f"{self.side}_keypoints.npy"

    @property
    def metadata(self) -> str:
        return f"{self.side}_metadata.json"

    @property
    def failed(self) -> str:
        return f"{self.side}_failed_images.json"

    @property
    def files(self) -> tuple[str, str, str, str]:
        return (self.feature, self.keypoints, self.metadata, self.failed)

    @property
    def metadata_keys(self) -> tuple[str, ...]:
        head: tuple[str, ...] = ("num_samples", "feature_dim")
        if self.side == "front":
            head += ("standard_info",)
        return (*head, "metadata", *ROW_LISTS)

    @property
    def row_keys(self) -> tuple[str, ...]:
        keys = ("person_name", "image_path", "image_size")
        return (*keys, "frame_index") if self.side == "video" else keys

    @property
    def failed_keys(self) -> tuple[str, ...]:
        if self.side == "front":
            return ("total_images", "successful", "failed", "failed_details")
        return (
            "total_images",
            "skipped_persons",
            "processed_persons",
            "successful",
            "failed",
            "failed_details",
        )


FRONT, VIDEO = SideLayout("front"), SideLayout("video")
LAYOUTS = {"front": FRONT, "video": VIDEO}
FILE_NAMES: tuple[str, ...] = (*FRONT.files, *VIDEO.files)


def failure_entry(kind: str, path: str, person: str, error: str | None) -> dict[str, str]:
    """One `failed_details` entry, keys in the seed's order."""
    entry = {"path": path, "person_name": person}
    if kind in KINDS_WITH_ERROR:
        entry["error"] = error or ""
    return entry


@dataclass(frozen=True)
class StandardInfo:
    """The front set's normalisation (`Landmark3DAligner.compute_standard_from_faces`)."""

    scale: np.float64
    as_json: dict[str, Any]  # the `standard_info` object, keys in the seed's order


def standard_info(originals: NDArray[np.float64]) -> StandardInfo:
    """`standard_info` of the front rows' original landmarks `[N, 5, 3]` (N >= 1).

    The seed's calls, in its order: each row centred on its own mean, the mean of those,
    the scale from its largest row norm; float64 throughout.
    """
    relative = np.array([landmarks - np.mean(landmarks, axis=0) for landmarks in originals])
    standard = np.mean(relative, axis=0)
    scale = 1.0 / (np.max(np.linalg.norm(standard, axis=1)) + 1e-8)
    mean_landmarks = np.mean(originals, axis=0)
    center = np.mean(mean_landmarks, axis=0)
    return StandardInfo(
        scale,
        {
            "standard_center": center.tolist(),
            "standard_scale": float(scale),
            "standard_landmarks": standard.tolist(),
            "mean_landmarks": mean_landmarks.tolist(),
            "num_samples": len(originals),
            "note": NOTE,
        },
    )


def keypoints(landmarks: NDArray[np.float64], scale: np.float64 | float) -> NDArray[np.float64]:
    """`(L - mean(L)) * scale` of one row `[5, 3]`: the seed's `align_and_normalize`.

    Row by row on the very array the seed had: a front row of the stacked C-order array,
    a video row as the pose solver returned it (a transposed, F-order view). numpy sums
    the five points in another order on a contiguous axis, which can move the last bit.
    """
    return (landmarks - np.mean(landmarks, axis=0)) * scale


def trainer_keypoints(originals: NDArray[np.float32], scale: float) -> NDArray[np.float32]:
    """`keypoints_3d` as face000's npy trainers compute it (Aligned3DFaceDataset
    `_normalize_landmarks_with_self_center`): float32 originals `[N, 5, 3]`, each centred
    on its own float32 mean, times the JSON's `standard_scale` (a Python float), float32.
    """
    block = np.asarray(originals, dtype=np.float32)
    return (block - np.mean(block, axis=1, keepdims=True)) * scale
