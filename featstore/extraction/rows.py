"""From per-image results to the store's rows: geometry, head pose, statuses, Arrow columns."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from featstore.extraction.decoding import ImageTask
from featstore.extraction.detection import Detection
from featstore.extraction.geometry import average_angle, landmarks_3d, spherical_angles
from featstore.extraction.inputs import storable_name
from featstore.extraction.pose import HeadPose, NoPose, solve_pose, solve_pose_sqpnp
from featstore.store.fields import POSE_COLUMNS, SQPNP_POSE_COLUMNS
from featstore.store.format import fixed_size_column, store_schema
from featstore.store.paths import relative_path

OK, NO_FACE, UNREADABLE = "ok", "no_face", "unreadable"
STATUSES = (OK, NO_FACE, UNREADABLE)
# Not a status: images with a face whose head pose could not be solved (counted apart).
NO_POSE = "no_pose"

log = logging.getLogger(__name__)


@dataclass
class ImageResult:
    """Everything extraction learned about one image, for every model run on it."""

    task: ImageTask
    status: str
    error: str | None
    detection: Detection | None = None
    features: dict[str, NDArray[np.float32]] = field(default_factory=dict)
    width: int | None = None
    height: int | None = None
    file_size: int | None = None
    # Set by `add_poses` (in the writer thread, when the identity's rows are built).
    pose: HeadPose | NoPose | None = None  # face000-pose-v1
    sqpnp_pose: HeadPose | NoPose | None = None  # featstore-pose-sqpnp-v1

    @property
    def without_pose(self) -> bool:
        """A face was found but its head pose could not be solved."""
        return isinstance(self.pose, NoPose)


def add_poses(results: Sequence[ImageResult]) -> None:
    """Solve `face000-pose-v1` and `featstore-pose-sqpnp-v1` for each image with a face
    (once), logging why one has none.

    From the stored float32 keypoints and the decoded image's size, so anyone can
    recompute the poses from the store's columns.
    """
    for r in results:
        if r.detection is None or r.pose is not None:
            continue
        r.pose = solve_pose(r.detection.landmarks_2d, r.width, r.height)
        r.sqpnp_pose = solve_pose_sqpnp(r.detection.landmarks_2d, r.width, r.height)
        if isinstance(r.pose, NoPose):
            log.info("no head pose for %s: %s", r.task.path, r.pose.reason)


def pose_columns(
    poses: Sequence[HeadPose | NoPose | None], columns: Sequence[str] = POSE_COLUMNS
) -> dict[str, pa.Array]:
    """The pose columns `columns` (a definition's: angles, rotation, posed mean face) of
    rows whose poses are `poses`; null where there is none.

    Extraction and `featstore derive` both build them here, so the two give the same bytes.
    """
    n = len(poses)
    euler, rotation, posed = np.zeros((n, 3)), np.zeros((n, 3, 3)), np.zeros((n, 5, 3))
    solved = np.zeros(n, dtype=bool)
    for i, pose in enumerate(poses):
        if isinstance(pose, HeadPose):
            euler[i], rotation[i], posed[i] = (
                pose.euler_angles,
                pose.rotation_matrix,
                pose.landmarks_3d,
            )
            solved[i] = True
    values = dict(zip(columns, (euler, rotation, posed), strict=True))
    schema = store_schema(1)  # the pose columns' types do not depend on the feature dim
    return {
        name: fixed_size_column(v.astype(np.float32), solved, schema.field(name).type)
        for name, v in values.items()
    }


def _solved_poses(results: Sequence[ImageResult]) -> dict[str, pa.Array]:
    """Both definitions' pose columns of `results`."""
    add_poses(results)
    return {
        **pose_columns([r.pose for r in results], POSE_COLUMNS),
        **pose_columns([r.sqpnp_pose for r in results], SQPNP_POSE_COLUMNS),
    }


def _frame_geometry(
    results: Sequence[ImageResult],
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
    """landmarks_3d for every detected face; angles for frames when the frontal image is ok.

    Computed from the float32 values that are stored, so anyone can recompute them
    from the store and get the same numbers.
    """
    n = len(results)
    lm3d = np.zeros((n, 5, 3))
    angles = np.zeros((n, 5))
    has_angles = np.zeros(n, dtype=bool)
    face = next((r for r in results if r.task.role == "face"), None)
    face_ok = face is not None and face.status == OK and face.detection is not None
    for i, r in enumerate(results):
        if r.detection is not None:
            lm3d[i] = landmarks_3d(r.detection.box, r.detection.landmarks_2d)
    if face_ok:
        assert face is not None and face.detection is not None
        face_3d = landmarks_3d(face.detection.box, face.detection.landmarks_2d)
        for i, r in enumerate(results):
            if r.task.role == "frame" and r.detection is not None:
                angles[i] = spherical_angles(
                    face_3d, face.detection.landmarks_2d, lm3d[i], r.detection.landmarks_2d
                )
                has_angles[i] = True
    return lm3d, angles, has_angles


def identity_table(
    results: Sequence[ImageResult],
    *,
    model: str,
    dim: int,
    base_dir: Path,
    extracted_at: datetime,
) -> pa.Table:
    """The rows of one identity for one model, frontal image first, frames in order."""
    n = len(results)
    detected = np.array([r.detection is not None for r in results], dtype=bool)
    has_features = np.array([model in r.features for r in results], dtype=bool)
    features = np.zeros((n, dim), dtype=np.float32)
    boxes = np.zeros((n, 4), dtype=np.float32)
    lm2d = np.zeros((n, 5, 2), dtype=np.float32)
    scores = np.zeros(n, dtype=np.float32)
    for i, r in enumerate(results):
        if has_features[i]:
            features[i] = r.features[model]
        if r.detection is not None:
            boxes[i], lm2d[i], scores[i] = (
                r.detection.box,
                r.detection.landmarks_2d,
                r.detection.score,
            )
    lm3d, angles, has_angles = _frame_geometry(results)
    avg = np.array([average_angle(a) for a in angles], dtype=np.float32)
    schema = store_schema(dim)
    columns = {
        "identity": pa.array([r.task.identity for r in results], pa.string()),
        "model": pa.array([model] * n, pa.string()),
        "role": pa.array([r.task.role for r in results], pa.string()),
        "image_path": pa.array(
            [storable_name(relative_path(r.task.path, base_dir)) for r in results], pa.string()
        ),
        "frame_index": pa.array([r.task.frame_index for r in results], pa.int32()),
        "status": pa.array([r.status for r in results], pa.string()),
        "error": pa.array(
            [None if r.error is None else storable_name(r.error) for r in results], pa.string()
        ),
        "features": fixed_size_column(features, has_features, schema.field("features").type),
        "landmarks_2d": fixed_size_column(lm2d, detected, schema.field("landmarks_2d").type),
        "landmarks_3d": fixed_size_column(
            lm3d.astype(np.float32), detected, schema.field("landmarks_3d").type
        ),
        "box": fixed_size_column(boxes, detected, schema.field("box").type),
        "det_score": pa.array(scores, pa.float32(), mask=~detected),
        "spherical_angles": fixed_size_column(
            angles.astype(np.float32), has_angles, schema.field("spherical_angles").type
        ),
        "avg_angle": pa.array(avg, pa.float32(), mask=~has_angles),
        **_solved_poses(results),
        "width": pa.array([r.width for r in results], pa.int32()),
        "height": pa.array([r.height for r in results], pa.int32()),
        "file_size": pa.array([r.file_size for r in results], pa.int64()),
        "extracted_at": pa.array([extracted_at] * n, schema.field("extracted_at").type),
    }
    return pa.Table.from_pydict(columns, schema=schema)
